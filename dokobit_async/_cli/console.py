"""``dokobit-async console``: the dead-letter console in the browser, until Ctrl-C.

It serves :class:`dokobit_async._console.Console` over an inbox (a file,
``sqlite:///PATH`` or a Redis URL, as ``listen`` and ``inbox`` take it) on
127.0.0.1 by default, and prints the one URL to open: it holds a random access key,
made at each start, that every request needs (see :mod:`dokobit_async._console`).
The key is printed once, on stdout, and never logged.

Secrets the pages mask besides what :mod:`dokobit_async._redact` finds by shape: the
access token (``$DOKOBIT_ACCESS_TOKEN``) and every postback secret of
``$DOKOBIT_POSTBACK_SECRET`` or of the file kept beside an SQLite inbox, when known
(:func:`~dokobit_async._cli.secrets_source.known_secrets`).
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from .._console import Console, access_logger, new_key
from .arguments import Command, port_number
from .inboxes import add_inbox_option, inbox_location, opened
from .listen import local_url, note
from .output import cannot_listen, out
from .secrets_source import known_secrets
from .signals import stop_on_signals

__all__ = ["add_parser", "console"]

DEFAULT_PORT = 8090


def add_parser(command: Command) -> None:
    """Add ``console`` through ``cli.build_parser``'s ``command`` helper."""
    p = command(
        "console", "serve the dead-letter console (a local web page) until Ctrl-C", uses_api=False
    )
    add_inbox_option(p)
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


async def console(args: argparse.Namespace) -> int:
    """Serve the console until SIGINT or SIGTERM; print the URL (with its key) to open."""
    where = inbox_location(args.inbox)
    key = new_key()
    async with opened(where, existing=True) as box:
        app = Console(box, key, secrets=known_secrets(where)).app()
        runner = web.AppRunner(app, access_log_class=access_logger(key))
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, args.host, args.port).start()
                except OSError as exc:
                    raise cannot_listen(args.host, args.port, exc) from None
                local = local_url(runner)
                out(f"console: {local}/?key={key}")
                note(f"console of {where.shown}: open the URL above; press Ctrl-C to stop")
                await stop.wait()
            finally:
                await runner.cleanup()
    note("console stopped")
    return 0
