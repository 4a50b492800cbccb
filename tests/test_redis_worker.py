"""Workers on a Redis inbox, on a real server: several workers share the events, each
handled once per success, in order per signing across all of them; failures retried
with backoff then dead-lettered; a dead worker's event reclaimed after the lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _processes import kill_and_reap
from _receiver_helpers import wait_until
from _redis import RedisServer, start_persistent

from dokobit_async import DispatchPolicy, Router
from dokobit_async.events import Event
from dokobit_async.redis import RedisInbox, RedisWorker

REPO = Path(__file__).resolve().parent.parent
FAST = DispatchPolicy(concurrency=4, max_attempts=3, base_delay=0.01, max_delay=0.05)


async def add(inbox: RedisInbox, id: str, signing: str, n: int = 0) -> None:
    """Add a postback of ``signing`` with the given id (``n`` in its body)."""
    body = json.dumps({"action": "signer_signed", "token": signing, "n": n}).encode()
    stored = await inbox.add(
        id=id,
        signing_token=signing,
        action="signer_signed",
        body=body,
        content_type="application/json",
        received_at=1000.0 + n,
    )
    assert stored is not None


@asynccontextmanager
async def workers(
    redis_url: str, router: Router, count: int, **options: object
) -> AsyncIterator[list[RedisWorker]]:
    """``count`` workers running (reads blocking 0.2 s, so that they stop and see
    retries soon); stopped (and their runs awaited) on exit."""
    options.setdefault("block", 0.2)
    async with AsyncExitStack() as stack:
        made = [
            await stack.enter_async_context(
                RedisWorker(redis_url, router, name=f"w{n}", **options)  # type: ignore[arg-type]
            )
            for n in range(count)
        ]
        runs = [asyncio.ensure_future(worker.run()) for worker in made]
        try:
            yield made
        finally:
            for worker in made:
                await worker.stop()
            await asyncio.wait_for(asyncio.gather(*runs), timeout=30)


async def finished(inbox: RedisInbox, total: int) -> bool:
    counts = await inbox.counts()
    return counts["done"] + counts["dead"] == total


async def test_three_workers_run_each_event_once_in_order_per_signing(redis_url: str) -> None:
    """Three workers (four events at a time each) share 90 events of six signings,
    some added before and some while they run: every event is handled exactly once,
    the events of each signing in the order they were added and never two at once,
    and the signings run concurrently."""
    router = Router()
    seen: dict[str, list[int]] = defaultdict(list)
    running: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    most_at_once = 0

    @router.on_any
    async def record(event: Event) -> None:
        nonlocal most_at_once
        signing = event.token or ""
        running[signing] += 1
        if running[signing] > 1:
            overlaps.append(signing)
        most_at_once = max(most_at_once, sum(running.values()))
        await asyncio.sleep(0.002)  # (lets the other events interleave)
        seen[signing].append(int(event.raw["n"]))
        running[signing] -= 1

    async with RedisInbox(redis_url) as inbox:
        for n in range(45):
            await add(inbox, f"e{n}", f"sig-{n % 6}", n)
        async with workers(redis_url, router, 3, policy=FAST):
            for n in range(45, 90):
                await add(inbox, f"e{n}", f"sig-{n % 6}", n)
            await wait_until(lambda: finished(inbox, 90), timeout=30)
        assert (await inbox.counts())["done"] == 90
    assert overlaps == []
    for s in range(6):
        assert seen[f"sig-{s}"] == list(range(s, 90, 6))
    assert most_at_once > 1


async def test_failures_are_retried_then_dead_lettered_and_successes_not_rerun(
    redis_url: str,
) -> None:
    """A handler failing twice then succeeding gets three calls, while its neighbour
    that succeeded at once gets one; an event that keeps failing is dead after
    max_attempts with its last error; the next event of that signing waits until
    then, and runs after it."""
    router = Router()
    calls: dict[tuple[str, int], int] = defaultdict(int)
    order: list[int] = []  # attempts of "never" when "after-dead" ran

    @router.on("signer_signed", name="steady")
    async def steady(event: Event) -> None:
        calls["steady", int(event.raw["n"])] += 1
        if event.raw["n"] == 2:  # the next event of sig-b: only once "never" is dead
            order.append(calls["flaky", 1])

    @router.on("signer_signed", name="flaky")
    async def flaky(event: Event) -> None:
        n = int(event.raw["n"])
        calls["flaky", n] += 1
        if n == 1 or (n == 0 and calls["flaky", 0] < 3):
            raise RuntimeError(f"flaky failed on {n}")

    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "ok-after-two", "sig-a", 0)
        await add(inbox, "never", "sig-b", 1)
        await add(inbox, "after-dead", "sig-b", 2)
        async with workers(redis_url, router, 2, policy=FAST):
            await wait_until(lambda: finished(inbox, 3), timeout=30)
        retried, dead, last = [await inbox.get(i) for i in ("ok-after-two", "never", "after-dead")]
    assert retried is not None
    assert dead is not None
    assert last is not None
    assert (retried.state, retried.attempts, retried.handlers_done) == (
        "done",
        2,
        frozenset({"steady", "flaky"}),
    )
    assert (calls["steady", 0], calls["flaky", 0]) == (1, 3)
    assert (dead.state, dead.attempts, dead.handlers_done) == ("dead", 3, frozenset({"steady"}))
    assert dead.last_error is not None
    assert "flaky failed on 1" in dead.last_error
    assert (calls["steady", 1], calls["flaky", 1]) == (1, 3)
    assert last.state == "done"
    assert order == [3]


async def test_a_head_in_backoff_holds_its_signing_until_the_cli_sets_it_aside(
    redis_url: str,
) -> None:
    """The first event of a signing waits for a retry an hour away: the workers run
    the other signings' events but not the next one of its signing; when the CLI
    dead-letters the first (another inbox object, as `inbox` commands are), the turn
    passes to the next one, which then runs (and saw the first one dead)."""
    router = Router()
    seen: list[tuple[str, str]] = []

    async with RedisInbox(redis_url) as inbox, RedisInbox(redis_url) as cli:

        @router.on_any
        async def note(event: Event) -> None:
            head = await inbox.get("head")
            assert head is not None
            seen.append((str(event.raw["n"]), head.state))

        await add(inbox, "head", "sig-h", 0)
        await add(inbox, "next", "sig-h", 1)
        await add(inbox, "other", "sig-o", 2)
        await inbox.record_failure("head", error="down", next_attempt_at=time.time() + 3600)
        async with workers(redis_url, router, 2, policy=FAST):
            await wait_until(lambda: _state_is(inbox, "other", "done"))
            await cli.set_state("head", "dead", error="given up by hand")
            await wait_until(lambda: _state_is(inbox, "next", "done"))
    assert seen == [("2", "pending"), ("1", "dead")]


async def test_purging_a_waiting_head_hands_its_signing_on(redis_url: str) -> None:
    """`inbox purge --state pending` of a signing's first event (waiting for a retry)
    lets the next event of the signing run."""
    router = Router()
    ran: list[int] = []

    @router.on_any
    async def note(event: Event) -> None:
        ran.append(int(event.raw["n"]))

    async with RedisInbox(redis_url) as inbox, RedisInbox(redis_url) as cli:
        await add(inbox, "head", "sig-p", 0)
        await add(inbox, "next", "sig-p", 1)
        await inbox.record_failure("head", error="down", next_attempt_at=time.time() + 3600)
        async with workers(redis_url, router, 1, policy=FAST):
            assert await cli.purge(state="pending", older_than=1000.5) == 1
            await wait_until(lambda: _state_is(inbox, "next", "done"))
    assert ran == [1]


async def _state_is(inbox: RedisInbox, id: str, state: str) -> bool:
    event = await inbox.get(id)
    return event is not None and event.state == state


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from dokobit_async import Router
    from dokobit_async.redis import RedisWorker

    router = Router()

    @router.on("signer_signed", name="slow")
    async def slow(event):
        print("started", event.raw["n"], flush=True)
        await asyncio.Event().wait()  # never finishes: killed here

    async def main():
        async with RedisWorker(sys.argv[1], router, name="doomed", lease=0.5) as worker:
            await worker.run()

    asyncio.run(main())
    """
)


