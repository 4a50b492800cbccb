"""The durable inbox: shared semantics on every implementation (memory, SQLite, Redis
on a real server and on fakeredis), SQLite durability, group commit and multi-process
use on real files. Redis specifics: test_inbox_redis.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from _processes import kill_and_reap

from dokobit_async import _inbox_sqlite
from dokobit_async.exceptions import InvalidArgumentError
from dokobit_async.inbox import (
    EventNotFoundError,
    Inbox,
    InboxClosedError,
    InboxError,
    MemoryInbox,
    SQLiteInbox,
    StoredEvent,
)
from dokobit_async.redis import RedisInbox

REPO = Path(__file__).resolve().parent.parent


async def add(
    inbox: Inbox, id: str, *, signing: str = "sig-1", received_at: float = 1000.0, **more: Any
) -> StoredEvent | None:
    """Add a minimal event with the given id (``more``: other arguments of add(), or
    other values for its fields)."""
    fields: dict[str, Any] = {
        "action": "signer_signed",
        "body": b'{"action": "signer_signed"}',
        "content_type": "application/json",
    }
    return await inbox.add(
        id=id, signing_token=signing, received_at=received_at, **{**fields, **more}
    )


KINDS = ["memory", "sqlite", "redis", "fakeredis"]


@asynccontextmanager
async def made_inbox(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryInbox | SQLiteInbox | RedisInbox]:
    """An inbox of ``kind`` (not opened): SQLite in a real file, Redis on the session's
    real server (emptied for the test), or on fakeredis, whose client is closed after."""
    if kind == "memory":
        yield MemoryInbox()
    elif kind == "sqlite":
        yield SQLiteInbox(tmp_path / "inbox.db")
    elif kind == "redis":
        yield RedisInbox(request.getfixturevalue("redis_url"))
    else:
        client = fakeredis.FakeAsyncRedis()
        try:
            yield RedisInbox(client)
        finally:
            await client.aclose()


@pytest.fixture(params=KINDS)
async def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inbox]:
    """An open inbox of each kind (SQLite in a real file, Redis on a real server and on
    fakeredis)."""
    async with made_inbox(request.param, request, tmp_path) as made, made:
        yield made


# -- shared semantics ------------------------------------------------------------------


async def test_add_stores_a_pending_event_with_every_field(inbox: Inbox) -> None:
    """add() returns the event as stored, and get() gives back exactly that, pending."""
    added = await inbox.add(
        id="a",
        signing_token="tok",
        action="signing_completed",
        body=b"\x00raw body\xff",
        content_type="application/x-www-form-urlencoded",
        received_at=1234.5,
    )
    event = await inbox.get("a")
    assert event is not None
    assert added == event
    assert event.seq >= 1
    assert (event.id, event.signing_token, event.action) == ("a", "tok", "signing_completed")
    assert event.body == b"\x00raw body\xff"
    assert event.content_type == "application/x-www-form-urlencoded"
    assert event.received_at == 1234.5
    assert (event.state, event.attempts, event.next_attempt_at) == ("pending", 0, 0)
    assert event.last_error is None
    assert event.handlers_done == frozenset()
    assert await inbox.get("missing") is None


async def test_duplicate_id_returns_none_and_keeps_the_original(inbox: Inbox) -> None:
    """A second add() with the same id is a duplicate: None, nothing changes."""
    assert await add(inbox, "a", signing="first") is not None
    assert await add(inbox, "a", signing="second") is None
    event = await inbox.get("a")
    assert event is not None
    assert event.signing_token == "first"
    assert (await inbox.counts())["pending"] == 1


async def test_concurrent_duplicates_store_exactly_one(inbox: Inbox) -> None:
    """Ten concurrent adds of one id (same group commit): exactly one is stored."""
    results = await asyncio.gather(*(add(inbox, "same") for _ in range(10)))
    assert [r is None for r in results].count(False) == 1


TRACEPARENTS = {  # id -> what add() was given
    "w3c": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "none": None,
    "empty": "",
    "odd": '=x; y="z" ~!@#$%^&*()[]{}|\\`\'<>?,./ ',
    "longest": "".join(chr(32 + n % 95) for n in range(256)),
}


async def test_the_traceparent_is_stored_and_read_back_by_every_read(inbox: Inbox) -> None:
    """add() keeps the traceparent given (None when none: a str is never invented),
    exactly as given, and get(), list() and pending() hand it back, after an attempt
    is recorded and after the inbox is closed and opened again."""
    for id, traceparent in TRACEPARENTS.items():
        stored = await add(inbox, id, traceparent=traceparent)
        assert stored is not None
        assert stored.traceparent == traceparent
    await add(inbox, "default")  # (no traceparent argument at all)
    expected = {**TRACEPARENTS, "default": None}
    await inbox.record_attempt("w3c", handlers_done=["h"], state="done")
    await inbox.record_attempt("none", failed=True, next_attempt_at=5.0, error="boom")
    await inbox.close()
    await inbox.open()
    for id, traceparent in expected.items():
        event = await inbox.get(id)
        assert event is not None
        assert event.traceparent == traceparent
    assert {e.id: e.traceparent for e in await inbox.list()} == expected
    assert {e.id: e.traceparent for e in await inbox.list(state="done")} == {
        "w3c": expected["w3c"]
    }
    del expected["w3c"]
    assert {e.id: e.traceparent for e in await inbox.pending()} == expected
    assert {e.id: e.traceparent for e in await inbox.pending(due_before=1.0)} == {
        id: tp for id, tp in expected.items() if id != "none"
    }


async def test_a_duplicate_keeps_the_first_events_traceparent(inbox: Inbox) -> None:
    """A duplicate add() changes nothing, its traceparent included, whether it comes
    later or in the same group commit: the one stored is the one whose add() won."""
    assert await add(inbox, "a", traceparent="first") is not None
    assert await add(inbox, "a", traceparent="second") is None
    assert await add(inbox, "b", traceparent=None) is not None
    assert await add(inbox, "b", traceparent="late") is None
    racing = await asyncio.gather(*(add(inbox, "c", traceparent=f"tp-{n}") for n in range(10)))
    won = [stored for stored in racing if stored is not None]
    assert len(won) == 1
    stored = {e.id: e.traceparent for e in await inbox.list()}
    assert stored == {"a": "first", "b": None, "c": won[0].traceparent}


async def test_a_bad_traceparent_is_refused_alone(inbox: Inbox) -> None:
    """A traceparent that is not None nor at most 256 printable ASCII characters is
    refused with InvalidArgumentError before anything is queued, and the good adds
    gathered with it (queued together for the next group commit or script call) are
    stored all the same."""
    bad: list[object] = ["x" * 257, "00-a\n", "tab\there", "caf\u00e9", "\x7f", b"00-ab", 55]
    results = await asyncio.gather(
        add(inbox, "good-1", traceparent="00-1"),
        *(add(inbox, f"bad-{n}", traceparent=value) for n, value in enumerate(bad)),
        add(inbox, "good-2", traceparent=None),
        return_exceptions=True,
    )
    assert all(isinstance(r, InvalidArgumentError) for r in results[1:-1])
    assert all(isinstance(r, StoredEvent) for r in (results[0], results[-1]))
    assert {e.id: e.traceparent for e in await inbox.list()} == {"good-1": "00-1", "good-2": None}


async def test_seq_is_strictly_increasing_and_never_reused(inbox: Inbox) -> None:
    """seq follows arrival order and keeps rising after the newest event is purged."""
    for id in ("a", "b", "c"):
        await add(inbox, id)
    seqs = [e.seq for e in await inbox.list()]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    await inbox.set_state("c", "done")
    assert await inbox.purge() == 1
    await add(inbox, "d")
    d = await inbox.get("d")
    assert d is not None
    assert d.seq > seqs[-1]


async def test_pending_is_ordered_by_seq_and_only_pending(inbox: Inbox) -> None:
    """pending() lists pending events oldest first, skips other states, honours limit."""
    for id in ("a", "b", "c", "d"):
        await add(inbox, id)
    await inbox.set_state("b", "done")
    await inbox.set_state("c", "dead", error="boom")
    assert [e.id for e in await inbox.pending()] == ["a", "d"]
    assert [e.id for e in await inbox.pending(limit=1)] == ["a"]
    assert await inbox.pending(limit=0) == []


async def test_pending_pages_by_seq_with_after_seq(inbox: Inbox) -> None:
    """pending(after_seq=n) starts after seq n: reading page after page with the last
    seq seen visits every pending event once, in order, skipping finished ones."""
    for n in range(7):
        await add(inbox, f"e{n}")
    await inbox.set_state("e2", "done")
    seen: list[str] = []
    cursor = 0
    while page := await inbox.pending(limit=2, after_seq=cursor):
        seen += [e.id for e in page]
        cursor = page[-1].seq
    assert seen == ["e0", "e1", "e3", "e4", "e5", "e6"]
    last = (await inbox.get("e6")).seq  # type: ignore[union-attr]
    assert await inbox.pending(after_seq=last) == []
    assert [e.id for e in await inbox.pending(after_seq=last - 1)] == ["e6"]


async def test_pending_due_before_honours_next_attempt_at(inbox: Inbox) -> None:
    """With due_before, only events whose next_attempt_at <= due_before are returned."""
    for id in ("now", "soon", "later"):
        await add(inbox, id)
    await inbox.record_failure("soon", error="x", next_attempt_at=100.0)
    await inbox.record_failure("later", error="x", next_attempt_at=200.0)
    assert [e.id for e in await inbox.pending(due_before=50.0)] == ["now"]
    assert [e.id for e in await inbox.pending(due_before=100.0)] == ["now", "soon"]
    assert [e.id for e in await inbox.pending(due_before=500.0)] == ["now", "soon", "later"]
    assert len(await inbox.pending()) == 3  # without due_before, time is ignored


async def test_mark_handler_done_is_idempotent(inbox: Inbox) -> None:
    """Marking a handler twice records it once; names accumulate."""
    await add(inbox, "a")
    await inbox.mark_handler_done("a", "email")
    await inbox.mark_handler_done("a", "email")
    await inbox.mark_handler_done("a", "archive")
    event = await inbox.get("a")
    assert event is not None
    assert event.handlers_done == frozenset({"email", "archive"})


async def test_record_failure_counts_and_keeps_error_and_retry_time(inbox: Inbox) -> None:
    """Each failure adds one attempt and replaces last_error and next_attempt_at."""
    await add(inbox, "a")
    assert await inbox.record_failure("a", error="first", next_attempt_at=10.0) == 1
    assert await inbox.record_failure("a", error="second", next_attempt_at=20.0) == 2
    event = await inbox.get("a")
    assert event is not None
    assert (event.attempts, event.last_error, event.next_attempt_at) == (2, "second", 20.0)
    assert event.state == "pending"


async def test_set_state_sets_state_and_keeps_or_replaces_error(inbox: Inbox) -> None:
    """set_state moves the event; error=None keeps last_error, an error replaces it."""
    await add(inbox, "a")
    await inbox.record_failure("a", error="timeout", next_attempt_at=1.0)
    await inbox.set_state("a", "unconfirmed")
    event = await inbox.get("a")
    assert event is not None
    assert (event.state, event.last_error) == ("unconfirmed", "timeout")
    await inbox.set_state("a", "dead", error="gave up")
    event = await inbox.get("a")
    assert event is not None
    assert (event.state, event.last_error) == ("dead", "gave up")
    await inbox.set_state("a", "done")
    event = await inbox.get("a")
    assert event is not None
    assert event.state == "done"


async def test_record_attempt_is_one_write_of_a_whole_attempt(inbox: Inbox) -> None:
    """record_attempt adds handler names (a union), counts a failed attempt with its
    retry time, moves the state and keeps or replaces the error, all in one call;
    what it leaves out stays as it was. It returns the failed attempts so far."""
    await add(inbox, "a")
    failed = await inbox.record_attempt(
        "a", handlers_done={"email"}, failed=True, next_attempt_at=50.0, error="archive: down"
    )
    event = await inbox.get("a")
    assert event is not None
    assert failed == event.attempts == 1
    assert (event.state, event.next_attempt_at, event.last_error) == (
        "pending",
        50.0,
        "archive: down",
    )
    assert event.handlers_done == {"email"}
    assert await inbox.record_attempt("a", handlers_done=["archive", "email"], state="done") == 1
    event = await inbox.get("a")
    assert event is not None
    assert event.handlers_done == {"email", "archive"}
    assert (event.state, event.attempts, event.next_attempt_at) == ("done", 1, 50.0)
    assert event.last_error == "archive: down"  # no error given: kept
    await add(inbox, "b")
    assert await inbox.record_attempt("b", failed=True, state="dead", error="gave up") == 1
    event = await inbox.get("b")
    assert event is not None
    assert (event.state, event.attempts, event.last_error) == ("dead", 1, "gave up")
    assert event.handlers_done == frozenset()


async def test_record_attempt_refuses_bad_arguments_and_unknown_ids(inbox: Inbox) -> None:
    """An unknown state, a string (not a collection) of handler names or an unknown id
    is refused, and the event is left as it was."""
    await add(inbox, "a")
    with pytest.raises(InvalidArgumentError):
        await inbox.record_attempt("a", state="weird")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await inbox.record_attempt("a", handlers_done="email")
    with pytest.raises(EventNotFoundError) as caught:
        await inbox.record_attempt("nope", state="done")
    assert caught.value.id == "nope"
    assert await inbox.get("a") == await inbox.get("a")
    event = await inbox.get("a")
    assert event is not None
    assert (event.state, event.attempts, event.handlers_done) == ("pending", 0, frozenset())


async def test_bookkeeping_on_an_unknown_id_raises_event_not_found(inbox: Inbox) -> None:
    """mark_handler_done, record_failure and set_state refuse an id never stored."""
    with pytest.raises(EventNotFoundError) as caught:
        await inbox.mark_handler_done("nope", "h")
    assert caught.value.id == "nope"
    with pytest.raises(EventNotFoundError):
        await inbox.record_failure("nope", error="x", next_attempt_at=0)
    with pytest.raises(EventNotFoundError):
        await inbox.set_state("nope", "done")


async def test_list_filters_by_state_in_seq_order_with_limit(inbox: Inbox) -> None:
    """list() gives all events or one state's, oldest first, at most limit."""
    for id in ("a", "b", "c", "d"):
        await add(inbox, id)
    await inbox.set_state("a", "dead", error="x")
    await inbox.set_state("c", "dead", error="y")
    assert [e.id for e in await inbox.list()] == ["a", "b", "c", "d"]
    assert [e.id for e in await inbox.list(state="dead")] == ["a", "c"]
    assert [e.id for e in await inbox.list(limit=2)] == ["a", "b"]
    assert await inbox.list(state="done") == []


