"""The SQLite inbox: :class:`SQLiteInbox` and the synchronous store behind it.

:class:`_Store` holds the SQL and runs only on the inbox's single worker thread, which
owns the connection. The connection is in autocommit mode (``isolation_level=None``):
each read is its own short read transaction and each write is an explicit
``BEGIN IMMEDIATE`` ... ``COMMIT``. ``IMMEDIATE`` takes the write lock up front, so a
writer in another process (the CLI) makes us wait up to ``busy_timeout`` rather than
fail with "database is locked" on a read-to-write upgrade.

When the lock is still held after ``busy_timeout``, every write queued meanwhile fails
with the batch (``InboxError``) instead of waiting a whole timeout of its own in turn:
a postback gets its 503 within one ``busy_timeout``, however many are waiting.

Durability and group commit are described in :mod:`dokobit_async.inbox`.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import attrs

from .exceptions import InvalidArgumentError
from .inbox import (
    EventNotFoundError,
    InboxClosedError,
    InboxError,
    InboxState,
    StoredEvent,
    _check_limit,
    _check_state,
    _Lifecycle,
    _new_row,
)

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "SQLiteInbox"]

SCHEMA_VERSION = 1
"""The ``PRAGMA user_version`` that this code creates and understands."""

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's lock before failing (default)."""

_T = TypeVar("_T")
_Row = tuple[Any, ...]
_NewRow = tuple[str, str, str, bytes, str, float]
_FIELDS = [field.name for field in attrs.fields(StoredEvent)]
_SELECT = (  # the columns in StoredEvent's field order
    "SELECT id, seq, signing_token, action, body, content_type, received_at, state,"
    " attempts, next_attempt_at, last_error, handlers_done FROM events"
)
_INSERT = (
    "INSERT INTO events (id, signing_token, action, body, content_type, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# _MIGRATIONS[v] upgrades a database from user_version v to v + 1. AUTOINCREMENT: seq
# is never reused, so arrival order stays strictly increasing even after a purge.
# handlers_done is a JSON array: one row per event, read and written with the event.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            signing_token TEXT NOT NULL,
            action TEXT NOT NULL,
            body BLOB NOT NULL,
            content_type TEXT NOT NULL,
            received_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'done', 'dead', 'unconfirmed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            handlers_done TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX events_state_seq ON events (state, seq)",
    ),
)


class _StoreError(Exception):
    """The database file cannot be used (wrong journal mode, newer schema)."""


