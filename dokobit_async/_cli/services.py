"""``dokobit-async delivery create`` and ``dokobit-async validation upload|report``:
the calls beside the two signing flows (docs/wire-notes.md#e-delivery,
docs/wire-notes.md#validation).

``validate FILE`` (in :mod:`.api`) stays the one-step way to check a file; the two
steps here let an operator upload once and fetch each of the four reports later, or
all of them at once (``--report all``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..client import DokobitClient
from ..models import Recipient, ReportKind
from . import api
from .arguments import RECIPIENT_KEYS, Command, parse_recipient
from .fields import Uploads, build_people, call_fields, load_json
from .output import EXIT_USAGE, CliError, dump, out
from .signings import JSON_HELP

__all__ = ["add_parsers", "delivery_create", "validation_report", "validation_upload"]

_ALL = "all"


def add_parsers(command: Command, api_options: argparse.ArgumentParser) -> None:
    """Add ``delivery`` and ``validation`` through ``cli.build_parser``'s helper."""

    def group(name: str, helptext: str) -> Callable[..., argparse.ArgumentParser]:
        actions = command(name, helptext).add_subparsers(
            dest=f"{name}_command", required=True, metavar="ACTION"
        )

        def action(verb: str, text: str, run: Callable[..., Any]) -> argparse.ArgumentParser:
            a = actions.add_parser(
                verb, parents=[api_options], help=text, description=text, allow_abbrev=False
            )
            a.set_defaults(run=run)
            return a

        return action

    action = group("delivery", "e-delivery: send a PDF to recipients who confirm receipt")
    a = action("create", "deliver PDF files and print the tokens", delivery_create)
    a.add_argument("files", nargs="+", metavar="FILE", help="the PDF files to deliver")
    a.add_argument("--name", help='the delivery\'s name (or "name" in --from-json)')
    a.add_argument(
        "--recipient",
        action="append",
        type=parse_recipient,
        metavar="K=V,...",
        help="a recipient, e.g. 'external_id=r1,code=38001010000,country_code=lt,"
        "email=r@example.lt' (repeat for more)",
    )
    a.add_argument("--postback-url", metavar="URL", help="where Dokobit posts receipts")
    a.add_argument("--comment", metavar="TEXT", help="a message for the recipients")
    a.add_argument(
        "--from-json",
        metavar="FILE",
        help="the API's body without files ('-' for stdin): name, recipients, comment, "
        "postback_url; options override its fields, --recipient adds to its list",
    )
    api.transfer_arguments(a, JSON_HELP)

    action = group("validation", "validate signed files in two steps: upload, then reports")
    a = action("upload", "upload a signed file and print its validation token", validation_upload)
    a.add_argument("file", metavar="FILE", help="the signed file or container")
    api.transfer_arguments(a, JSON_HELP)
    a = action("report", "save a validation's report (or all four)", validation_report)
    a.add_argument("validation_token", metavar="TOKEN", help="the validation token")
    a.add_argument(
        "--report",
        choices=[*(k.value for k in ReportKind), _ALL],
        default=ReportKind.REPORT_PDF.value,
        help="which report, or all four (default: %(default)s)",
    )
    a.add_argument("-o", "--output", metavar="OUT", help="where to write ('-' for stdout)")
    api.transfer_arguments(a)


async def delivery_create(args: argparse.Namespace, client: DokobitClient) -> int:
    """Deliver the files to the recipients from options and ``--from-json``."""
    method = client.e_delivery.create
    body = load_json(args.from_json) if args.from_json else {}
    fields = call_fields(method, body, what="an e-delivery", lists=("recipients",))
    given = {"name": args.name, "postback_url": args.postback_url, "comment": args.comment}
    fields.update({k: v for k, v in given.items() if v is not None})
    listed = build_people(
        fields.pop("recipients", []),
        Recipient,
        allowed=RECIPIENT_KEYS,
        label="--from-json recipient",
        where="in an e-delivery",
    )
    listed += build_people(
        args.recipient or [],
        Recipient,
        allowed=RECIPIENT_KEYS,
        label="--recipient",
        where="in an e-delivery",
        start=len(listed) + 1,
    )
    if not fields.get("name"):
        raise CliError('a name is needed: --name or "name" in --from-json', EXIT_USAGE)
    if not listed:
        raise CliError('no recipient: give --recipient or "recipients" in --from-json', 2)
    uploads = Uploads(args.files, progress=args.progress)
    with uploads.progress:
        created = await method(files=uploads.files, recipients=listed, **fields)
    if args.json:
        out(dump(created.raw))
        return 0
    lines = [f"delivery token: {created.token}"]
    lines += [f"recipient {r.external_id or '-'}: {r.token}" for r in created.recipients]
    out("\n".join(lines))
    return 0


async def validation_upload(args: argparse.Namespace, client: DokobitClient) -> int:
    """Upload a file for validation; print the token that ``report`` takes."""
    uploads = Uploads([args.file], progress=args.progress)
    with uploads.progress:
        token = await client.validation.upload(uploads.files[0])
    out(json.dumps({"token": token}, indent=2) if args.json else f"validation token: {token}")
    return 0


async def validation_report(args: argparse.Namespace, client: DokobitClient) -> int:
    """Save one report of a validation, or all four with ``--report all``."""
    every = args.report == _ALL
    if every and args.output is not None:
        raise CliError("--report all saves four files under their own names; drop -o", 2)
    api.one_stdout_use(args)
    kinds = [k.value for k in ReportKind] if every else [args.report]
    found = [
        await api.save_report(
            client, args.validation_token, kind, args.output, "validation", args.progress
        )
        for kind in kinds
    ]
    api.saved(args, found)
    return 0