async def test_retry_moves_dead_and_unconfirmed_back_to_pending_now(inbox: Inbox) -> None:
    """retry(id) moves one, retry() moves all dead+unconfirmed; attempts and delay reset."""
    for id in ("dead1", "dead2", "unconf", "done", "pend"):
        await add(inbox, id)
        await inbox.record_failure(id, error="e", next_attempt_at=99.0)
    await inbox.set_state("dead1", "dead")
    await inbox.set_state("dead2", "dead")
    await inbox.set_state("unconf", "unconfirmed")
    await inbox.set_state("done", "done")
    await inbox.mark_handler_done("dead1", "email")
    assert await inbox.retry("dead1") == 1
    assert await inbox.retry("dead1") == 0  # already pending
    assert await inbox.retry("done") == 0  # done is not retried
    assert await inbox.retry("missing") == 0
    event = await inbox.get("dead1")
    assert event is not None
    assert (event.state, event.attempts, event.next_attempt_at) == ("pending", 0, 0)
    assert event.handlers_done == {"email"}  # succeeded handlers are not run again
    assert await inbox.retry() == 2
    assert (await inbox.counts())["pending"] == 4
    assert [e.id for e in await inbox.pending(due_before=0)] == ["dead1", "dead2", "unconf"]


async def test_list_pages_by_seq_with_after_seq(inbox: Inbox) -> None:
    """list(after_seq=) gives the events past a seq, in any state or one: paging with
    the last seq seen reads every event once, in order."""
    for id in ("a", "b", "c", "d", "e"):
        await add(inbox, id)
    await inbox.set_state("b", "done")
    await inbox.set_state("d", "dead")
    seen: list[str] = []
    after = 0
    while page := await inbox.list(limit=2, after_seq=after):
        seen += [e.id for e in page]
        after = page[-1].seq
    assert seen == ["a", "b", "c", "d", "e"]
    first = (await inbox.list(limit=1))[0]
    assert [e.id for e in await inbox.list(state="dead", after_seq=first.seq)] == ["d"]
    assert await inbox.list(after_seq=(await inbox.list())[-1].seq) == []


