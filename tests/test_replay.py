"""Replay over real I/O: an event already done goes back to its handlers (all, or one
named) with ``event.replay`` set, through a receiver on loopback with an SQLite file
(replayed from another connection, as the CLI does) and through ``RedisWorker`` on a
real Redis server. The inbox's own contract for ``replay()`` is in test_inbox.py."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from _otel import recording
from _receiver_helpers import start_receiver, wait_until
from test_inbox_traceparent import schema_of
from test_redis_worker import add

from dokobit_async import DispatchPolicy, Router
from dokobit_async._inbox_sqlite_store import _MIGRATIONS, SCHEMA_VERSION
from dokobit_async.events import Event
from dokobit_async.inbox import Inbox, SQLiteInbox
from dokobit_async.redis import RedisInbox, RedisWorker

FAST = DispatchPolicy(concurrency=2, max_attempts=3, base_delay=0.01, max_delay=0.05)


class Seen:
    """Two named handlers that record each event they get, and a confirmation that
    counts how often it is asked."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Event]] = defaultdict(list)
        self.confirmations = 0
        self.router = Router()
        self.router.add(None, self.email, name="email")
        self.router.add(None, self.audit, name="audit")

    async def email(self, event: Event) -> None:
        self.runs["email"].append(event)

    async def audit(self, event: Event) -> None:
        self.runs["audit"].append(event)

    async def late(self, event: Event) -> None:
        """A handler registered after the first delivery (to be added by the test)."""
        self.runs["late"].append(event)

    async def confirm(self, event: Event) -> bool:
        self.confirmations += 1
        return True

    def replays(self, name: str) -> list[int]:
        """The ``replay`` of each event ``name`` got, in order."""
        return [event.replay for event in self.runs[name]]


async def done_again(inbox: Inbox, id: str, replays: int) -> bool:
    """Whether the event is done after its ``replays``-th replay."""
    event = await inbox.get(id)
    return event is not None and event.state == "done" and event.replays == replays


@asynccontextmanager
async def receiving(seen: Seen, path: Path) -> AsyncIterator[tuple[SQLiteInbox, str]]:
    """A receiver on 127.0.0.1 storing into the SQLite file ``path`` (confirming with
    ``seen.confirm``), and one postback of signing ``sig-1`` handled by both handlers:
    the inbox of another connection to the file (as the CLI opens it) and the event's
    id."""
    _, runner, url = await start_receiver(
        seen.router, inbox=SQLiteInbox(path), confirm=seen.confirm, policy=FAST
    )
    try:
        body = json.dumps({"action": "signer_signed", "token": "sig-1", "signer": "s1"})
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers={"Content-Type": "application/json"}) as r,
        ):
            assert r.status == 200
        async with SQLiteInbox(path) as other:
            await wait_until(lambda: _all_done(other))
            (stored,) = await other.list()
            yield other, stored.id
    finally:
        await runner.cleanup()


async def _all_done(inbox: Inbox) -> bool:
    counts = await inbox.counts()
    return counts["done"] == sum(counts.values()) > 0


async def test_a_replayed_event_reaches_every_handler_again_through_the_receiver(
    tmp_path: Path,
) -> None:
    """replay() from another connection to the listener's SQLite file sends a done
    event back to every handler, with event.replay == 1 (0 on the first delivery),
    equal to its first delivery otherwise; it is not confirmed again; it ends done,
    with replays == 1 and both handlers recorded. A second replay counts 2."""
    seen = Seen()
    async with receiving(seen, tmp_path / "pb.db") as (inbox, id):
        assert seen.replays("email") == seen.replays("audit") == [0]
        assert seen.confirmations == 1
        assert await inbox.replay([id]) == 1
        await wait_until(lambda: done_again(inbox, id, 1))
        assert seen.replays("email") == seen.replays("audit") == [0, 1]
        first, again = seen.runs["email"]
        assert again == first
        assert again.replay == 1
        assert seen.confirmations == 1  # a replay is not confirmed again
        event = await inbox.get(id)
        assert event is not None
        assert (event.handlers_done, event.replay_handler) == (frozenset({"email", "audit"}), None)
        assert await inbox.replay(received_after=0) == 1
        await wait_until(lambda: done_again(inbox, id, 2))
        assert seen.replays("email") == seen.replays("audit") == [0, 1, 2]


