"""``dokobit-async signing ACTION``: every call on a signing, of either flow.

``create``, ``status``, ``download``, ``add-signers``, ``remove-signers``,
``update``, ``delete``, ``remind`` and ``seal``. As with the older ``sign``,
``status`` and ``download`` (which stay, as shorthands), the flow is the
``--internal`` switch: the external flow is the default, and one word in one place
tells the two apart. Each action prints a short summary, or the API's answer as one
JSON document on stdout with ``--json``.

``delete`` cannot be undone, so it first shows what it is about to delete (the
signing's name and state, read with ``status``) and asks on the terminal; with no
terminal on stdin it refuses (exit 2) unless ``--yes`` is given, so a script never
deletes by accident.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._redact import printable
from ..client import DokobitClient
from ..models import (
    Annotation,
    CreatedSigner,
    CreatedSigning,
    ExternalSigner,
    InternalSigner,
    SignersAdded,
    SigningType,
)
from . import api
from .arguments import (
    ANNOTATION_KEYS,
    EXTERNAL_SIGNER_KEYS,
    INTERNAL_SIGNER_KEYS,
    Command,
    parse_annotation,
    parse_signer,
)
from .fields import (
    OPTIONS,
    Uploads,
    add_options,
    build_people,
    call_fields,
    given_options,
    load_json,
    model_of,
)
from .output import EXIT_FAILED, EXIT_USAGE, CliError, dump, out

__all__ = ["JSON_HELP", "add_parser", "create", "flow_arguments", "signer_option"]

JSON_HELP = "print the API's answer as one JSON document"

_UPDATE = (
    "deadline",
    "hard_deadline",
    "require_qualified_signatures",
    "allow_video_identification",
    "allow_document_saving",
    "allowed_signing_methods",
)


def signer_option(parser: argparse.ArgumentParser) -> None:
    """``--signer K=V,...`` (repeatable) on ``parser``."""
    parser.add_argument(
        "--signer",
        action="append",
        type=parse_signer,
        metavar="K=V,...",
        help="a participant, e.g. 'external_id=u1,email=a@b.lt,name=Jonas,"
        "surname=Jonaitis,code=...,country_code=lt,role=viewer' (repeat for more; "
        "'\\,' is a literal comma)",
    )


def flow_arguments(parser: argparse.ArgumentParser, *, internal: bool = True) -> None:
    """The signing token, ``--internal`` and ``--json`` on ``parser``."""
    parser.add_argument("signing_token", metavar="TOKEN", help="the signing token")
    if internal:
        parser.add_argument("--internal", action="store_true", help="an internal signing")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_parser(command: Command, api_options: argparse.ArgumentParser) -> None:
    """Add ``signing`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("signing", "every call on a signing (create, update, delete, ...)")
    actions = p.add_subparsers(dest="signing_command", required=True, metavar="ACTION")

    def action(name: str, helptext: str, run: Callable[..., Any]) -> argparse.ArgumentParser:
        a = actions.add_parser(
            name, parents=[api_options], help=helptext, description=helptext, allow_abbrev=False
        )
        a.set_defaults(run=run)
        return a

    a = action("create", "create a signing from files and print its tokens", create)
    a.add_argument("files", nargs="+", metavar="FILE", help="files to sign")
    a.add_argument("--name", help='the document\'s name (or "name" in --from-json)')
    a.add_argument("--type", choices=[t.value for t in SigningType], help="(default: pdf)")
    a.add_argument("--internal", action="store_true", help="an internal signing (no e-mails)")
    signer_option(a)
    add_options(a, list(OPTIONS))
    _from_json(a, "the API's create body without files: name, type, signers, ...")
    api.transfer_arguments(a, JSON_HELP)
    a = action("status", "print a signing's status", api.status)
    flow_arguments(a)
    a = action("download", "download the signed file", api.download)
    api.download_arguments(a)
    a = action("add-signers", "add participants to a signing", add_signers)
    flow_arguments(a)
    signer_option(a)
    a.add_argument("--comment", help="a message for the new participants (external)")
    _from_json(a, '{"signers": [...], "comment": "..."}')
    a = action("remove-signers", "remove participants from a signing", remove_signers)
    flow_arguments(a)
    a.add_argument("signer_tokens", nargs="+", metavar="SIGNER", help="a participant's token")
    a = action("update", "change a signing's options (only those given are sent)", update)
    flow_arguments(a)
    add_options(a, _UPDATE)
    a = action("delete", "delete a signing, after a confirmation", delete)
    flow_arguments(a)
    a.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    a = action("remind", "remind a participant who has not signed (external)", remind)
    flow_arguments(a, internal=False)
    a.add_argument("signer_token", metavar="SIGNER", help="the participant's token")
    a.add_argument("--message", help="text of the reminder (default: Dokobit's)")
    a = action("seal", "e-seal a signing's document with your organisation's seal", seal)
    flow_arguments(a, internal=False)
    a.add_argument("--reason", help="the reason recorded in the seal")
    a.add_argument(
        "--annotation",
        type=parse_annotation,
        metavar="K=V,...",
        help="where the visible seal goes, e.g. 'page=1,top=10,left=20'",
    )


def _from_json(parser: argparse.ArgumentParser, shape: str) -> None:
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help=f"take the call's fields from a JSON object ('-' for stdin): {shape}; "
        "options given override its fields, --signer adds to its list",
    )


def _flow(args: argparse.Namespace, client: DokobitClient) -> tuple[Any, str]:
    if getattr(args, "internal", False):
        return client.internal, "internal signings"
    return client.external, "external signings"


def _signers(
    args: argparse.Namespace, listed: Sequence[object]
) -> list[ExternalSigner] | list[InternalSigner]:
    internal = getattr(args, "internal", False)
    kind: Any = InternalSigner if internal else ExternalSigner
    allowed = INTERNAL_SIGNER_KEYS if internal else EXTERNAL_SIGNER_KEYS
    where = f"for {'internal' if internal else 'external'} signings"
    people: list[Any] = build_people(
        listed, kind, allowed=allowed | {"annotation"}, label="--from-json signer", where=where
    )
    people += build_people(
        args.signer or [],
        kind,
        allowed=allowed,
        label="--signer",
        where=where,
        start=len(people) + 1,
    )
    return people


def _fields(args: argparse.Namespace, method: Callable[..., Any], what: str) -> dict[str, Any]:
    """``--from-json``'s fields, overridden by the options given."""
    body = load_json(args.from_json) if getattr(args, "from_json", None) else {}
    fields = call_fields(method, body, what=what, lists=("signers",))
    accepted = inspect.signature(method).parameters
    return {**fields, **given_options(args, accepted, what)}


def _describe_created(created: CreatedSigning | SignersAdded, internal: bool) -> list[str]:
    lines = [f"signing token: {created.token}"] if isinstance(created, CreatedSigning) else []
    for s in created.signers:
        lines.append(f"signer {s.external_id or '-'}: {s.token}")
        url = s.signing_url if isinstance(s, CreatedSigner) else s.redirect_uri
        if internal and url:
            lines.append(f"  signing URL: {url}")
    return lines


async def create(args: argparse.Namespace, client: DokobitClient) -> int:
    """Create a signing from files, options and ``--from-json`` (also ``sign``)."""
    flow, what = _flow(args, client)
    fields = _fields(args, flow.create, what)
    if args.internal and not fields.get("redirect_uri"):
        raise CliError("--internal needs --redirect-uri URL", code=EXIT_USAGE)
    if args.name:
        fields["name"] = args.name
    if args.type:
        fields["type"] = args.type
    fields.setdefault("type", SigningType.PDF.value)
    if not fields.get("name"):
        raise CliError('a name is needed: --name or "name" in --from-json', EXIT_USAGE)
    fields["signers"] = _signers(args, fields.get("signers", []))
    uploads = Uploads(args.files, progress=getattr(args, "progress", False))
    with uploads.progress:
        created = await flow.create(files=uploads.files, **fields)
    out(dump(created.raw) if args.json else "\n".join(_describe_created(created, args.internal)))
    return 0


async def add_signers(args: argparse.Namespace, client: DokobitClient) -> int:
    """Add participants from ``--signer`` options and ``--from-json``."""
    flow, what = _flow(args, client)
    fields = _fields(args, flow.add_signers, what)  # --comment: external only
    signers = _signers(args, fields.pop("signers", []))
    if not signers:
        raise CliError('no one to add: give --signer or "signers" in --from-json', EXIT_USAGE)
    added = await flow.add_signers(args.signing_token, signers, **fields)
    out(dump(added.raw) if args.json else "\n".join(_describe_created(added, args.internal)))
    return 0


async def remove_signers(args: argparse.Namespace, client: DokobitClient) -> int:
    """Remove participants by their tokens."""
    flow, _ = _flow(args, client)
    result = await flow.remove_signers(args.signing_token, args.signer_tokens)
    count = len(args.signer_tokens)
    _done(args, result.raw, f"removed {count} signer{'s' * (count != 1)}")
    return 0


async def update(args: argparse.Namespace, client: DokobitClient) -> int:
    """Change the options given."""
    flow, what = _flow(args, client)
    fields = given_options(args, inspect.signature(flow.update).parameters, what)
    if not fields:
        flags = ", ".join(OPTIONS[n][0] for n in _UPDATE)
        raise CliError(f"nothing to update: give one of {flags}", EXIT_USAGE)
    result = await flow.update(args.signing_token, **fields)
    _done(args, result.raw, f"updated {', '.join(sorted(fields))}")
    return 0


async def delete(args: argparse.Namespace, client: DokobitClient) -> int:
    """Delete a signing once confirmed (``--yes``, or ``y`` on the terminal)."""
    flow, _ = _flow(args, client)
    if not args.yes:
        if not _interactive():
            raise CliError(
                "refusing to delete without confirmation: stdin is not a terminal; "
                "pass --yes to delete",
                EXIT_USAGE,
            )
        current = await flow.status(args.signing_token)
        kind = "internal" if args.internal else "external"
        summary = (
            f"about to delete the {kind} signing {args.signing_token}: "
            f"{current.name or '-'!r}, {current.status}, {len(current.signers)} signer(s)"
        )
        if not await _confirmed(summary):
            raise CliError("not deleted", EXIT_FAILED)
    result = await flow.delete(args.signing_token)
    _done(args, result.raw, "deleted")
    return 0


async def remind(args: argparse.Namespace, client: DokobitClient) -> int:
    """Remind one participant (external signings only)."""
    result = await client.external.remind(
        args.signing_token, args.signer_token, message=args.message
    )
    _done(args, result.raw, f"reminded {args.signer_token}")
    return 0


async def seal(args: argparse.Namespace, client: DokobitClient) -> int:
    """E-seal the signing's document."""
    annotation = None
    if args.annotation is not None:
        annotation = model_of(Annotation, args.annotation, "--annotation", ANNOTATION_KEYS)
    result = await client.seal(
        args.signing_token, custom_reason=args.reason, annotation=annotation
    )
    _done(args, result.raw, "sealed")
    return 0


def _done(args: argparse.Namespace, raw: Any, what: str) -> None:
    out(dump(raw) if args.json else f"{what}: signing {args.signing_token}")


def _interactive() -> bool:
    try:
        return bool(sys.stdin.isatty())
    except (AttributeError, ValueError, OSError):
        return False


async def _confirmed(summary: str) -> bool:
    """Ask on stderr, read the answer from stdin (the terminal): ``y`` or ``yes``.

    The loop waits for the terminal to hold a line (a reader, not a thread), so that
    Ctrl-C at the prompt ends the command at once (130) instead of waiting for Enter.
    """
    shown = printable(summary, 1024, backslashes=False)
    print(f"{shown}\ndelete it? [y/N] ", end="", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    line: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not line.done():
            line.set_result(None)

    try:
        loop.add_reader(sys.stdin.fileno(), readable)
    except NotImplementedError:  # no readers on this loop (Windows): wait in a thread
        answer = await asyncio.to_thread(sys.stdin.readline)
    else:
        try:
            await line
        finally:
            loop.remove_reader(sys.stdin.fileno())
        answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
