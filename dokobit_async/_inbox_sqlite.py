"""The SQLite inbox: :class:`SQLiteInbox`, its worker thread and its group commit.

The SQL runs in :class:`~dokobit_async._inbox_sqlite_store.Store`, on one worker
thread that owns the connection, never on the event loop.

When the lock is still held after ``busy_timeout``, every write queued meanwhile fails
with the batch (``InboxError``) instead of waiting a whole timeout of its own in turn:
a postback gets its 503 within one ``busy_timeout``, however many are waiting.

Durability and group commit are described in :mod:`dokobit_async.inbox`.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from ._inbox_base import (
    InboxState,
    Lifecycle,
    StoredEvent,
    check_limit,
    check_state,
    new_row,
    pending_event,
)
from ._inbox_sqlite_store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    WriteOp,
    event_from_row,
    insert_op,
    is_busy,
    mark_handler_done_op,
    record_failure_op,
    set_state_op,
)
from .exceptions import EventNotFoundError, InboxClosedError, InboxError, InvalidArgumentError

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "SQLiteInbox"]

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's lock before failing (default)."""

_T = TypeVar("_T")


class SQLiteInbox(Lifecycle):
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
        self._store = Store(
            os.fspath(path), synchronous=synchronous, busy_timeout=float(busy_timeout)
        )
        self._batch_max = batch_max
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._queue: deque[tuple[WriteOp, asyncio.Future[Any]]] = deque()
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
        except (sqlite3.Error, StoreError) as exc:
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
    ) -> StoredEvent | None:
        """Store a new pending event; the event as stored, or ``None`` if ``id`` is
        already stored.

        Returns once the transaction that holds the event has committed (group commit).
        """
        row = new_row(id, signing_token, action, body, content_type, received_at)
        seq: int | None = await self._enqueue(functools.partial(insert_op, row))
        return None if seq is None else pending_event(row, seq)

    async def _enqueue(self, op: WriteOp) -> Any:
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
                    if is_busy(exc):  # the writes queued meanwhile would wait as long
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
        return None if row is None else event_from_row(row)

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq."""
        check_limit(limit)
        rows = await self._call(lambda: self._store.pending(limit, due_before, after_seq))
        return [event_from_row(row) for row in rows]

    async def mark_handler_done(self, id: str, handler: str) -> None:
        """Record that ``handler`` succeeded for the event (idempotent)."""
        if not await self._enqueue(functools.partial(mark_handler_done_op, id, handler)):
            raise EventNotFoundError(id)

    async def record_failure(self, id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt, keep the error and the retry time; the new count."""
        attempts: int | None = await self._enqueue(
            functools.partial(record_failure_op, id, error, next_attempt_at)
        )
        if attempts is None:
            raise EventNotFoundError(id)
        return attempts

    async def set_state(self, id: str, state: InboxState, *, error: str | None = None) -> None:
        """Move the event to ``state``; ``error`` (if given) becomes ``last_error``."""
        check_state(state)
        if not await self._enqueue(functools.partial(set_state_op, id, state, error)):
            raise EventNotFoundError(id)

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given), by seq."""
        if state is not None:
            check_state(state)
        check_limit(limit)
        rows = await self._call(lambda: self._store.list(state, limit))
        return [event_from_row(row) for row in rows]

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""
        return await self._call(lambda: self._store.retry(id))

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""
        check_state(state)
        return await self._call(lambda: self._store.purge(state, older_than))

    async def counts(self) -> dict[str, int]:
        """How many events are in each state (every state present, zeros included)."""
        return await self._call(self._store.counts)