async def test_a_replay_for_one_handler_runs_only_that_one_through_the_receiver(
    tmp_path: Path,
) -> None:
    """replay(handler="email") runs email again and nothing else: not audit (done),
    nor a handler registered since the first delivery (never done); once the event is
    done again, audit has still run once and the new one never. A later replay for
    every handler runs the new one too."""
    seen = Seen()
    async with receiving(seen, tmp_path / "pb.db") as (inbox, id):
        seen.router.add(None, seen.late, name="late")
        assert await inbox.replay([id], handler="email") == 1
        await wait_until(lambda: done_again(inbox, id, 1))
        assert seen.replays("email") == [0, 1]
        assert seen.replays("audit") == [0]
        assert seen.replays("late") == []
        event = await inbox.get(id)
        assert event is not None
        assert (event.handlers_done, event.replay_handler) == (
            frozenset({"email", "audit"}),
            "email",
        )
        assert await inbox.replay([id]) == 1
        await wait_until(lambda: done_again(inbox, id, 2))
        assert (seen.replays("email"), seen.replays("late")) == ([0, 1, 2], [2])


async def test_a_replay_for_a_handler_that_does_not_handle_it_runs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replay named for a handler that does not handle the event (a typo) runs no
    handler, says so in one warning, and the event is done again."""
    seen = Seen()
    async with receiving(seen, tmp_path / "pb.db") as (inbox, id):
        with caplog.at_level(logging.WARNING, logger="dokobit_async.receiver"):
            assert await inbox.replay([id], handler="emial") == 1
            await wait_until(lambda: done_again(inbox, id, 1))
    assert seen.replays("email") == seen.replays("audit") == [0]
    warned = [r.getMessage() for r in caplog.records if "replayed for handler" in r.getMessage()]
    assert warned == [
        "postback signer_signed replayed for handler emial, which does not handle it: nothing runs"
    ]


async def test_a_consumer_added_since_gets_a_replay_for_every_handler_only(
    tmp_path: Path,
) -> None:
    """A pipeline consumer (``receiver.deliveries``) counts as a handler. Declared
    after the first delivery (a listener restarted with it), it is not fed a replay
    for one named handler, though the event never went to it; a replay for every
    handler feeds it (with event.replay set)."""
    seen, fed = Seen(), []
    path = tmp_path / "pb.db"
    async with receiving(seen, path) as (_, id):
        pass
    receiver, runner, _ = await start_receiver(
        seen.router, inbox=SQLiteInbox(path), confirm=False, policy=FAST, consumers=("feed",)
    )

    async def consume() -> None:
        async for delivery in receiver.deliveries("feed"):
            fed.append(delivery.event.replay)
            await delivery.ack()

    consumer = asyncio.ensure_future(consume())
    try:
        async with SQLiteInbox(path) as inbox:
            assert await inbox.replay([id], handler="email") == 1
            await wait_until(lambda: done_again(inbox, id, 1))
            assert (fed, seen.replays("email"), seen.replays("audit")) == ([], [0, 1], [0])
            assert await inbox.replay([id]) == 1
            await wait_until(lambda: done_again(inbox, id, 2))
            assert (fed, seen.replays("email"), seen.replays("audit")) == ([2], [0, 1, 2], [0, 2])
            event = await inbox.get(id)
            assert event is not None
            assert event.handlers_done == {"email", "audit", "consumer:feed"}
    finally:
        await runner.cleanup()
        await asyncio.wait_for(consumer, timeout=30)


async def test_a_replay_of_an_event_not_done_changes_nothing(tmp_path: Path) -> None:
    """An event that is dead (its handler failed every attempt) is not replayed: 0,
    and it stays dead with its attempts; its handler is not run again."""
    calls = 0

    async def failing(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    router = Router()
    router.add(None, failing, name="failing")
    path = tmp_path / "pb.db"
    _, runner, url = await start_receiver(
        router, inbox=SQLiteInbox(path), confirm=False, policy=FAST
    )
    try:
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"action": "signer_signed", "token": "sig-1"})
            async with session.post(url, data=body) as response:
                assert response.status == 200
        async with SQLiteInbox(path) as inbox:

            async def dead() -> bool:
                return (await inbox.counts())["dead"] == 1

            await wait_until(dead)
            (event,) = await inbox.list()
            assert await inbox.replay([event.id]) == 0
            assert await inbox.replay(received_after=0) == 0
            assert await inbox.get(event.id) == event
            assert calls == FAST.max_attempts
    finally:
        await runner.cleanup()


@asynccontextmanager
async def working(redis_url: str, seen: Seen) -> AsyncIterator[tuple[RedisInbox, str]]:
    """A RedisWorker on a real server (confirming with ``seen.confirm``) and one event
    of signing ``sig-1`` that both handlers handled: the inbox and the event's id."""
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "e1", "sig-1", 1)
        async with RedisWorker(
            redis_url, seen.router, name="w1", policy=FAST, confirm=seen.confirm, block=0.2
        ) as worker:
            run = asyncio.ensure_future(worker.run())
            try:
                await wait_until(lambda: done_again(inbox, "e1", 0))
                yield inbox, "e1"
            finally:
                await worker.stop()
                await asyncio.wait_for(run, timeout=30)