async def done_with(inbox: Inbox, id: str, *handlers: str, **more: Any) -> StoredEvent:
    """Add an event and record it done with ``handlers``; the event as stored."""
    await add(inbox, id, **more)
    await inbox.record_attempt(id, handlers_done=handlers, state="done")
    event = await inbox.get(id)
    assert event is not None
    return event


async def test_replay_moves_only_done_events_back_as_a_replay(inbox: Inbox) -> None:
    """replay(ids) moves the done events among ids back to pending now, for every
    handler (handlers_done emptied), counts the replay, and leaves pending, dead and
    unconfirmed events (and unknown ids) alone, uncounted."""
    done = await done_with(inbox, "done", "email", "audit")
    await inbox.record_failure("done", error="earlier", next_attempt_at=5.0)
    others = {}
    for id, state in (("pend", None), ("dead", "dead"), ("unconf", "unconfirmed")):
        await add(inbox, id)
        if state is not None:
            await inbox.set_state(id, state, error="x")  # type: ignore[arg-type]
        others[id] = await inbox.get(id)
    assert await inbox.replay(["done", "pend", "dead", "unconf", "missing"]) == 1
    event = await inbox.get("done")
    assert event is not None
    assert (event.state, event.attempts, event.next_attempt_at) == ("pending", 0, 0)
    assert (event.replays, event.replay_handler, event.handlers_done) == (1, None, frozenset())
    assert (event.seq, event.body, event.received_at) == (done.seq, done.body, done.received_at)
    assert [e.id for e in await inbox.pending(due_before=0)] == ["done", "pend"]
    assert {id: await inbox.get(id) for id in others} == others
    assert await inbox.replay(["done"]) == 0  # pending now: not replayed twice
    await inbox.record_attempt("done", handlers_done=["email"], state="done")
    assert await inbox.replay(["done"]) == 1
    again = await inbox.get("done")
    assert again is not None
    assert (again.state, again.replays, again.handlers_done) == ("pending", 2, frozenset())


