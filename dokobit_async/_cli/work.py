"""``dokobit-async work``: run handlers for a Redis inbox, with no HTTP server.

A worker of the pipeline (:class:`~dokobit_async.redis.RedisWorker`): any number of
them, on any host, share the events that ``listen --no-dispatch`` replicas store in
one Redis inbox; the events of one signing run in order, one at a time, across all
of them. SIGINT or SIGTERM: it takes no more events, lets the running ones finish
(within ``--shutdown-timeout``) and leaves the rest to the other workers; a worker
that dies instead has its events reclaimed after ``--lease``.

With the access token (``DOKOBIT_ACCESS_TOKEN`` or ``--token``; the API at
``DOKOBIT_BASE_URL`` or ``--base-url``), each event is confirmed against the API
before its handlers run, as ``listen`` does (``--no-confirm`` turns it off); without
one it says once that events run unconfirmed. The token is masked in every log line
and stored error.

Redis unreachable at start (a wrong URL, a refused connection, a wrong password) is
one error line and exit 1: nothing was taken, and an operator or a supervisor sees at
once what is wrong; so is the Redis of ``--rate-limit`` (``$DOKOBIT_RATE_LIMIT``),
through which the confirmations count in the token's rate limit that the
application's processes share (without it, the worker's limit is its own). Once
running, Redis going away is ridden out: the worker retries with a growing delay
and loses nothing (:class:`~dokobit_async.redis.RedisWorker`). The URL's password
is never shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ..client import DokobitClient
from ..exceptions import InboxError
from ..receiver import DispatchPolicy
from .access import in_use
from .arguments import Command, positive_seconds
from .inboxes import inbox_location, redis_extra
from .listen import add_dispatch_options, load_router, note
from .output import CliError
from .secrets_source import known_secrets
from .signals import stop_on_signals

__all__ = ["add_parser", "work"]

_POLICY = DispatchPolicy()  # its defaults, shown in --help


def add_parser(command: Command) -> None:
    """Add ``work`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("work", "run handlers for a Redis inbox (no HTTP server)")
    p.add_argument(
        "--inbox",
        required=True,
        metavar="URL",
        help="the Redis inbox the listeners store into: redis://HOST[:PORT][/DB]",
    )
    p.add_argument(
        "--router",
        required=True,
        metavar="MODULE:ATTR",
        help="the Router with your handlers, e.g. mypkg.handlers:router",
    )
    add_dispatch_options(p, "events handled at a time by this worker, across signings")
    p.add_argument(
        "--shutdown-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=_POLICY.shutdown_timeout,
        help="time running handlers get to finish on SIGTERM (default: %(default)g)",
    )
    p.add_argument(
        "--lease",
        type=positive_seconds,
        metavar="SECONDS",
        default=30.0,
        help="how long an event a dead worker held waits before another worker takes it "
        "(default: %(default)g)",
    )
    p.add_argument("--name", help="this worker's name in the group (default: host-pid)")


async def work(args: argparse.Namespace, client: DokobitClient | None) -> int:
    """Run a worker until SIGINT or SIGTERM; 0 once the running handlers finished.
    ``client`` (when there is a token) confirms the events and names the token to
    mask."""
    where = inbox_location(args.inbox)
    if where.kind != "redis":
        raise CliError("--inbox: work needs a Redis inbox (redis://...)", code=2)
    router = load_router(args.router)
    redis = redis_extra(where.shown)
    policy = DispatchPolicy(
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        shutdown_timeout=args.shutdown_timeout,
    )
    worker = redis.RedisWorker(
        where.target,
        router,
        policy=policy,
        name=args.name,
        client=client,
        confirm=args.confirm,
        lease=args.lease,
        secrets=tuple(known_secrets(where)),  # masked in stored errors and log lines
    )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        async with contextlib.AsyncExitStack() as stack:
            if client is not None and args.confirm:
                await stack.enter_async_context(in_use(client))
            try:
                await stack.enter_async_context(worker)
            except InboxError as exc:  # its message shows the URL without the password
                raise CliError(f"cannot start the worker: {exc}") from None
            if args.confirm and client is None:
                note(
                    "no access token: events reach the handlers unconfirmed (--no-confirm "
                    "silences this)"
                )
            running = asyncio.create_task(worker.run(), name="dokobit-worker")
            note(f"worker {worker.name} on {where.shown}; press Ctrl-C to stop")
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                await worker.stop()
                note(
                    f"worker {worker.name} stopping: the running handlers finish, the other "
                    "events are left to the other workers"
                )
                with contextlib.suppress(asyncio.CancelledError):
                    await running
    note(f"worker {worker.name} stopped")
    return 0
