"""The first commands of the Universal API: ``status``, ``download`` and ``validate``
call it (``sign`` is ``signing create``, in :mod:`.signings`), ``emulate`` serves its
emulator.

Each command is an async function of the parsed arguments (and, for the calls, an open
client) that returns the exit status. Argument parsing, the client's construction and
error reporting live in :mod:`dokobit_async.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

from ..client import DokobitClient
from ..models import ReportKind, SigningStatus
from .fields import Uploads
from .output import (
    EXIT_USAGE,
    CliError,
    cannot_listen,
    default_name,
    dump,
    human_size,
    out,
    save,
    shown_path,
    table,
)
from .signals import stop_on_signals

__all__ = [
    "download",
    "download_arguments",
    "emulate",
    "one_stdout_use",
    "save_report",
    "saved",
    "status",
    "transfer_arguments",
    "validate",
    "validate_arguments",
]


def _describe_status(result: SigningStatus) -> list[str]:
    lines = [
        f"name:     {result.name or '-'}",
        f"type:     {result.type or '-'}",
        f"status:   {result.status}",
    ]
    if result.date_created is not None:
        lines.append(f"created:  {result.date_created.isoformat()}")
    if result.deadline is not None:
        lines.append(f"deadline: {result.deadline.isoformat()}")
    if result.files:
        lines.append(f"files:    {', '.join(f.name or '?' for f in result.files)}")
    if not result.signers:
        lines.append("signers:  none")
        return lines
    lines.append("signers:")
    rows = [["STATUS", "EXTERNAL ID", "NAME", "CONTACT", "TOKEN"]]
    for s in result.signers:
        name = " ".join(p for p in (s.first_name, s.last_name) if p) or "-"
        contact = s.email or (f"{s.country}:{s.code}" if s.code else "-")
        rows.append([str(s.status or "-"), s.external_id or "-", name, contact, s.token or "-"])
    return lines + table(rows)


async def status(args: argparse.Namespace, client: DokobitClient) -> int:
    """Print a signing's status, or its raw JSON with ``--json``."""
    flow = client.internal if args.internal else client.external
    result = await flow.status(args.signing_token)
    out(dump(result.raw) if args.json else "\n".join(_describe_status(result)))
    return 0


def download_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``download`` (and ``signing download``)."""
    parser.add_argument("signing_token", metavar="TOKEN", help="the signing token")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write ('-' for stdout; default: the server's file name, never overwriting)",
    )
    parser.add_argument("--internal", action="store_true", help="an internal signing")
    transfer_arguments(parser)


def validate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``validate``."""
    parser.add_argument("file", metavar="FILE", help="the signed file")
    parser.add_argument(
        "--report",
        choices=[k.value for k in ReportKind],
        default=ReportKind.REPORT_PDF.value,
        help="which report (default: %(default)s)",
    )
    parser.add_argument("-o", "--output", metavar="OUT", help="where to write ('-' for stdout)")
    transfer_arguments(parser)


def transfer_arguments(
    parser: argparse.ArgumentParser,
    json_help: str = "print what was saved as JSON (not with -o -)",
) -> None:
    """``--progress`` and ``--json`` of a command that moves a file."""
    parser.add_argument(
        "--progress", action="store_true", help="show progress on stderr even if no terminal"
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def saved(args: argparse.Namespace, found: list[dict[str, Any]]) -> None:
    """Say what was saved: a line per file, or one JSON document with ``--json``.

    ``found`` holds ``{"what", "file", "bytes"}`` per file (and any other key to show
    in the JSON). With ``-o -`` stdout carries the file itself, so nothing else may go
    there."""
    if args.json:
        out(dump({"saved": found}))
        return
    for item in found:
        if item["file"] != "-":
            size = human_size(item["bytes"])
            out(f"saved {item['what']} to {shown_path(item['file'])} ({size})")


def one_stdout_use(args: argparse.Namespace) -> None:
    """Refuse ``--json`` with ``-o -``: both would write on stdout."""
    if args.json and args.output == "-":
        raise CliError("--json and -o - both want stdout; choose one", EXIT_USAGE)


async def download(args: argparse.Namespace, client: DokobitClient) -> int:
    """Download the signed file."""
    one_stdout_use(args)
    flow = client.internal if args.internal else client.external
    async with flow.open_download(args.signing_token) as dl:
        dest = args.output or default_name(
            dl.filename, dl.content_type, f"signed-{args.signing_token}"
        )
        size = await save(
            dl,
            dest,
            total=dl.content_length,
            label=f"downloading {Path(dest).name if dest != '-' else ''}".rstrip(),
            overwrite=args.output is not None,
            progress=args.progress,
        )
    saved(args, [{"what": "the signed file", "file": dest, "bytes": size}])
    return 0


async def save_report(
    client: DokobitClient, token: str, kind: str, output: str | None, stem: str, progress: bool
) -> dict[str, Any]:
    """Download the report ``kind`` of the validation ``token`` to ``output`` (default:
    the server's name, else ``{stem}-{kind}``); what was saved, for :func:`saved`."""
    async with client.validation.open_report(token, kind) as dl:
        fallback = "pdf" if kind.endswith("pdf") else "xml"
        dest = output or default_name(
            dl.filename, dl.content_type, f"{stem}-{kind}", fallback_ext=fallback
        )
        size = await save(
            dl,
            dest,
            total=dl.content_length,
            label=f"downloading {kind}",
            overwrite=output is not None,
            progress=progress,
        )
    return {"what": kind, "file": dest, "bytes": size, "kind": kind, "validation_token": token}


async def validate(args: argparse.Namespace, client: DokobitClient) -> int:
    """Upload a signed file for validation and save one of its reports."""
    one_stdout_use(args)
    uploads = Uploads([args.file], progress=args.progress)
    with uploads.progress:
        token = await client.validation.upload(uploads.files[0])
    report = await save_report(
        client, token, args.report, args.output, Path(args.file).stem, args.progress
    )
    saved(args, [report])
    return 0


async def emulate(args: argparse.Namespace) -> int:
    """Serve the emulator until SIGINT or SIGTERM."""
    from ..testing import Emulator, EmulatorConfig

    emulator = Emulator(
        host=args.host, port=args.port, config=EmulatorConfig(time_scale=args.time_scale)
    )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        try:
            await emulator.start()
        except OSError as exc:
            raise cannot_listen(args.host, args.port, exc) from None
        try:
            base, token = emulator.base_url, emulator.access_token
            out(f"emulator running at {base}")
            out(f"access token: {token}")
            out(
                f"point the client at it: export DOKOBIT_BASE_URL={shlex.quote(base)} "
                f"DOKOBIT_ACCESS_TOKEN={shlex.quote(token)}"
            )
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
        finally:
            await emulator.close()
    print("emulator stopped", file=sys.stderr, flush=True)
    return 0
