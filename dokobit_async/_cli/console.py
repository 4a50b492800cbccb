"""``dokobit-async console``: the dead-letter console in the browser, until Ctrl-C.

It serves :class:`dokobit_async._console.Console` over an inbox (a file,
``sqlite:///PATH`` or a Redis URL, as ``listen`` and ``inbox`` take it) on
127.0.0.1 by default, and prints the one URL to open: it holds a random access key,
made at each start, that every request needs (see :mod:`dokobit_async._console`).
The key is printed once, on stdout, and never logged.

Secrets the pages mask besides what :mod:`dokobit_async._redact` finds by shape: the
access token (``$DOKOBIT_ACCESS_TOKEN``) and the postback secret (``$SECRET_ENV``, or
the one kept beside an SQLite inbox), when known.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

from aiohttp import web

from .._console import Console, access_logger, new_key
from .access import TOKEN_ENV
from .arguments import Command, port_number
from .inboxes import InboxLocation, inbox_location, opened
from .listen import DEFAULT_INBOX, SECRET_ENV, local_url, note
from .output import CliError, out
from .signals import stop_on_signals

__all__ = ["add_parser", "console"]

DEFAULT_PORT = 8090


def add_parser(command: Command) -> None:
    """Add ``console`` through ``cli.build_parser``'s ``command`` helper."""
    p = command(
        "console", "serve the dead-letter console (a local web page) until Ctrl-C", uses_api=False
    )
    p.add_argument(
        "--inbox",
        default=DEFAULT_INBOX,
        metavar="PATH|URL",
        help="the listener's inbox: a file, sqlite:///PATH or redis://HOST[:PORT][/DB] "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s: this machine only)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"0 picks a free port (default: {DEFAULT_PORT})",
    )


def _known_secrets(where: InboxLocation) -> list[str]:
    """The access token and postback secret this process can know of, to mask."""
    found = [os.environ.get(TOKEN_ENV, "").strip(), os.environ.get(SECRET_ENV, "").strip()]
    if where.kind == "sqlite":
        with contextlib.suppress(OSError, UnicodeDecodeError):
            found.append(Path(f"{where.path}.secret").read_text(encoding="utf-8").strip())
    return [value for value in found if value]


async def console(args: argparse.Namespace) -> int:
    """Serve the console until SIGINT or SIGTERM; print the URL (with its key) to open."""
    where = inbox_location(args.inbox)
    key = new_key()
    async with opened(where, existing=True) as box:
        app = Console(box, key, secrets=_known_secrets(where)).app()
        runner = web.AppRunner(app, access_log_class=access_logger(key))
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, args.host, args.port).start()
                except OSError as exc:
                    raise CliError(
                        f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                    ) from None
                local = local_url(runner)
                out(f"console: {local}/?key={key}")
                note(f"console of {where.shown}: open the URL above; press Ctrl-C to stop")
                await stop.wait()
            finally:
                await runner.cleanup()
    note("console stopped")
    return 0