async def test_a_replayed_event_runs_again_on_a_redis_worker(redis_url: str) -> None:
    """On Redis, a replay puts the done event back in its signing's queue and the
    stream: the worker runs both handlers again with event.replay == 1, without asking
    the confirmation again; then a replay for one handler runs only it (replay 2), not
    a handler registered since."""
    seen = Seen()
    async with working(redis_url, seen) as (inbox, id):
        assert seen.confirmations == 1
        assert await inbox.replay([id]) == 1
        await wait_until(lambda: done_again(inbox, id, 1))
        assert seen.replays("email") == seen.replays("audit") == [0, 1]
        assert seen.confirmations == 1
        seen.router.add(None, seen.late, name="late")  # (never done: skipped all the same)
        assert await inbox.replay(action="signer_signed", handler="audit") == 1
        await wait_until(lambda: done_again(inbox, id, 2))
        assert seen.replays("email") == [0, 1]
        assert seen.replays("audit") == [0, 1, 2]
        assert seen.replays("late") == []
        event = await inbox.get(id)
        assert event is not None
        assert (event.handlers_done, event.replay_handler) == (
            frozenset({"email", "audit"}),
            "audit",
        )


async def test_a_replay_on_redis_is_not_confirmed_even_without_the_workers_mark(
    redis_url: str,
) -> None:
    """An event done by another process (a dispatching receiver on the same Redis: no
    worker's confirmed mark) and replayed to every handler runs on a worker without
    asking the API: it was confirmed where it first ran."""
    seen = Seen()
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "e1", "sig-1", 1)
        await inbox.record_attempt("e1", handlers_done=["email", "audit"], state="done")
        assert await inbox.replay(["e1"]) == 1
        async with RedisWorker(
            redis_url, seen.router, name="w1", policy=FAST, confirm=seen.confirm, block=0.2
        ) as worker:
            run = asyncio.ensure_future(worker.run())
            try:
                await wait_until(lambda: done_again(inbox, "e1", 1))
            finally:
                await worker.stop()
                await asyncio.wait_for(run, timeout=30)
    assert seen.replays("email") == seen.replays("audit") == [1]
    assert seen.confirmations == 0