async def test_a_killed_workers_event_is_reclaimed_after_the_lease(redis_url: str) -> None:
    """A worker process is killed (SIGKILL) in the middle of a handler: after the lease
    another worker claims the event, runs it, and the signing goes on in order; the
    next event of the signing never ran while the first was held."""
    router = Router()
    ran: list[int] = []

    @router.on("signer_signed", name="slow")
    async def slow(event: Event) -> None:
        ran.append(int(event.raw["n"]))

    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "first", "sig-k", 0)
        await add(inbox, "second", "sig-k", 1)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, redis_url, cwd=REPO, stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        try:
            line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
            assert line.split() == [b"started", b"0"]
            os.kill(child.pid, signal.SIGKILL)
        finally:
            returncode = await kill_and_reap(child)
        assert returncode == -signal.SIGKILL
        async with workers(redis_url, router, 1, policy=FAST, lease=0.5):
            await wait_until(lambda: finished(inbox, 2), timeout=30)
        first = await inbox.get("first")
    assert ran == [0, 1]
    assert first is not None
    assert (first.state, first.attempts) == ("done", 0)


async def test_a_live_worker_keeps_its_event_past_the_lease(
    redis_url: str, redis_server: RedisServer
) -> None:
    """A handler that runs for many leases is not taken over while its worker lives:
    the worker refreshes its entry, so through 30 reclaim rounds (XAUTOCLAIM) of two
    workers the entry stays with it, delivered once, and the handler runs once."""
    router = Router()
    calls: list[str] = []
    release = asyncio.Event()

    @router.on_any
    async def long(event: Event) -> None:
        calls.append(event.action)
        await release.wait()

    def reclaims() -> int:
        info = redis_server.command("INFO", "commandstats").decode()
        found = [line for line in info.splitlines() if line.startswith("cmdstat_xautoclaim:")]
        return int(found[0].split("calls=")[1].split(",")[0]) if found else 0

    async def rounds_after(start: int) -> bool:
        return reclaims() >= start + 30

    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "long", "sig-l")
        async with workers(redis_url, router, 2, policy=FAST, lease=0.3, block=0.05):
            await wait_until(lambda: _true(bool(calls)))
            start = reclaims()
            await wait_until(lambda: rounds_after(start))  # > 5 leases of rounds
            entries = await inbox_pending_entries(redis_url, inbox.prefix)
            release.set()
            await wait_until(lambda: _state_is(inbox, "long", "done"))
    assert calls == ["signer_signed"]
    assert [times for _, times in entries] == [1]