async def test_a_replay_for_one_handler_clears_only_its_mark(inbox: Inbox) -> None:
    """replay(handler=) takes only that handler out of handlers_done and names it in
    replay_handler; a later replay for every handler names none and empties them."""
    await done_with(inbox, "a", "email", "audit")
    assert await inbox.replay(["a"], handler="email") == 1
    event = await inbox.get("a")
    assert event is not None
    assert (event.state, event.replays, event.replay_handler) == ("pending", 1, "email")
    assert event.handlers_done == {"audit"}
    assert [e.replay_handler for e in await inbox.pending()] == ["email"]
    await inbox.record_attempt("a", handlers_done=["email"], state="done")
    assert await inbox.replay(["a"]) == 1
    event = await inbox.get("a")
    assert event is not None
    assert (event.replays, event.replay_handler, event.handlers_done) == (2, None, frozenset())


async def test_replay_chooses_by_time_range_and_action(inbox: Inbox) -> None:
    """received_after (inclusive) and received_before (exclusive) bound the arrival
    time, action the postback's action; every condition given must hold, ids too;
    received_after=0 replays every done event."""
    for id, at, action in (
        ("t100", 100.0, "signer_signed"),
        ("t200", 200.0, "signer_signed"),
        ("t250", 250.0, "signing_completed"),
        ("t300", 300.0, "signer_signed"),
    ):
        await done_with(inbox, id, "h", received_at=at, action=action)
    assert await inbox.replay(received_after=200.0, received_before=300.0) == 2
    assert {e.id for e in await inbox.pending()} == {"t200", "t250"}
    assert await inbox.replay(action="signing_completed") == 0  # pending already
    assert await inbox.replay(["t100", "t300"], received_before=150.0) == 1
    assert await inbox.replay(action="nothing_such") == 0
    assert await inbox.replay(received_after=0, action="signer_signed") == 1  # t300
    assert await inbox.counts() == {"pending": 4, "done": 0, "dead": 0, "unconfirmed": 0}


