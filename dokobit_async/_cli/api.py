"""The commands of the Universal API: ``status``, ``download``, ``validate`` and
``sign`` call it, ``emulate`` serves its emulator.

Each command is an async function of the parsed arguments (and, for the calls, an open
client) that returns the exit status. Argument parsing, the client's construction and
error reporting live in :mod:`dokobit_async.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..client import DokobitClient
from ..exceptions import InvalidArgumentError
from ..models import (
    CreatedSigning,
    ExternalSigner,
    InternalSigner,
    SigningFile,
    SigningStatus,
)
from .arguments import EXTERNAL_SIGNER_KEYS, INTERNAL_SIGNER_KEYS
from .output import (
    CliError,
    Progress,
    default_name,
    dump,
    human_size,
    out,
    save,
    shown_path,
    table,
)
from .signals import stop_on_signals

__all__ = ["download", "emulate", "sign", "status", "validate"]

_INT_KEYS = frozenset({"sequence"})
_Signer = TypeVar("_Signer", ExternalSigner, InternalSigner)


def _build_signers(specs: Sequence[Mapping[str, str]], kind: type[_Signer]) -> list[_Signer]:
    """Signer models (``kind``) from parsed ``--signer`` options; ``external_id``
    defaults to ``signer1``, ``signer2``...; problems raise a usage error."""
    internal = kind is InternalSigner
    allowed = INTERNAL_SIGNER_KEYS if internal else EXTERNAL_SIGNER_KEYS
    flow = "internal" if internal else "external"
    signers: list[_Signer] = []
    for number, spec in enumerate(specs, 1):
        wrong = sorted(set(spec) - allowed)
        if wrong:
            raise CliError(
                f"--signer #{number}: {', '.join(wrong)} not accepted for {flow} signings; "
                f"use: {', '.join(sorted(allowed))}",
                code=2,
            )
        fields: dict[str, Any] = {k: v for k, v in spec.items() if v != ""}
        fields.setdefault("external_id", f"signer{number}")
        for key in _INT_KEYS & set(fields):
            try:
                fields[key] = int(fields[key])
            except ValueError:
                raise CliError(f"--signer #{number}: {key} must be a whole number", 2) from None
        try:
            signers.append(kind(**fields))
        except InvalidArgumentError as exc:
            raise CliError(f"--signer #{number}: {exc}", code=2) from None
    return signers


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


def _saved(what: str, dest: str, size: int) -> None:
    # with ``-o -`` stdout carries the file itself, so nothing else may go there
    if dest != "-":
        out(f"saved {what} to {shown_path(dest)} ({human_size(size)})")


async def download(args: argparse.Namespace, client: DokobitClient) -> int:
    """Download the signed file."""
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
        )
    _saved("the signed file", dest, size)
    return 0


class _Uploads:
    """One progress bar over several files sent one after the other."""

    def __init__(self, paths: Sequence[str]):
        label = f"uploading {Path(paths[0]).name}" if len(paths) == 1 else "uploading"
        if len(paths) > 1:
            label += f" {len(paths)} files"
        self.progress = Progress(label)
        self._sizes = [_size_of(p) for p in paths]
        self._sent = [0] * len(paths)

    def callback(self, index: int) -> Any:
        def on_progress(sent: int, total: int) -> None:
            self._sizes[index] = total
            self._sent[index] = sent
            self.progress.update(sum(self._sent), sum(self._sizes))

        return on_progress

    def files(self, paths: Sequence[str]) -> list[SigningFile]:
        try:
            return [
                SigningFile.from_path(p, on_progress=self.callback(i)) for i, p in enumerate(paths)
            ]
        except InvalidArgumentError as exc:
            raise CliError(str(exc), code=2) from None


def _size_of(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


async def validate(args: argparse.Namespace, client: DokobitClient) -> int:
    """Upload a signed file for validation and save one of its reports."""
    uploads = _Uploads([args.file])
    (file,) = uploads.files([args.file])
    with uploads.progress:
        token = await client.validation.upload(file)
    kind: str = args.report
    async with client.validation.open_report(token, kind) as dl:
        fallback = "pdf" if kind.endswith("pdf") else "xml"
        dest = args.output or default_name(
            dl.filename, dl.content_type, f"{Path(args.file).stem}-{kind}", fallback_ext=fallback
        )
        size = await save(
            dl,
            dest,
            total=dl.content_length,
            label=f"downloading {kind}",
            overwrite=args.output is not None,
        )
    _saved(kind, dest, size)
    return 0


def _describe_created(created: CreatedSigning, internal: bool) -> list[str]:
    lines = [f"signing token: {created.token}"]
    for s in created.signers:
        lines.append(f"signer {s.external_id or '-'}: {s.token}")
        if internal and s.signing_url:
            lines.append(f"  signing URL: {s.signing_url}")
    return lines


async def sign(args: argparse.Namespace, client: DokobitClient) -> int:
    """Create a signing from files and ``--signer`` options."""
    if args.internal and not args.redirect_uri:
        raise CliError("--internal needs --redirect-uri URL", code=2)
    if args.redirect_uri and not args.internal:
        raise CliError("--redirect-uri applies to --internal signings only", code=2)
    specs = args.signer or []
    if args.internal:
        internal_signers = _build_signers(specs, InternalSigner)
    else:
        external_signers = _build_signers(specs, ExternalSigner)
    uploads = _Uploads(args.files)
    files = uploads.files(args.files)
    common: dict[str, Any] = {
        "name": args.name,
        "type": args.type,
        "files": files,
        "postback_url": args.postback_url,
    }
    with uploads.progress:
        if args.internal:
            created = await client.internal.create(
                **common, signers=internal_signers, redirect_uri=args.redirect_uri
            )
        else:
            created = await client.external.create(**common, signers=external_signers)
    out(dump(created.raw) if args.json else "\n".join(_describe_created(created, args.internal)))
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
            raise CliError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
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
