"""The trace context an inbox carries for each postback (issue 12): an SQLite file of
the previous schema upgraded in place with every row kept, the Redis hash field, and
the stored event a RedisWorker builds. The contract itself (every implementation
stores it, a duplicate keeps the first, a bad one is refused alone) is in
test_inbox.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _receiver_helpers import wait_until
from test_inbox import add

from dokobit_async import DispatchPolicy, Router, _redis_worker
from dokobit_async._inbox_redis_layout import event_from_flat
from dokobit_async._inbox_sqlite_store import _MIGRATIONS, SCHEMA_VERSION
from dokobit_async.events import Event
from dokobit_async.inbox import InboxError, SQLiteInbox, StoredEvent
from dokobit_async.redis import RedisInbox, RedisWorker

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

V1_COLUMNS = (
    "seq, id, signing_token, action, body, content_type, received_at, state, attempts,"
    " next_attempt_at, last_error, handlers_done"
)
V1_INSERT = (
    "INSERT INTO events (seq, id, signing_token, action, body, content_type, received_at,"
    " state, attempts, next_attempt_at, last_error, handlers_done)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
V1_SELECT = (
    "SELECT seq, id, signing_token, action, body, content_type, received_at, state,"
    " attempts, next_attempt_at, last_error, handlers_done FROM events ORDER BY seq"
)
NEWER_COLUMNS = ["traceparent", "replays", "replay_handler"]  # versions 2 and 3 add them
J, F = "application/json", "application/x-www-form-urlencoded"
V1_ROWS = [  # (seq, id, token, action, body, type, at, state, attempts, next, error, done)
    (1, "a", "sig-1", "signer_signed", b"\x00a\xff", J, 10.5, "done", 0, 0.0, None, '["e", "x"]'),
    (2, "b", "sig-1", "signing_completed", b"b=1", F, 11.0, "pending", 2, 99.0, "boom", '["e"]'),
    (3, "c", "", "signer_declined", b"{}", J, 12.0, "dead", 5, 0.0, "gave up", "[]"),
    (4, "d", "sig-2", "signer_signed", b"{}", J, 13.0, "unconfirmed", 0, 0.0, "no", "[]"),
    (5, "purged", "sig-2", "signer_signed", b"{}", J, 14.0, "done", 0, 0.0, None, "[]"),
]


def write_v1_file(path: Path) -> list[tuple[Any, ...]]:
    """An inbox file as the previous schema wrote it (WAL, user_version 1), whose last
    event was purged; its rows as that schema reads them."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in _MIGRATIONS[0]:  # what made every file of user_version 1
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.executemany(V1_INSERT, V1_ROWS)
        conn.execute("DELETE FROM events WHERE id = 'purged'")
        return conn.execute(V1_SELECT).fetchall()
    finally:
        conn.close()


def old_fields(event: StoredEvent) -> tuple[Any, ...]:
    """An event's fields in the previous schema's column order."""
    return (
        event.seq,
        event.id,
        event.signing_token,
        event.action,
        event.body,
        event.content_type,
        event.received_at,
        event.state,
        event.attempts,
        event.next_attempt_at,
        event.last_error,
        json.dumps(sorted(event.handlers_done)),
    )


def schema_of(path: Path) -> tuple[int, list[str]]:
    """The file's user_version and the events table's columns."""
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        return version, columns
    finally:
        conn.close()


async def test_a_file_of_the_previous_schema_is_upgraded_in_place_with_every_row(
    tmp_path: Path,
) -> None:
    """Opening a user_version 1 file adds the nullable traceparent column and moves it
    to version 2: every row reads back as it was written, with traceparent None; a new
    event stores its traceparent and takes a seq after the purged one (the
    AUTOINCREMENT counter kept); opening the upgraded file again changes nothing."""
    path = tmp_path / "inbox.db"
    rows = write_v1_file(path)
    async with SQLiteInbox(path) as inbox:
        events = await inbox.list()
        assert [old_fields(e) for e in events] == rows
        assert [e.traceparent for e in events] == [None] * len(rows)
        stored = await add(inbox, "new", traceparent=TRACEPARENT)
        assert stored is not None
        assert stored.seq == 6
    assert schema_of(path) == (SCHEMA_VERSION, [*V1_COLUMNS.split(", "), *NEWER_COLUMNS])
    assert SCHEMA_VERSION == 3
    async with SQLiteInbox(path) as inbox:
        events = await inbox.list()
        assert [old_fields(e) for e in events[:-1]] == rows
        assert [(e.id, e.traceparent) for e in events[-1:]] == [("new", TRACEPARENT)]
        assert (await inbox.counts())["pending"] == 2
    assert schema_of(path)[0] == SCHEMA_VERSION