async def _true(value: bool) -> bool:
    return value


async def inbox_pending_entries(redis_url: str, prefix: str) -> list[tuple[str, int]]:
    """The workers' group's pending entries: (consumer, times delivered) each."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        found: Any = await client.xpending_range(prefix + "stream", "workers", "-", "+", 10)
    finally:
        await client.aclose()
    return [(entry["consumer"].decode(), int(entry["times_delivered"])) for entry in found]


async def test_stop_with_a_hung_handler_returns_after_the_shutdown_timeout(
    redis_url: str,
) -> None:
    """A full worker (concurrency 1) whose handler hangs still stops: run() returns
    once the policy's shutdown_timeout is over and the handler, cancelled, has
    unwound (its cleanup awaited before the worker's clients close); the event stays
    pending with nothing recorded, for another worker after the lease."""
    router = Router()
    started = asyncio.Event()
    unwound: list[str] = []

    @router.on_any
    async def hang(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            for _ in range(3):  # cleanup that itself awaits
                await asyncio.sleep(0)
            unwound.append(event.action)

    policy = DispatchPolicy(concurrency=1, shutdown_timeout=0.2)
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "hung", "sig-x")
        async with RedisWorker(redis_url, router, policy=policy, block=0.05) as worker:
            run = asyncio.ensure_future(worker.run())
            await asyncio.wait_for(started.wait(), timeout=10)
            await worker.stop()
            await asyncio.wait_for(run, timeout=10)
            assert unwound == ["signer_signed"]
        event = await inbox.get("hung")
    assert event is not None
    assert (event.state, event.attempts) == ("pending", 0)


async def test_workers_ride_out_a_redis_restart_and_lose_nothing(tmp_path: Path) -> None:
    """Redis (appendonly yes, appendfsync always) is killed with SIGKILL while two
    workers run 60 events, then started again on the same port and files: the workers
    reconnect on their own, and every event ends done, the events of each signing
    having run in order (an event whose outcome was lost with the server runs again,
    before any later event of its signing)."""
    router = Router()
    seen: dict[str, list[int]] = defaultdict(list)
    half = asyncio.Event()

    @router.on_any
    async def note(event: Event) -> None:
        seen[event.token or ""].append(int(event.raw["n"]))
        if sum(map(len, seen.values())) >= 20:
            half.set()
        await asyncio.sleep(0.01)

    server = start_persistent(tmp_path)
    try:
        url = server.url
        async with RedisInbox(url) as inbox:
            for n in range(60):
                await add(inbox, f"e{n}", f"sig-{n % 4}", n)
        async with workers(url, router, 2, policy=FAST, lease=0.5, block=0.05, timeout=1.0):
            await asyncio.wait_for(half.wait(), timeout=30)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(10)
            server = start_persistent(tmp_path, server.port)
            async with RedisInbox(url) as inbox:
                await wait_until(lambda: finished(inbox, 60), timeout=60)
                assert (await inbox.counts())["done"] == 60
    finally:
        server.stop()
    for s in range(4):
        ran = seen[f"sig-{s}"]
        assert ran == sorted(ran)
        assert set(ran) == set(range(s, 60, 4))


@pytest.mark.parametrize("bad", [{"name": "two words"}, {"block": 10.0}, {"lease": 0}])
def test_bad_worker_arguments_are_refused(bad: dict[str, object]) -> None:
    """A name with a space (it is parsed out of the turn), a read block not under the
    timeout, or no lease is refused."""
    from dokobit_async.exceptions import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        RedisWorker("redis://127.0.0.1:1/0", Router(), **bad)  # type: ignore[arg-type]