async def test_a_replay_beside_a_new_event_of_its_signing_runs_each_once_on_redis(
    redis_url: str,
) -> None:
    """replay([e1, e2]) while e2 (a later event of the same signing) is new moves e1
    only; in the end e1 ran twice (replay 0 then 1) and e2 once (replay 0)."""
    seen = Seen()
    async with working(redis_url, seen) as (inbox, id):
        await add(inbox, "e2", "sig-1", 2)
        moved = await inbox.replay([id, "e2"])
        await wait_until(lambda: done_again(inbox, id, moved))
        await wait_until(lambda: _all_done(inbox))
        if not moved:  # e2 ran first and e1 was not done: replay it now
            assert await inbox.replay([id]) == 1
            await wait_until(lambda: done_again(inbox, id, 1))
        runs = sorted((e.raw["n"], e.replay) for e in seen.runs["email"])
        assert runs == [(1, 0), (1, 1), (2, 0)]
        assert seen.runs["audit"] == seen.runs["email"]


async def test_a_replayed_handler_run_is_traced_with_its_replay_count(tmp_path: Path) -> None:
    """Instrumented, each handler run of a replay carries ``dokobit.replay`` (the
    count); a first delivery's runs carry none."""
    seen = Seen()
    with recording() as recorded:
        async with receiving(seen, tmp_path / "pb.db") as (inbox, id):
            assert await inbox.replay([id]) == 1
            await wait_until(lambda: done_again(inbox, id, 1))
    for name in ("email", "audit"):
        runs = recorded.named(f"dokobit handle {name}")
        assert [(run.attributes or {}).get("dokobit.replay") for run in runs] == [None, 1]


def older_file(path: Path, version: int) -> Path:
    """An SQLite file as schema ``version`` (1 or 2) wrote it (WAL), with one done
    event ``old`` of signing ``sig-1`` that handler ``email`` handled."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in (s for step in _MIGRATIONS[:version] for s in step):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(
            "INSERT INTO events (id, signing_token, action, body, content_type, received_at,"
            " state, handlers_done) VALUES ('old', 'sig-1', 'signer_signed',"
            " x'7b7d', 'application/json', 10.0, 'done', '[\"email\"]')"
        )
    finally:
        conn.close()
    return path


async def test_a_file_of_schema_2_gains_the_replay_columns_and_can_replay(
    tmp_path: Path,
) -> None:
    """An SQLite file written by schema version 2 (no replay columns) is upgraded on
    open to version 3: its rows read back never replayed, and a done one replays."""
    path = older_file(tmp_path / "v2.db", 2)
    async with SQLiteInbox(path) as inbox:
        (old,) = await inbox.list()
        assert (old.id, old.state, old.handlers_done) == ("old", "done", frozenset({"email"}))
        assert (old.replays, old.replay_handler) == (0, None)
        assert await inbox.replay(["old"], handler="email") == 1
        again = await inbox.get("old")
        assert again is not None
        assert (again.state, again.replays, again.replay_handler) == ("pending", 1, "email")
    assert schema_of(path)[0] == SCHEMA_VERSION == 3


class HeldBack:
    """A handler ``email`` that records ``(n, event.replay, outcome)`` for each run
    (``n`` from the body), and fails event 2 until :attr:`release` is set: a later
    event of the signing kept in backoff for as long as the test needs, with no
    timing involved."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int, str]] = []
        self.release = asyncio.Event()
        self.router = Router()
        self.router.add(None, self.email, name="email")

    async def email(self, event: Event) -> None:
        n = int(event.raw["n"])
        if n == 2 and not self.release.is_set():
            self.runs.append((n, event.replay, "failed"))
            raise RuntimeError("down until released")
        self.runs.append((n, event.replay, "ok"))

    def succeeded(self) -> list[tuple[int, int]]:
        """``(n, replay)`` of the runs that succeeded, in order."""
        return [(n, replay) for n, replay, outcome in self.runs if outcome == "ok"]

    async def failures(self, at_least: int) -> bool:
        return sum(outcome == "failed" for _, _, outcome in self.runs) >= at_least