async def test_two_inboxes_opening_an_old_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    """Two inboxes (a receiver and the CLI, say) open the same version 1 file at the
    same time: the upgrade runs in one write transaction, so the second sees version 2
    and both open; the rows are intact."""
    path = tmp_path / "inbox.db"
    rows = write_v1_file(path)
    one, two = SQLiteInbox(path), SQLiteInbox(path)
    await asyncio.gather(one.open(), two.open())
    try:
        for inbox in (one, two):
            assert [old_fields(e) for e in await inbox.list()] == rows
    finally:
        await one.close()
        await two.close()
    assert schema_of(path) == (SCHEMA_VERSION, [*V1_COLUMNS.split(", "), *NEWER_COLUMNS])


async def test_a_file_newer_than_this_code_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file one version past this code's is refused with InboxError ("newer"), and
    neither its version nor its table is touched."""
    path = tmp_path / "inbox.db"
    write_v1_file(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(InboxError, match="newer"):
        await SQLiteInbox(path).open()
    assert schema_of(path) == (SCHEMA_VERSION + 1, V1_COLUMNS.split(", "))


async def test_redis_keeps_the_traceparent_in_the_events_hash_only_when_given(
    redis_url: str,
) -> None:
    """In Redis the traceparent is the field ``tp`` of the event's hash, exactly as
    given, and absent for an event without one."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with RedisInbox(redis_url) as inbox:
            await add(inbox, "with", traceparent=TRACEPARENT)
            await add(inbox, "without")
            fields = {
                id: await client.hgetall(inbox.prefix + "e:" + id) for id in ("with", "without")
            }
    finally:
        await client.aclose()
    assert fields["with"][b"tp"] == TRACEPARENT.encode()
    assert b"tp" not in fields["without"]
    assert set(fields["with"]) - set(fields["without"]) == {b"tp"}


async def test_a_redis_worker_builds_each_stored_event_with_its_traceparent(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored event a RedisWorker builds from what it reads (the event it confirms,
    runs and records; what a handler's span links from) carries the traceparent the
    receiver stored, on the first attempt and on the retry after a failure, and None
    for an event stored without one."""
    built: list[StoredEvent] = []

    def recording(flat: list[bytes]) -> StoredEvent:
        built.append(event_from_flat(flat))
        return built[-1]

    monkeypatch.setattr(_redis_worker, "event_from_flat", recording)
    router = Router()
    calls: list[str] = []

    @router.on_any
    async def flaky(event: Event) -> None:
        calls.append(event.raw["id"])
        if calls.count("traced") == 1 and event.raw["id"] == "traced":
            raise RuntimeError("once")

    policy = DispatchPolicy(concurrency=2, max_attempts=3, base_delay=0.01, max_delay=0.02)
    async with RedisInbox(redis_url) as inbox:
        for id, traceparent in (("traced", TRACEPARENT), ("untraced", None)):
            body = json.dumps({"action": "signer_signed", "id": id}).encode()
            await add(inbox, id, signing=f"sig-{id}", body=body, traceparent=traceparent)
        async with RedisWorker(redis_url, router, name="w0", policy=policy, block=0.2) as worker:
            run = asyncio.ensure_future(worker.run())

            async def both_done() -> bool:
                return (await inbox.counts())["done"] == 2

            try:
                await wait_until(both_done, timeout=30)
            finally:
                await worker.stop()
                await asyncio.wait_for(run, timeout=30)
    assert sorted(calls) == ["traced", "traced", "untraced"]
    assert sorted((e.id, e.traceparent) for e in built) == [
        ("traced", TRACEPARENT),
        ("traced", TRACEPARENT),
        ("untraced", None),
    ]
