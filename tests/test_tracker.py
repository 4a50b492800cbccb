"""The tracker contract, on every tracker: memory, SQLite (a real file), Redis (a
real server) and fakeredis. Times are explicit arguments: nothing sleeps."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import fakeredis
import pytest

from dokobit_async.reconcile import (
    MemoryTracker,
    Schedule,
    SQLiteTracker,
    TrackedSigning,
    Tracker,
)
from dokobit_async.redis import RedisTracker

KINDS = ["memory", "sqlite", "redis", "fakeredis"]
SCHEDULE = Schedule(first=60, factor=2, longest=600, max_age=3600)
T0 = 1_700_000_000.0

Factory = Callable[[], Tracker]


@asynccontextmanager
async def store_of(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Factory]:
    """A factory of trackers that share one store (for memory: one tracker)."""
    if kind == "memory":
        one = MemoryTracker(SCHEDULE)
        yield lambda: one
    elif kind == "sqlite":
        yield lambda: SQLiteTracker(tmp_path / "tracked.db", schedule=SCHEDULE)
    elif kind == "redis":
        url = request.getfixturevalue("redis_url")
        yield lambda: RedisTracker(url, schedule=SCHEDULE)
    else:
        server = fakeredis.FakeServer()
        clients: list[fakeredis.FakeAsyncRedis] = []

        def make() -> Tracker:
            clients.append(fakeredis.FakeAsyncRedis(server=server))
            return RedisTracker(clients[-1], schedule=SCHEDULE)

        try:
            yield make
        finally:
            for client in clients:
                await client.aclose()


@pytest.fixture(params=KINDS)
async def trackers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    async with store_of(request.param, request, tmp_path) as factory:
        yield factory


@asynccontextmanager
async def opened(factory: Factory) -> AsyncIterator[Tracker]:
    tracker = factory()
    await tracker.open()
    try:
        yield tracker
    finally:
        await tracker.close()


async def test_a_tracked_signing_is_due_after_the_first_delay(trackers: Factory) -> None:
    """``track`` records the token, flow and creation, due at ``created + first``;
    tracking it again changes nothing."""
    async with opened(trackers) as tracker:
        await tracker.track("sig-1", "internal", T0)
        await tracker.track("sig-1", "external", T0 + 5)
        assert await tracker.claim(T0 + 59, 10, 30) == []
        (due,) = await tracker.claim(T0 + 60, 10, 30)
    assert due == TrackedSigning(token="sig-1", flow="internal", created_at=T0, next_at=T0 + 60)


async def test_a_claim_holds_a_signing_until_its_lease_ends_or_it_is_updated(
    trackers: Factory,
) -> None:
    """While claimed, a signing is given to nobody else; after its lease it is due
    again; ``update`` lets go of it at once and stores what was seen."""
    async with opened(trackers) as one, opened(trackers) as other:
        await one.track("sig-1", "external", T0)
        now = T0 + 60
        assert [s.token for s in await one.claim(now, 10, 30)] == ["sig-1"]
        assert await other.claim(now + 29, 10, 30) == []
        assert [s.token for s in await other.claim(now + 30, 10, 30)] == ["sig-1"]  # lease ended
        seen = TrackedSigning(
            token="sig-1",
            flow="external",
            created_at=T0,
            next_at=now + 100,
            polls=1,
            status="pending",
            signers={"p1": "signed", "p2": "pending"},
        )
        await other.update(seen)
        assert await one.claim(now + 99, 10, 30) == []
        assert await one.claim(now + 100, 10, 30) == [seen]
        assert await other.get("sig-1") == seen


async def test_claims_take_the_soonest_due_first_and_at_most_the_limit(
    trackers: Factory,
) -> None:
    """Due signings are handed out soonest first, ``limit`` at a time."""
    async with opened(trackers) as tracker:
        for i in range(5):
            await tracker.track(f"sig-{i}", "external", T0 + 10 * (4 - i))
        first = await tracker.claim(T0 + 500, 2, 30)
        second = await tracker.claim(T0 + 500, 10, 30)
    assert [s.token for s in first] == ["sig-4", "sig-3"]
    assert [s.token for s in second] == ["sig-2", "sig-1", "sig-0"]


async def test_a_forgotten_signing_is_gone_and_an_update_does_not_bring_it_back(
    trackers: Factory,
) -> None:
    """``forget`` ends the tracking; a late ``update`` of a claim made before it does
    not revive the signing."""
    async with opened(trackers) as tracker:
        await tracker.track("sig-1", "external", T0)
        (claimed,) = await tracker.claim(T0 + 60, 10, 30)
        await tracker.forget("sig-1")
        await tracker.update(claimed)
        assert await tracker.get("sig-1") is None
        assert await tracker.claim(T0 + 10_000, 10, 30) == []


async def test_records_survive_a_close_and_reopen(
    trackers: Factory, request: pytest.FixtureRequest
) -> None:
    """What was tracked is still there after the tracker is closed and opened again
    (a restart, for the durable kinds)."""
    async with opened(trackers) as tracker:
        await tracker.track("sig-1", "external", T0)
    async with opened(trackers) as tracker:
        assert await tracker.get("sig-1") is not None


async def test_the_oldest_open_signing_tells_when_an_old_secret_is_unused(
    trackers: Factory,
) -> None:
    """``oldest`` is the open signing created first (none when nothing is tracked); once
    it is forgotten (final, gone), the next oldest takes its place."""
    async with opened(trackers) as tracker:
        assert await tracker.oldest() is None
        for i, created in enumerate((T0 + 20, T0, T0 + 10)):
            await tracker.track(f"sig-{i}", "external", created)
        first = await tracker.oldest()
        assert first is not None
        assert (first.token, first.created_at) == ("sig-1", T0)
        await tracker.forget("sig-1")
        after = await tracker.oldest()
        assert after is not None
        assert after.token == "sig-2"


def test_importing_the_package_does_not_import_redis() -> None:
    """The reconciler and its in-process trackers cost no Redis import."""
    code = (
        "import sys, dokobit_async, dokobit_async.reconcile; "
        "assert 'redis' not in sys.modules, 'redis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_schedule_backs_off_to_its_longest_wait() -> None:
    """Each wait doubles (the default factor) from ``first`` until ``longest``."""
    default = Schedule()
    assert (default.first, default.longest, default.max_age) == (600, 6 * 3600, 30 * 86400)
    assert [default.after(n) for n in range(1, 7)] == [1200, 2400, 4800, 9600, 19200, 21600]
    assert Schedule(factor=1e300).after(10) == 6 * 3600
