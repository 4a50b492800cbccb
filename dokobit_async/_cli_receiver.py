"""The receiver's sub-commands of ``dokobit-async``: ``listen`` and ``inbox``.

``listen`` serves a :class:`~dokobit_async.receiver.PostbackReceiver` with the
handlers of a ``module:attribute`` :class:`~dokobit_async.routing.Router` and an SQLite
inbox; ``inbox list|show|retry|purge`` inspects and repairs that inbox, also while a
listener runs on the same file (WAL).

The postback secret comes from an environment variable; without one, a random secret
is generated once and kept beside the inbox (``postbacks.db.secret``, mode 0600), so
the URLs minted before a restart still verify after it. The secret itself is never
printed: only URLs minted from it are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import get_args
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from ._cli_commands import _out, _table, non_negative, port_number, stop_on_signals
from ._cli_output import CliError
from ._dispatcher import shown_token
from .client import DokobitClient
from .inbox import InboxState, SQLiteInbox, StoredEvent
from .receiver import PostbackReceiver, RedactingAccessLogger
from .routing import Router
from .sansio import redact_text

__all__ = [
    "SECRET_ENV",
    "add_parsers",
    "inbox",
    "listen",
    "load_router",
    "local_url",
    "postback_secret",
    "public_url",
]

SECRET_ENV = "DOKOBIT_POSTBACK_SECRET"  # noqa: S105 - the variable's name
DEFAULT_INBOX = "postbacks.db"
_STATES = list(get_args(InboxState))
_ERROR_WIDTH = 50

Command = Callable[..., argparse.ArgumentParser]


def add_parsers(command: Command) -> None:
    """Add ``listen`` and ``inbox`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("listen", "serve a postback receiver until Ctrl-C or SIGTERM")
    p.add_argument(
        "--router",
        required=True,
        metavar="MODULE:ATTR",
        help="the Router with your handlers, e.g. mypkg.handlers:router",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port", type=port_number, default=8080, help="0 picks a free port (default: 8080)"
    )
    p.add_argument("--inbox", default=DEFAULT_INBOX, help="SQLite inbox (default: %(default)s)")
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the address Dokobit reaches this listener at, e.g. https://example.com "
        "(default: the local address, reachable from this machine only)",
    )
    p.add_argument(
        "--secret-env",
        default=SECRET_ENV,
        metavar="VAR",
        help="variable holding the postback secret (default: %(default)s; if unset, one "
        "is generated and kept in INBOX.secret)",
    )
    p.add_argument(
        "--path", default="/dokobit/postback", help="the receiver's path (default: %(default)s)"
    )
    p.add_argument(
        "--confirm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="confirm each event against the API before the handlers run (needs the "
        "access token; default: on)",
    )

    p = command("inbox", "inspect or repair a listener's inbox", uses_api=False)
    actions = p.add_subparsers(dest="inbox_command", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--inbox", default=DEFAULT_INBOX, help="SQLite inbox (default: %(default)s)"
    )

    def action(name: str, helptext: str) -> argparse.ArgumentParser:
        return actions.add_parser(
            name, parents=[where], help=helptext, description=helptext, allow_abbrev=False
        )

    a = action("list", "one line per event, oldest first")
    a.add_argument("--state", choices=_STATES, help="only events in this state")
    a.add_argument("--limit", type=_count, default=100, help="at most N (default: %(default)s)")
    a = action("show", "one event's details and body")
    a.add_argument("event", metavar="ID", help="the event's seq number, id or id prefix")
    a = action("retry", "send dead or unconfirmed events to the handlers again")
    a.add_argument("event", metavar="ID", nargs="?", help="one event (default: all)")
    a = action("purge", "delete the events in a state")
    a.add_argument("--state", choices=_STATES, default="done", help="(default: %(default)s)")
    a.add_argument(
        "--older-than",
        type=non_negative,
        metavar="SECONDS",
        default=2 * 24 * 3600,
        help="only events received more than SECONDS ago (default: two days, past "
        "Dokobit's last retry at 24 h, so a purged event cannot come back as new; "
        "0 purges all)",
    )


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0: {text!r}")
    return int(text)


def _note(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"dokobit-async: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ listen


def load_router(spec: str) -> Router:
    """The :class:`Router` named by ``module:attribute`` (the attribute may be dotted);
    every problem is a usage error of one line."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise CliError(f"--router must look like module:attribute, not {spec!r}", code=2)
    # like `python -m`, find modules in the working directory too
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CliError(f"--router: no module named {missing!r}", code=2) from None
        raise CliError(f"--router: importing {module_name} failed: {exc}", code=2) from None
    except Exception as exc:
        raise CliError(
            f"--router: importing {module_name} failed: {type(exc).__name__}: {exc}", code=2
        ) from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CliError(
                f"--router: module {module_name!r} has no attribute {attribute!r}", code=2
            ) from None
    if not isinstance(found, Router):
        raise CliError(
            f"--router: {spec} is not a dokobit_async Router but {type(found).__name__!r}", code=2
        )
    return found


def postback_secret(env_name: str, inbox_path: Path) -> tuple[bytes, str | None]:
    """The postback secret and a note for stderr (``None`` when it came from the
    environment). Without ``$env_name``, the secret kept in ``INBOX.secret`` is used,
    made on first use (random, mode 0600, written atomically)."""
    value = os.environ.get(env_name, "").strip()
    if value:
        if len(value.encode()) < 16:
            raise CliError(f"${env_name} must be at least 16 bytes long", code=2)
        return value.encode(), None
    if not inbox_path.parent.is_dir():
        raise CliError(f"--inbox {inbox_path}: no directory {inbox_path.parent}", code=2)
    path = Path(f"{inbox_path}.secret")
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32) + "\n")
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another listener won the race
                os.link(tmp, path)
        finally:
            tmp.unlink()
        made = True
    else:
        made = False
    stored = path.read_text(encoding="utf-8").strip()
    if len(stored.encode()) < 16:
        raise CliError(f"{path} holds no usable postback secret; delete it or set ${env_name}")
    if made:
        note = f"${env_name} is not set: generated a postback secret, kept in {path} (mode 0600)"
    else:
        note = f"${env_name} is not set: using the postback secret kept in {path}"
    return stored.encode(), note


def public_url(text: str) -> str:
    """``--public-url`` checked: an http(s) address with a host, no query."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise CliError(
            f"--public-url must be an http(s) URL such as https://example.com: {text!r}", 2
        )
    return text.rstrip("/")


def local_url(runner: web.AppRunner) -> str:
    """``http://HOST:PORT`` of the runner's first bound address."""
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def listen(args: argparse.Namespace, client: DokobitClient | None) -> int:
    """Serve the receiver until SIGINT or SIGTERM; print the postback URL to use."""
    router = load_router(args.router)
    public = public_url(args.public_url) if args.public_url else None
    inbox_path = Path(args.inbox)
    secret, note = postback_secret(args.secret_env, inbox_path)
    if note:
        _note(note)
    if args.confirm and client is None:
        _note(
            "no access token: events reach the handlers unconfirmed (--no-confirm silences this)"
        )
    receiver = PostbackReceiver(
        router,
        inbox=SQLiteInbox(inbox_path),
        secret=secret,
        client=client,
        confirm=args.confirm,
        path=args.path,
    )
    runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        try:
            await runner.setup()  # opens the inbox, starts the dispatcher
            try:
                await web.TCPSite(runner, args.host, args.port).start()
            except OSError as exc:
                raise CliError(
                    f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                ) from None
            local = local_url(runner)
            _out(f"postback URL: {receiver.postback_url(public or local)}")
            where = "" if public else " (no --public-url: reachable from this machine only)"
            _note(f"listening on {local}{receiver.path}{where}; inbox {inbox_path}")
            _note("press Ctrl-C to stop")
            await stop.wait()
        finally:
            await runner.cleanup()  # drains the handlers, closes the inbox
    _note("listener stopped")
    return 0


# ------------------------------------------------------------------ inbox


async def inbox(args: argparse.Namespace) -> int:
    """``inbox list|show|retry|purge`` on an existing inbox file."""
    path = _existing(args.inbox)
    async with SQLiteInbox(path) as box:
        if args.inbox_command == "list":
            events = await box.list(state=args.state, limit=args.limit)
            if not events:
                _out("no events" + (f" in state {args.state}" if args.state else ""))
                return 0
            header = ["SEQ", "ID", "STATE", "ACTION", "TOKEN", "TRIES", "RECEIVED", "LAST ERROR"]
            rows = [header] + [_row(event) for event in events]
            _out("\n".join(line[2:] for line in _table(rows)))
        elif args.inbox_command == "show":
            _out("\n".join(_describe(await _find(box, args.event))))
        elif args.inbox_command == "retry":
            event_id = None if args.event is None else (await _find(box, args.event)).id
            moved = await box.retry(event_id)
            _out(f"{moved} event{'' if moved == 1 else 's'} back to pending")
        else:
            older = None if not args.older_than else time.time() - args.older_than
            gone = await box.purge(state=args.state, older_than=older)
            _out(f"{gone} {args.state} event{'' if gone == 1 else 's'} purged")
    return 0


def _existing(name: str) -> Path:
    path = Path(name)
    if not path.is_file():  # SQLite would create an empty database
        raise CliError(f"no inbox at {path} (a listener creates it; pass --inbox FILE)", code=2)
    return path


async def _find(box: SQLiteInbox, ref: str) -> StoredEvent:
    """An event by id, seq number or unique id prefix."""
    event = await box.get(ref)
    if event is not None:
        return event
    total = sum((await box.counts()).values())
    events = await box.list(limit=total)
    if ref.isdigit():
        matches = [e for e in events if e.seq == int(ref)]
    else:
        matches = [e for e in events if e.id.startswith(ref.lower())] if ref else []
    if len(matches) > 1:
        raise CliError(f"event id prefix {ref!r} is ambiguous; give more of it", code=2)
    if not matches:
        raise CliError(f"no event {ref!r} in {box.path}")
    return matches[0]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _short_error(error: str | None) -> str:
    if not error:
        return "-"
    line = " ".join(error.split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


def _row(event: StoredEvent) -> list[str]:
    received = datetime.fromtimestamp(event.received_at).strftime("%m-%d %H:%M:%S")
    return [
        str(event.seq),
        event.id[:12],
        event.state,
        event.action,
        shown_token(event.signing_token),
        str(event.attempts),
        received,
        _short_error(event.last_error),
    ]


def _describe(event: StoredEvent) -> list[str]:
    lines = [
        f"id:           {event.id}",
        f"seq:          {event.seq}",
        f"state:        {event.state}",
        f"action:       {event.action}",
        f"token:        {event.signing_token or '-'}",
        f"received:     {_when(event.received_at)}",
        f"attempts:     {event.attempts}",
    ]
    if event.state == "pending" and event.next_attempt_at > time.time():
        lines.append(f"next attempt: {_when(event.next_attempt_at)}")
    lines.append(f"handlers ok:  {', '.join(sorted(event.handlers_done)) or '-'}")
    lines.append(f"last error:   {event.last_error or '-'}")
    lines.append(f"body ({event.content_type or 'no content type'}):")
    return lines + ["  " + line for line in _pretty_body(event).splitlines()]


def _pretty_body(event: StoredEvent) -> str:
    text = event.body.decode("utf-8", errors="replace")
    try:
        value: object = json.loads(text)
    except ValueError:
        value = dict(parse_qsl(text)) if "form" in event.content_type else None
    shown = text if value is None else json.dumps(value, indent=2, ensure_ascii=False)
    return redact_text(shown, "")  # an access_token= in a URL is masked