class _Store:
    """The events table behind one connection; used from one thread only."""

    def __init__(self, path: str, *, synchronous: str, busy_timeout: float):
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.commits = 0
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise _StoreError(f"cannot use WAL journal mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._conn = conn
            with self._write():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise _StoreError(
                        f"schema version {version} is newer than this dokobit-async "
                        f"understands ({SCHEMA_VERSION}); upgrade dokobit-async"
                    )
                for statement in (s for step in _MIGRATIONS[version:] for s in step):
                    conn.execute(statement)
                if version != SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the last connection to close checkpoints the WAL

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise _StoreError("the SQLite connection is not open")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1

    def run_batch(self, ops: Sequence[_WriteOp]) -> builtins.list[Any]:
        """Run write ``ops`` in one transaction (one fsync for the whole batch). Each op
        has its own savepoint, so an op that fails fails alone: its slot in the result
        holds the exception, the others still commit."""
        results: builtins.list[Any] = []
        with self._write() as conn:
            for op in ops:
                conn.execute("SAVEPOINT one_op")
                try:
                    results.append(op(conn))
                except (sqlite3.Error, UnicodeError, ValueError, OverflowError) as exc:
                    conn.execute("ROLLBACK TO one_op")
                    results.append(exc)
                conn.execute("RELEASE one_op")
        return results

    def retry(self, id: str | None) -> int:
        sql = (
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = 0"
            " WHERE state IN ('dead', 'unconfirmed')"
        )
        params: tuple[str, ...] = () if id is None else (id,)
        with self._write() as conn:
            return conn.execute(sql + (" AND id = ?" if params else ""), params).rowcount

    def purge(self, state: str, older_than: float | None) -> int:
        with self._write() as conn:
            if older_than is None:
                deleted = conn.execute("DELETE FROM events WHERE state = ?", (state,))
            else:
                sql = "DELETE FROM events WHERE state = ? AND received_at < ?"
                deleted = conn.execute(sql, (state, older_than))
            return deleted.rowcount

    def get(self, id: str) -> _Row | None:
        row: _Row | None = self.conn.execute(_SELECT + " WHERE id = ?", (id,)).fetchone()
        return row

    def pending(self, limit: int, due_before: float | None, after_seq: int) -> builtins.list[_Row]:
        sql = _SELECT + " WHERE state = 'pending' AND seq > ?"
        params: tuple[float, ...] = (after_seq,)
        if due_before is not None:
            sql += " AND next_attempt_at <= ?"
            params += (due_before,)
        return self.conn.execute(sql + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()

    def list(self, state: str | None, limit: int) -> builtins.list[_Row]:
        where, params = ("", ()) if state is None else (" WHERE state = ?", (state,))
        sql = _SELECT + where + " ORDER BY seq LIMIT ?"
        return self.conn.execute(sql, (*params, limit)).fetchall()

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("dead", "done", "pending", "unconfirmed"), 0)
        for state, count in self.conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state"):
            counts[state] = count
        return counts


_WriteOp = Callable[[sqlite3.Connection], Any]


def _insert_op(row: _NewRow, conn: sqlite3.Connection) -> bool:
    return conn.execute(_INSERT, row).rowcount == 1


def _mark_handler_done_op(id: str, handler: str, conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT handlers_done FROM events WHERE id = ?", (id,)).fetchone()
    if row is None:
        return False
    names = set(json.loads(row[0]))
    if handler not in names:
        names.add(handler)
        conn.execute(
            "UPDATE events SET handlers_done = ? WHERE id = ?", (json.dumps(sorted(names)), id)
        )
    return True


def _record_failure_op(
    id: str, error: str, next_attempt_at: float, conn: sqlite3.Connection
) -> int | None:
    conn.execute(
        "UPDATE events SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
        " WHERE id = ?",
        (error, next_attempt_at, id),
    )
    row = conn.execute("SELECT attempts FROM events WHERE id = ?", (id,)).fetchone()
    return None if row is None else int(row[0])


def _set_state_op(id: str, state: str, error: str | None, conn: sqlite3.Connection) -> bool:
    sql = "UPDATE events SET state = ?, last_error = COALESCE(?, last_error) WHERE id = ?"
    return conn.execute(sql, (state, error, id)).rowcount == 1


_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def _is_busy(exc: BaseException) -> bool:
    """Whether a write failed because another connection held the lock too long."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; extended codes too
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _event_from_row(row: _Row) -> StoredEvent:
    fields = dict(zip(_FIELDS, row, strict=True))
    fields["body"] = bytes(fields["body"])
    fields["handlers_done"] = frozenset(json.loads(fields["handlers_done"]))
    return StoredEvent(**fields)


class SQLiteInbox(_Lifecycle):
    """An :class:`~dokobit_async.inbox.Inbox` in an SQLite file: WAL, group commit.

    ``synchronous="FULL"`` (the default) fsyncs every commit, so an ``add()`` that
    returned survives power loss; ``"NORMAL"`` survives only the process dying.
    ``batch_max`` caps how many events share one commit. ``busy_timeout`` (seconds)
    bounds the wait for another process's lock: past it, the waiting writes fail
    together. The file is created on :meth:`open`; other processes (the CLI) may
    open the same file at the same time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        batch_max: int = 256,
        busy_timeout: float = BUSY_TIMEOUT,
    ):
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidArgumentError(f"synchronous must be 'FULL' or 'NORMAL': {synchronous!r}")
        if isinstance(batch_max, bool) or not isinstance(batch_max, int) or batch_max < 1:
            raise InvalidArgumentError(f"batch_max must be a positive integer: {batch_max!r}")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not (0 <= busy_timeout < 3600)
        ):
            raise InvalidArgumentError(f"busy_timeout must be 0 to 3600 seconds: {busy_timeout!r}")
        self._store = _Store(
            os.fspath(path), synchronous=synchronous, busy_timeout=float(busy_timeout)
        )
        self._batch_max = batch_max
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._queue: deque[tuple[_WriteOp, asyncio.Future[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self._executor is not None else "closed"
        return f"SQLiteInbox({self._store.path!r}, {state})"

    @property
    def path(self) -> str:
        """The database file."""
        return self._store.path

    @property
    def commits(self) -> int:
        """Write transactions committed by this object; a group commit counts once."""
        return self._store.commits

    async def open(self) -> None:
        """Start the worker thread, connect, create or upgrade the schema (idempotent)."""
        async with self._lifecycle:
            if self._executor is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dokobit-inbox")
            try:
                await self._run_on(executor, self._store.open)
            except BaseException:
                executor.submit(self._store.close)  # runs after open() if it was cancelled
                executor.shutdown(wait=False)
                raise
            self._executor = executor

    async def close(self) -> None:
        """Commit queued adds, finish in-flight work, close the connection (idempotent).

        Afterwards every method except :meth:`open` raises ``InboxClosedError``.
        """
        async with self._lifecycle:
            executor = self._executor
            if executor is not None:
                self._closing = True
                # Shielded: a cancelled close() still finishes closing in the background.
                await asyncio.shield(asyncio.ensure_future(self._shutdown(executor)))

    async def _shutdown(self, executor: ThreadPoolExecutor) -> None:
        try:
            if self._flusher is not None:
                await self._flusher
            await self._run_on(executor, self._store.close)
        finally:
            executor.shutdown(wait=False)  # nothing is left on it: close() was its last job
            self._executor = None
            self._closing = False

    def _require_open(self) -> ThreadPoolExecutor:
        if self._executor is None or self._closing:
            raise InboxClosedError(
                f"inbox {self.path!r} is not open; call open() or use 'async with'"
            )
        return self._executor

    async def _run_on(self, executor: ThreadPoolExecutor, work: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, work)
        except (sqlite3.Error, _StoreError) as exc:
            raise InboxError(f"inbox {self.path!r}: {exc}") from exc

    async def _call(self, work: Callable[[], _T]) -> _T:
        return await self._run_on(self._require_open(), work)

    async def add(
        self,
        *,
        id: str,
        signing_token: str,
        action: str,
        body: bytes,
        content_type: str,
        received_at: float,
    ) -> bool:
        """Store a new pending event; False if ``id`` is already stored.

        Returns once the transaction that holds the event has committed (group commit).
        """
        row = _new_row(id, signing_token, action, body, content_type, received_at)
        stored: bool = await self._enqueue(functools.partial(_insert_op, row))
        return stored

    async def _enqueue(self, op: _WriteOp) -> Any:
        """Run a write in the next group commit; its result, or its error raised."""
        executor = self._require_open()
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, committed))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(executor), name="dokobit-inbox-commit")
        return await committed

    async def _flush(self, executor: ThreadPoolExecutor) -> None:
        # Whatever queued up while the previous commit was in flight goes in the next one.
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                size = min(len(self._queue), self._batch_max)
                batch = [self._queue.popleft() for _ in range(size)]
                try:
                    outcomes = await loop.run_in_executor(
                        executor, self._store.run_batch, [op for op, _ in batch]
                    )
                except asyncio.CancelledError:
                    for _, waiter in (*batch, *self._queue):
                        if not waiter.done():
                            waiter.set_exception(
                                InboxClosedError("the inbox shut down during the commit")
                            )
                    self._queue.clear()
                    raise
                except Exception as exc:
                    if _is_busy(exc):  # the writes queued meanwhile would wait as long
                        batch.extend(self._queue)
                        self._queue.clear()
                    for _, waiter in batch:
                        if not waiter.done():
                            error = InboxError(f"inbox {self.path!r}: not written: {exc}")
                            error.__cause__ = exc
                            waiter.set_exception(error)
                    continue
                for (_, waiter), outcome in zip(batch, outcomes, strict=True):
                    if waiter.done():
                        continue
                    if isinstance(outcome, Exception):
                        error = InboxError(f"inbox {self.path!r}: not written: {outcome}")
                        error.__cause__ = outcome
                        waiter.set_exception(error)
                    else:
                        waiter.set_result(outcome)
        finally:
            self._flusher = None

    async def get(self, id: str) -> StoredEvent | None:
        """The event with this id, or None."""
        row = await self._call(lambda: self._store.get(id))
        return None if row is None else _event_from_row(row)

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq."""
        _check_limit(limit)
        rows = await self._call(lambda: self._store.pending(limit, due_before, after_seq))
        return [_event_from_row(row) for row in rows]

    async def mark_handler_done(self, id: str, handler: str) -> None:
        """Record that ``handler`` succeeded for the event (idempotent)."""
        if not await self._enqueue(functools.partial(_mark_handler_done_op, id, handler)):
            raise EventNotFoundError(id)

    async def record_failure(self, id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt, keep the error and the retry time; the new count."""
        attempts: int | None = await self._enqueue(
            functools.partial(_record_failure_op, id, error, next_attempt_at)
        )
        if attempts is None:
            raise EventNotFoundError(id)
        return attempts

    async def set_state(self, id: str, state: InboxState, *, error: str | None = None) -> None:
        """Move the event to ``state``; ``error`` (if given) becomes ``last_error``."""
        _check_state(state)
        if not await self._enqueue(functools.partial(_set_state_op, id, state, error)):
            raise EventNotFoundError(id)

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given), by seq."""
        if state is not None:
            _check_state(state)
        _check_limit(limit)
        rows = await self._call(lambda: self._store.list(state, limit))
        return [_event_from_row(row) for row in rows]

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""
        return await self._call(lambda: self._store.retry(id))

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""
        _check_state(state)
        return await self._call(lambda: self._store.purge(state, older_than))

    async def counts(self) -> dict[str, int]:
        """How many events are in each state (every state present, zeros included)."""
        return await self._call(self._store.counts)
