"""``dokobit-async reconcile``: store the postbacks that never arrived.

Runs a :class:`~dokobit_async.reconcile.Reconciler` over the tracked signings in
``--tracker`` (default: the inbox's own file or Redis, where the application's
``DokobitClient(..., tracker=...)`` tracks them), storing what it finds into
``--inbox``, where the listeners' dispatchers (or the Redis workers) find it on their
next sweep (``docs/architecture.md#reconciliation``). ``--once`` looks at the signings
due now and exits; without it, it runs until SIGINT or SIGTERM. Its status calls take
at most ``--share`` of the token's rate limit: of this process's own, or, with
``--rate-limit redis://...`` (``$DOKOBIT_RATE_LIMIT``), of the limit that the
application's processes share, the share itself then shared by every reconciler of the
token (``Reconciler`` derives it from the client's limit). The token is masked in
every line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..client import DokobitClient
from ..inbox import Inbox
from ..receiver import PostbackReceiver
from ..reconcile import Reconciler, SQLiteTracker, Tracker
from .access import in_use, limit_shown
from .arguments import Command, positive_seconds
from .inboxes import inbox_location, opened, redis_extra
from .output import CliError, out
from .signals import stop_on_signals

__all__ = ["add_parser", "add_reconcile_options", "reconcile", "reconciling", "tracker_at"]


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1")
    return value


def add_reconcile_options(p: argparse.ArgumentParser) -> None:
    """``--tracker``, ``--share`` and ``--idle``: ``reconcile``'s and ``listen``'s (with
    ``--reconcile``)."""
    p.add_argument(
        "--tracker",
        metavar="PATH|URL",
        help="where the tracked signings are: a SQLite file or redis://... "
        "(default: the inbox's file or Redis)",
    )
    p.add_argument(
        "--share",
        type=_share,
        default=0.2,
        help="the part of the token's rate limit that polling may take (default: "
        "%(default)g); of the limit --rate-limit shares, if given",
    )
    p.add_argument(
        "--idle",
        type=positive_seconds,
        metavar="SECONDS",
        default=5.0,
        help="wait between looks when nothing is due (default: %(default)g)",
    )


def add_parser(command: Command) -> None:
    """Add ``reconcile`` through ``cli.build_parser``'s ``command`` helper."""
    p = command("reconcile", "poll tracked signings and store the postbacks that never came")
    p.add_argument(
        "--inbox",
        required=True,
        metavar="PATH|URL",
        help="the inbox the listeners or workers dispatch from (a SQLite file or redis://...)",
    )
    add_reconcile_options(p)
    p.add_argument("--once", action="store_true", help="look at the signings due now, then exit")


def tracker_at(text: str) -> Tracker:
    """The tracker at a path or a Redis URL (a usage error when it is neither)."""
    where = inbox_location(text)
    if where.kind == "sqlite":
        return SQLiteTracker(where.path)
    tracker: Tracker = redis_extra(where.shown).RedisTracker(where.target)
    return tracker


@contextlib.asynccontextmanager
async def reconciling(
    args: argparse.Namespace, client: DokobitClient | None, sink: PostbackReceiver | Inbox
) -> AsyncIterator[None]:
    """A reconciler running into ``sink`` while the block runs, when ``args.reconcile``
    (``listen --reconcile``, and ``reconcile`` without ``--once``)."""
    if not args.reconcile:
        yield
        return
    if client is None:
        raise CliError("--reconcile needs the access token (it asks the status)", code=2)
    tracker = tracker_at(args.tracker or args.inbox)
    reconciler = Reconciler(client, sink, tracker, share=args.share, idle=args.idle)
    running = asyncio.create_task(reconciler.run(), name="dokobit-reconciler")
    _say_budget(reconciler)
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await reconciler.aclose()


def _say_budget(reconciler: Reconciler) -> None:
    budget = limit_shown(reconciler.budget)
    out(f"reconciling with at most {reconciler.share:g} of the rate limit ({budget})")


async def reconcile(args: argparse.Namespace, client: DokobitClient) -> int:
    """Look once (``--once``) or until SIGINT/SIGTERM; 0 when done."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(in_use(client))
        try:
            inbox = await stack.enter_async_context(opened(inbox_location(args.inbox)))
        except Exception as exc:
            raise CliError(f"cannot open the inbox: {exc}") from None
        if not args.once:
            stop = asyncio.Event()
            args.reconcile = True
            with stop_on_signals(stop):
                async with reconciling(args, client, inbox):
                    await stop.wait()
            out("reconciler stopped")
            return 0
        tracker = tracker_at(args.tracker or args.inbox)
        reconciler = Reconciler(client, inbox, tracker, share=args.share)
        stack.push_async_callback(reconciler.aclose)
        _say_budget(reconciler)
        looked = 0
        while (done := await reconciler.poll_due()) > 0:  # every batch due now
            looked += done
            if done < reconciler.batch:
                break
        out(f"looked at {looked} tracked signing(s)")
    return 0