# Retried every 0.1 s or so for as long as event 2 is held back (bounded by the waits).
HELD = DispatchPolicy(concurrency=2, max_attempts=100_000, base_delay=0.02, max_delay=0.1)


async def test_a_replay_on_redis_runs_ahead_of_a_later_event_of_its_signing_in_backoff(
    redis_url: str,
) -> None:
    """On Redis a replayed event takes its place by seq in its signing's queue
    (docs/architecture.md#replay-and-export): e1 done, e2 (same signing, later)
    failing and waiting in backoff; e1 replayed runs while e2 still fails, ahead of
    it. Had the replay joined the queue behind e2, e1 could not run until e2 is done,
    which it never is before the release."""
    held = HeldBack()
    async with (
        RedisInbox(redis_url) as inbox,
        RedisWorker(redis_url, held.router, name="w1", policy=HELD, block=0.2) as worker,
    ):
        run = asyncio.ensure_future(worker.run())
        try:
            await add(inbox, "e1", "sig-1", 1)
            await wait_until(lambda: done_again(inbox, "e1", 0))
            await add(inbox, "e2", "sig-1", 2)
            await wait_until(lambda: held.failures(1))
            assert await inbox.replay(["e1"]) == 1
            await wait_until(lambda: done_again(inbox, "e1", 1))
            e2 = await inbox.get("e2")
            assert e2 is not None
            assert (e2.state, e2.handlers_done) == ("pending", frozenset())
            assert held.succeeded() == [(1, 0), (1, 1)]
            held.release.set()
            await wait_until(lambda: _all_done(inbox))
        finally:
            await worker.stop()
            await asyncio.wait_for(run, timeout=30)
    assert held.succeeded() == [(1, 0), (1, 1), (2, 0)]
    assert held.runs[1] == (2, 0, "failed")  # e2 failed before e1 was replayed


async def test_a_replay_in_a_listener_queues_behind_its_signings_events_in_memory(
    tmp_path: Path,
) -> None:
    """In a listener a replayed event found by the sweep joins its signing's queue in
    memory behind the events already there (docs/architecture.md#replay-and-export):
    e1 done, e2 (same signing) failing in backoff; e1 replayed from another
    connection waits, in memory, until e2 is done, and runs after it."""
    held = HeldBack()
    path = tmp_path / "pb.db"
    receiver, runner, url = await start_receiver(
        held.router, inbox=SQLiteInbox(path), confirm=False, policy=HELD
    )
    assert receiver._dispatcher is not None
    backlog = receiver._dispatcher.backlog
    try:
        async with aiohttp.ClientSession() as session, SQLiteInbox(path) as other:
            for n in (1, 2):
                body = json.dumps({"action": "signer_signed", "token": "sig-1", "n": n})
                async with session.post(url, data=body) as response:
                    assert response.status == 200
                if n == 1:
                    await wait_until(lambda: _all_done(other))
            await wait_until(lambda: held.failures(1))
            e1, e2 = await other.list()
            assert await other.replay([e1.id]) == 1

            async def in_memory() -> bool:
                return backlog.knows(e1.id)

            await wait_until(in_memory)  # the sweep read it (within IDLE_POLL)
            failed = sum(outcome == "failed" for _, _, outcome in held.runs)
            await wait_until(lambda: held.failures(failed + 2))  # e2 retried meanwhile
            assert held.succeeded() == [(1, 0)]  # e1 waits behind it
            held.release.set()
            await wait_until(lambda: _all_done(other))
            assert await done_again(other, e1.id, 1)
            assert await done_again(other, e2.id, 0)
    finally:
        await runner.cleanup()
    assert held.succeeded() == [(1, 0), (2, 0), (1, 1)]
