"""``dokobit-async listen``: serve a postback receiver until Ctrl-C or SIGTERM.

It serves a :class:`~dokobit_async.receiver.PostbackReceiver` with the handlers of a
``module:attribute`` :class:`~dokobit_async.routing.Router` and an inbox: an SQLite
file, or Redis (:mod:`dokobit_async._cli.inboxes`). With ``--no-dispatch`` (a Redis
inbox's replicas) it stores and answers only, and ``dokobit-async work`` processes
run the handlers.

The postback secret comes from ``--secret-file PATH`` (one per line, mode 0600) or an
environment variable (``$DOKOBIT_POSTBACK_SECRET``, or the one ``--secret-env`` names),
never from the command line (:mod:`dokobit_async._cli.secrets_source`). Either may
hold several: the first mints new URLs, any verifies, so that a secret is rotated
without downtime (``docs/architecture.md#rotating-the-postback-secret``). Without
either, with an SQLite inbox, a random secret is generated once and kept beside the
inbox (``postbacks.db.secret``, mode 0600), so the URLs minted before a restart still
verify after it. A Redis inbox's replicas must share one: a file or the variable is
required. No secret is ever printed: only URLs minted from the first are.

``listen`` stays reachable when senders misbehave: it raises its open-files limit to
the hard limit (said at ``-v``), closes idle keep-alive connections after
``--keepalive-timeout`` and connections that do not deliver a request's headers
within ``--header-timeout``, and keeps its connections below ``--max-connections``
(by default a share of the open-files limit) by closing the oldest idle one when a
new sender arrives (:mod:`dokobit_async._serve`).

Its calls to the API (the confirmations, and ``--reconcile``'s status calls) count in
the token's rate limit: this process's own, or with ``--rate-limit redis://...``
(``$DOKOBIT_RATE_LIMIT``) the one that the application's processes share
(:mod:`dokobit_async._cli.access`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .._serve import (
    BACKLOG,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    ConnectionGuard,
    GuardedSite,
    connection_room,
    open_files_limit,
    raise_open_files_limit,
)
from ..client import DokobitClient
from ..events import POSTBACK_PATH
from ..receiver import DispatchPolicy, PostbackReceiver, RedactingAccessLogger
from ..routing import Router
from .arguments import Command, port_number, positive_seconds, whole_number
from .inboxes import add_inbox_option, inbox_location, open_inbox
from .output import PROG, CliError, cannot_listen, out
from .reconcile import add_reconcile_options, reconciling
from .secrets_source import SECRET_ENV, add_secret_options, postback_secrets
from .signals import stop_on_signals

__all__ = [
    "SECRET_ENV",
    "add_dispatch_options",
    "add_parser",
    "listen",
    "load_router",
    "local_url",
    "note",
    "public_url",
]

# the receiver's own defaults, shown in --help
_DEFAULTS: dict[str, Any] = PostbackReceiver.__init__.__kwdefaults__ or {}
_POLICY = DispatchPolicy()  # its defaults, shown in --help
logger = logging.getLogger("dokobit_async.listen")

_POSITIVE = whole_number(1)


def add_parser(command: Command) -> None:
    """Add ``listen`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("listen", "serve a postback receiver until Ctrl-C or SIGTERM")
    p.add_argument(
        "--router",
        metavar="MODULE:ATTR",
        help="the Router with your handlers, e.g. mypkg.handlers:router (required "
        "unless --no-dispatch)",
    )
    p.add_argument(
        "--dispatch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the handlers here (default); --no-dispatch stores and answers only, "
        "for a Redis inbox whose `work` processes run them",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port", type=port_number, default=8080, help="0 picks a free port (default: 8080)"
    )
    add_inbox_option(p, "where postbacks are stored")
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the address Dokobit reaches this listener at, e.g. https://example.com "
        "(default: the local address, reachable from this machine only)",
    )
    add_secret_options(p)
    p.add_argument(
        "--path", default=POSTBACK_PATH, help="the receiver's path (default: %(default)s)"
    )
    add_dispatch_options(p, "handler runs at a time, across signings")
    p.add_argument(
        "--reconcile",
        action="store_true",
        help="also poll the tracked signings and store the postbacks that never came "
        "(needs the access token; see `reconcile`)",
    )
    add_reconcile_options(p)
    p.add_argument(
        "--read-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=_DEFAULTS["read_timeout"],
        help="time for a postback's body to arrive, else 408 (default: %(default)g)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=KEEPALIVE_TIMEOUT,
        help="idle time after which a keep-alive connection is closed (default: "
        "%(default)g, longer than the 60 s of common proxies)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=HEADER_TIMEOUT,
        help="time for a request's headers, from a new connection or from their first "
        "byte (default: %(default)g)",
    )
    p.add_argument(
        "--max-connections",
        type=_POSITIVE,
        metavar="N",
        help="open connections at most; at the cap the oldest idle one is closed for a "
        "new sender (default: the open-files limit less a reserve for the inbox, "
        "the logs and connections being accepted)",
    )


def add_dispatch_options(p: argparse.ArgumentParser, concurrency: str) -> None:
    """``--confirm``, ``--concurrency`` (whose help is ``concurrency``) and
    ``--max-attempts``: how events are run, by ``listen`` and by ``work``."""
    p.add_argument(
        "--confirm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="confirm each event against the API before the handlers run (needs the "
        "access token; default: on)",
    )
    p.add_argument(
        "--concurrency",
        type=_POSITIVE,
        metavar="N",
        default=_POLICY.concurrency,
        help=f"{concurrency} (default: %(default)s)",
    )
    p.add_argument(
        "--max-attempts",
        type=_POSITIVE,
        metavar="N",
        default=_POLICY.max_attempts,
        help="runs of a failing handler before its event is dead-lettered (default: %(default)s)",
    )


def note(text: str) -> None:
    """One line on stderr, after the program's name (ignored when stderr is gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


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


def _raise_files_limit(max_connections: int | None) -> None:
    limits = raise_open_files_limit()
    if limits is None:
        return
    before, after = limits
    if after > before:
        logger.debug("raised the open-files limit from %d to %d (the hard limit)", before, after)
    else:
        logger.debug("open-files limit: %d (cannot be raised further)", after)
    room = connection_room(open_files_limit(), BACKLOG)
    if max_connections is not None and room is not None and max_connections > room:
        logger.warning(
            "--max-connections %d is more than the open-files limit leaves room for (%d): "
            "new connections may fail with 'too many open files'",
            max_connections,
            room,
        )


async def listen(args: argparse.Namespace, client: DokobitClient | None) -> int:
    """Serve the receiver until SIGINT or SIGTERM; print the postback URL to use."""
    if args.dispatch and not args.router:
        raise CliError("--router is required (or --no-dispatch: store and answer only)", 2)
    where = inbox_location(args.inbox)
    if not args.dispatch and where.kind != "redis":  # `work` reads Redis inboxes only
        raise CliError("--no-dispatch needs a Redis inbox: nothing else runs the handlers", 2)
    router = load_router(args.router) if args.dispatch else None
    public = public_url(args.public_url) if args.public_url else None
    secret, told = postback_secrets(args.secret_env, args.secret_file, where)
    if told:
        note(told)
    if args.dispatch and where.kind == "redis":
        note(
            "this listener runs the handlers of a shared Redis inbox: no other listener "
            "nor `work` may dispatch from it (replicas: --no-dispatch, and `work`)"
        )
    if args.confirm and client is None and args.dispatch:
        note("no access token: events reach the handlers unconfirmed (--no-confirm silences this)")
    _raise_files_limit(args.max_connections)
    receiver = PostbackReceiver(
        router,
        inbox=open_inbox(where),
        secret=secret,
        client=client,
        confirm=args.confirm,
        path=args.path,
        policy=DispatchPolicy(concurrency=args.concurrency, max_attempts=args.max_attempts),
        read_timeout=args.read_timeout,
    )
    guard = ConnectionGuard(
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        backlog=BACKLOG,
    )  # after raising the limit: the default cap is a share of it
    runner = web.AppRunner(
        receiver.app(),
        access_log_class=RedactingAccessLogger,
        keepalive_timeout=args.keepalive_timeout,
    )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        try:
            await runner.setup()  # opens the inbox, starts the dispatcher
            try:
                await GuardedSite(runner, args.host, args.port, guard=guard).start()
            except OSError as exc:
                raise cannot_listen(args.host, args.port, exc) from None
            local = local_url(runner)
            logger.debug(
                "at most %s connections, keep-alive %g s, headers within %g s",
                guard.max_connections or "unlimited",
                args.keepalive_timeout,
                args.header_timeout,
            )
            out(f"postback URL: {receiver.postback_url(public or local)}")
            reach = "" if public else " (no --public-url: reachable from this machine only)"
            note(f"listening on {local}{receiver.path}{reach}; inbox {where.shown}")
            note("press Ctrl-C to stop")
            async with reconciling(args, client, receiver):
                await stop.wait()
        finally:
            await runner.cleanup()  # drains the handlers, closes the inbox
    note("listener stopped")
    return 0