async def test_replay_of_every_done_event_reads_them_in_pages(inbox: Inbox) -> None:
    """A replay of more events than one page (500) moves every one of them."""
    count = 1_050
    await asyncio.gather(*(add(inbox, f"e{n}") for n in range(count)))
    for start in range(0, count, 50):  # (a bounded number of connections at a time)
        await asyncio.gather(
            *(
                inbox.record_attempt(f"e{n}", handlers_done=["h"], state="done")
                for n in range(start, min(count, start + 50))
            )
        )
    await add(inbox, "still-pending")
    assert await inbox.replay(received_after=0) == count
    ids = [f"e{n}" for n in range(count)]
    assert await inbox.replay(ids) == 0
    assert (await inbox.counts())["pending"] == count + 1
    assert {e.replays for e in await inbox.list(limit=count + 1)} == {0, 1}


async def test_replay_refuses_to_replay_everything_unasked(inbox: Inbox) -> None:
    """With neither ids nor a condition, replay() raises InvalidArgumentError and
    moves nothing; a string for ids, an empty handler name are refused too."""
    await done_with(inbox, "a")
    for call in (
        inbox.replay(),
        inbox.replay([]),
        inbox.replay(handler="email"),
        inbox.replay("a"),
        inbox.replay(["a"], handler=""),
        inbox.replay(received_after="yesterday"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgumentError):
            await call
    assert (await inbox.counts())["done"] == 1


async def test_purge_deletes_one_state_optionally_by_age(inbox: Inbox) -> None:
    """purge() deletes done events by default; older_than keeps newer ones."""
    await add(inbox, "old", received_at=100.0)
    await add(inbox, "new", received_at=300.0)
    await add(inbox, "dead", received_at=100.0)
    await add(inbox, "pending", received_at=100.0)
    for id in ("old", "new"):
        await inbox.set_state(id, "done")
    await inbox.set_state("dead", "dead", error="x")
    assert await inbox.purge(older_than=200.0) == 1
    assert await inbox.get("old") is None
    assert await inbox.get("new") is not None
    assert await inbox.purge() == 1
    assert await inbox.purge(state="dead") == 1
    assert [e.id for e in await inbox.list()] == ["pending"]


async def test_counts_reports_every_state(inbox: Inbox) -> None:
    """counts() has a key for every state, zeros included."""
    assert await inbox.counts() == {"pending": 0, "done": 0, "dead": 0, "unconfirmed": 0}
    for id in ("a", "b", "c"):
        await add(inbox, id)
    await inbox.set_state("b", "done")
    await inbox.set_state("c", "unconfirmed")
    assert await inbox.counts() == {"pending": 1, "done": 1, "dead": 0, "unconfirmed": 1}


async def test_invalid_arguments_are_refused_before_storage(inbox: Inbox) -> None:
    """Unknown states, negative limits and empty ids raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        await add(inbox, "")
    with pytest.raises(InvalidArgumentError):
        await inbox.list(state="weird")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await inbox.pending(limit=-1)
    await add(inbox, "a")
    with pytest.raises(InvalidArgumentError):
        await inbox.set_state("a", "weird")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
async def test_closed_inbox_raises_and_reopens_with_its_events(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Before open() and after close() methods raise InboxClosedError; close() is
    idempotent; reopening shows the events stored before."""
    async with made_inbox(kind, request, tmp_path) as inbox:
        with pytest.raises(InboxClosedError):
            await add(inbox, "a")
        async with inbox:
            await add(inbox, "a")
        await inbox.close()
        for call in (add(inbox, "b"), inbox.get("a"), inbox.counts(), inbox.retry()):
            with pytest.raises(InboxClosedError):
                await call
        async with inbox:
            assert [e.id for e in await inbox.list()] == ["a"]


# -- SQLite specifics ------------------------------------------------------------------


async def test_sqlite_file_is_wal_with_versioned_schema(tmp_path: Path) -> None:
    """open() creates the file in WAL mode with PRAGMA user_version = SCHEMA_VERSION,
    and the worker's connection runs synchronous=FULL off the event-loop thread."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path) as inbox:
        sync, thread = await inbox._call(
            lambda: (
                inbox._store.conn.execute("PRAGMA synchronous").fetchone()[0],
                threading.get_ident(),
            )
        )
        assert sync == 2  # FULL
        assert thread != threading.get_ident()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == _inbox_sqlite.SCHEMA_VERSION
    finally:
        conn.close()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A file written by a newer schema version is refused with InboxError, not misread."""
    path = tmp_path / "inbox.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    inbox = SQLiteInbox(path)
    with pytest.raises(InboxError, match="newer"):
        await inbox.open()
    with pytest.raises(InboxClosedError):
        await inbox.counts()


def test_sqlite_constructor_validates_options(tmp_path: Path) -> None:
    """synchronous must be FULL or NORMAL and batch_max positive."""
    with pytest.raises(InvalidArgumentError):
        SQLiteInbox(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        SQLiteInbox(tmp_path / "x.db", batch_max=0)


async def test_group_commit_batches_concurrent_adds(tmp_path: Path) -> None:
    """500 concurrent adds all succeed and are stored with far fewer than 500 commits."""
    async with SQLiteInbox(tmp_path / "inbox.db") as inbox:
        before = inbox.commits
        results = await asyncio.gather(*(add(inbox, f"e{i}") for i in range(500)))
        assert all(results)
        assert (await inbox.counts())["pending"] == 500
        commits = inbox.commits - before
        assert 1 <= commits <= 25, commits
        assert [e.id for e in await inbox.list(limit=500)] == [f"e{i}" for i in range(500)]


async def test_batch_max_caps_events_per_commit(tmp_path: Path) -> None:
    """With batch_max=10, 100 concurrent adds need at least 10 commits."""
    async with SQLiteInbox(tmp_path / "inbox.db", batch_max=10) as inbox:
        before = inbox.commits
        assert all(await asyncio.gather(*(add(inbox, f"e{i}") for i in range(100))))
        assert inbox.commits - before >= 10


async def test_a_dispatch_write_rides_with_the_next_add(tmp_path: Path) -> None:
    """A record_attempt queued while no add is waits up to LINGER for one, and shares
    its commit (one fsync for both, not one each); with no add coming it commits on
    its own, and close() commits it at once."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path) as inbox:
        await add(inbox, "a")
        before = inbox.commits
        recording = asyncio.ensure_future(inbox.record_attempt("a", state="done"))
        await asyncio.sleep(0)
        await add(inbox, "b")
        await recording
        assert inbox.commits - before == 1
        alone = asyncio.ensure_future(inbox.record_attempt("b", state="done"))
        await asyncio.wait_for(alone, timeout=30)  # the linger ends without an add
        assert inbox.commits - before == 2
        await add(inbox, "c")
        last = asyncio.ensure_future(inbox.record_attempt("c", state="dead", error="x"))
        await asyncio.sleep(0)
    assert last.done()  # close() committed the write that lingered
    assert last.result() == 0
    async with SQLiteInbox(path) as inbox:
        assert [(e.id, e.state) for e in await inbox.list(limit=10)] == [
            ("a", "done"),
            ("b", "done"),
            ("c", "dead"),
        ]


@pytest.mark.parametrize("concurrent", [1, 64])
async def test_the_wal_stays_small_between_checkpoints(tmp_path: Path, concurrent: int) -> None:
    """The inbox checkpoints the WAL itself, between commits (SQLite's automatic
    checkpoint, every 1,000 pages, would run inside a commit and hold up the acks
    waiting for it): one at a time (idle between commits) or always busy, 2,048 adds
    leave a WAL far below SQLite's default threshold of ~4 MB."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path) as inbox:
        for wave in range(2048 // concurrent):
            await asyncio.gather(
                *(add(inbox, f"e{wave}-{i}", signing=f"s{i}") for i in range(concurrent))
            )
        wal = Path(f"{path}-wal").stat().st_size
        assert (await inbox.counts())["pending"] == 2048
    assert wal < 1_500_000, wal


async def test_acks_are_committed_before_dispatch_writes_queued_earlier(
    tmp_path: Path,
) -> None:
    """While a commit waits for the write lock (another connection holds it), two
    dispatch writes and then two adds queue up behind it. With two writes per commit,
    the adds go in the next commit and the dispatch writes after them: an
    acknowledgement never waits behind the dispatcher's bookkeeping."""
    path = tmp_path / "inbox.db"
    order: list[str] = []

    async def noted(name: str, write: Awaitable[object]) -> None:
        await write
        order.append(name)

    async with SQLiteInbox(path, batch_max=2) as inbox:
        for id in ("r1", "r2"):
            await add(inbox, id)
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            waits = [asyncio.ensure_future(noted("first add", add(inbox, "first")))]
            await asyncio.sleep(0)  # its commit is on the worker thread, waiting
            for id in ("r1", "r2"):
                record = inbox.record_attempt(id, handlers_done={"h"}, state="done")
                waits.append(asyncio.ensure_future(noted(f"record {id}", record)))
            for id in ("a1", "a2"):
                waits.append(asyncio.ensure_future(noted(f"add {id}", add(inbox, id))))
            await asyncio.sleep(0)  # all five are queued
            blocker.execute("COMMIT")
            await asyncio.wait_for(asyncio.gather(*waits), timeout=10)
        finally:
            blocker.close()
        assert order == ["first add", "add a1", "add a2", "record r1", "record r2"]
        assert [e.state for e in await inbox.list()] == ["done", "done", "pending"] + [
            "pending"
        ] * 2


async def test_a_write_that_fails_fails_alone_in_its_commit(tmp_path: Path) -> None:
    """Writes that share a commit with one that SQLite refuses (text with a lone
    surrogate cannot be stored) are committed; the refused ones raise InboxError and
    change nothing."""
    async with SQLiteInbox(tmp_path / "inbox.db") as inbox:
        await add(inbox, "target")
        bad_add = inbox.add(
            id="bad",
            signing_token="sig",
            action="signer_signed\ud800",
            body=b"{}",
            content_type="application/json",
            received_at=1.0,
        )
        results = await asyncio.gather(
            add(inbox, "before"),
            inbox.record_attempt("target", failed=True, next_attempt_at=9.0, error="x\ud800"),
            bad_add,
            inbox.record_attempt("target", handlers_done={"h"}),
            add(inbox, "after"),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == [
            "StoredEvent",
            "InboxError",
            "InboxError",
            "int",
            "StoredEvent",
        ]
        target = await inbox.get("target")
        assert target is not None
        assert (target.attempts, target.last_error) == (0, None)
        assert target.handlers_done == {"h"}
        assert await inbox.get("bad") is None
        assert [e.id for e in await inbox.list()] == ["target", "before", "after"]


async def test_close_commits_adds_already_queued(tmp_path: Path) -> None:
    """close() waits for queued adds: every add started before close() is stored."""
    path = tmp_path / "inbox.db"
    inbox = SQLiteInbox(path)
    await inbox.open()
    adds = [asyncio.ensure_future(add(inbox, f"e{i}")) for i in range(50)]
    await asyncio.sleep(0)  # the adds are queued, not yet committed
    await inbox.close()
    assert all(await asyncio.gather(*adds))
    async with SQLiteInbox(path) as reopened:
        assert (await reopened.counts())["pending"] == 50


async def test_failed_commit_fails_its_adds_and_the_inbox_recovers(tmp_path: Path) -> None:
    """A commit that cannot get the write lock raises InboxError in each waiting add()
    (nothing hangs); once the lock is free, adds work again."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path, busy_timeout=0.05) as inbox:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            results = await asyncio.wait_for(
                asyncio.gather(*(add(inbox, f"e{i}") for i in range(3)), return_exceptions=True),
                timeout=10,
            )
            assert all(isinstance(r, InboxError) for r in results), results
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        assert await add(inbox, "e0")


async def test_reader_in_another_connection_does_not_block_writes(tmp_path: Path) -> None:
    """WAL: a reader holding an open read transaction neither blocks commits nor sees
    them until its transaction ends."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path) as inbox:
        await add(inbox, "first")
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            count = "SELECT COUNT(*) FROM events"
            assert reader.execute(count).fetchone()[0] == 1
            written = asyncio.gather(*(add(inbox, f"e{i}") for i in range(50)))
            assert all(await asyncio.wait_for(written, timeout=5))
            assert reader.execute(count).fetchone()[0] == 1  # its snapshot
            reader.execute("COMMIT")
            assert reader.execute(count).fetchone()[0] == 51
        finally:
            reader.close()


async def test_second_inbox_on_the_same_file_works_like_the_cli(tmp_path: Path) -> None:
    """A second SQLiteInbox on the file (the CLI in another process) lists and retries
    while the first (the receiver) keeps running; each sees the other's writes."""
    path = tmp_path / "inbox.db"
    async with SQLiteInbox(path) as receiver:
        await add(receiver, "a")
        await add(receiver, "b")
        await receiver.set_state("a", "dead", error="handler failed")
        async with SQLiteInbox(path) as cli:
            assert [e.id for e in await cli.list(state="dead")] == ["a"]
            assert await cli.retry() == 1
            await add(cli, "c")
        assert [e.id for e in await receiver.pending()] == ["a", "b", "c"]
        event = await receiver.get("a")
        assert event is not None
        assert (event.state, event.attempts) == ("pending", 0)


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from dokobit_async.inbox import SQLiteInbox

    async def producer(inbox, worker):
        for i in range(100_000):
            id = f"w{worker}-{i}"
            await inbox.add(id=id, signing_token="t", action="a", body=b"{}",
                            content_type="application/json", received_at=0.0)
            print("ok", id, flush=True)

    async def main():
        async with SQLiteInbox(sys.argv[1]) as inbox:
            await asyncio.gather(*(producer(inbox, w) for w in range(4)))

    asyncio.run(main())
    """
)


async def test_every_acknowledged_add_survives_sigkill(tmp_path: Path) -> None:
    """A child process adds events (four concurrent producers, so group commits are in
    play) and prints "ok <id>" after each add returns; after SIGKILL mid-stream, the
    file holds every printed id."""
    path = tmp_path / "inbox.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < 300:  # bounded: the child prints one line per add
            line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
            assert line, "child exited early"
            acked.append(line.split()[1].decode())
        os.kill(child.pid, signal.SIGKILL)
        rest = await asyncio.wait_for(child.stdout.read(), timeout=30)
        acked += [line.split()[1].decode() for line in rest.splitlines() if line.strip()]
    finally:
        returncode = await kill_and_reap(child)
    assert returncode == -signal.SIGKILL
    async with SQLiteInbox(path) as inbox:
        stored = {e.id for e in await inbox.list(limit=1_000_000)}
    missing = [id for id in acked if id not in stored]
    assert missing == []
    assert len(stored) >= len(acked) >= 300
