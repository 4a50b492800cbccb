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
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar

from ._inbox_base import (
    InboxState,
    Lifecycle,
    StoredEvent,
    check_attempt,
    check_limit,
    check_state,
    new_row,
    pending_event,
)
from ._inbox_replay import check_replay
from ._inbox_sqlite_replay import replay_page
from ._inbox_sqlite_store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreThread,
    WriteOp,
    event_from_row,
    insert_op,
    is_busy,
    mark_handler_done_op,
    record_attempt_op,
    record_failure_op,
    set_state_op,
)
from .exceptions import EventNotFoundError, InboxClosedError, InboxError, InvalidArgumentError

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "SQLiteInbox"]

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's lock before failing (default)."""

# The WAL is checkpointed by the inbox between commits, never inside one (SQLite's own
# automatic checkpoint, every 1,000 pages, runs in the commit that crosses the line and
# holds up every ack waiting for it): after CHECKPOINT_IDLE commits when nothing waits,
# and at the latest before the commit after CHECKPOINT_BUSY. PASSIVE: it never waits
# for another connection's readers (what it cannot copy, a later one does).
CHECKPOINT_IDLE = 8
CHECKPOINT_BUSY = 200
LINGER = 0.005
"""Seconds a dispatch write (``record_attempt``) waits for an ``add()`` to share its
commit with, when none is queued: one fsync for both instead of one each."""
_T = TypeVar("_T")
_Write = tuple[WriteOp, "asyncio.Future[Any]"]  # a queued write and who waits for it


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
        self._thread: StoreThread | None = None
        self._closing = False
        self._queue: deque[_Write] = deque()  # acks first
        self._bookkeeping: deque[_Write] = deque()
        self._committing = False  # a group commit is on the worker thread
        self._uncheckpointed = 0  # commits since the last checkpoint
        self._linger: asyncio.TimerHandle | None = None  # bookkeeping waits for an add
        self._drained: asyncio.Future[None] | None = None  # close() waits for the queue
        self._lifecycle = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self._thread is not None else "closed"
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
            if self._thread is not None:
                return
            thread = StoreThread("dokobit-inbox")
            try:
                await self._run_on(thread, self._store.open)
            except BaseException:
                thread.run(self._store.close, _ignore)  # after open() if it was cancelled
                thread.stop()
                raise
            self._thread = thread

    async def close(self) -> None:
        """Commit queued adds, finish in-flight work, close the connection (idempotent).

        Afterwards every method except :meth:`open` raises ``InboxClosedError``.
        """
        async with self._lifecycle:
            thread = self._thread
            if thread is not None:
                self._closing = True
                # Shielded: a cancelled close() still finishes closing in the background.
                await asyncio.shield(asyncio.ensure_future(self._shutdown(thread)))

    async def _shutdown(self, thread: StoreThread) -> None:
        try:
            self._schedule()  # (bookkeeping that lingers goes now)
            if self._committing:  # (then nothing else is queued behind it)
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
                self._drained = None
            await self._run_on(thread, self._store.close)
        finally:
            thread.stop()  # nothing is left on it: close() was its last job
            self._thread = None
            self._closing = False

    def _require_open(self) -> StoreThread:
        if self._thread is None or self._closing:
            raise InboxClosedError(
                f"inbox {self.path!r} is not open; call open() or use 'async with'"
            )
        return self._thread

    async def _run_on(self, thread: StoreThread, work: Callable[[], _T]) -> _T:
        try:
            return await thread.call(work)
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
        traceparent: str | None = None,
    ) -> StoredEvent | None:
        """Store a new pending event; the event as stored, or ``None`` if ``id`` is
        already stored.

        Returns once the transaction that holds the event has committed (group commit).
        """
        row = new_row(id, signing_token, action, body, content_type, received_at, traceparent)
        seq: int | None = await self._enqueue(functools.partial(insert_op, row))
        return None if seq is None else pending_event(row, seq)

    async def _enqueue(self, op: WriteOp, *, bookkeeping: bool = False) -> Any:
        """Run a write in the next group commit; its result, or its error raised.
        ``bookkeeping`` writes go after every queued ``add()`` (acks first)."""
        self._require_open()
        committed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        (self._bookkeeping if bookkeeping else self._queue).append((op, committed))
        self._schedule()
        return await committed

    def _checkpoint(self) -> None:
        """Checkpoint the WAL on the worker thread, as a commit would run (best effort:
        a failed checkpoint is tried again later)."""
        assert self._thread is not None
        self._committing, self._uncheckpointed = True, 0
        self._thread.run(self._store.checkpoint, self._checkpointed)

    def _checkpointed(self, ok: bool, result: Any) -> None:
        self._committing = False
        self._next()

    def _next(self) -> None:
        """After a job on the thread: the next commit (or a checkpoint), or tell a
        waiting close() that nothing is left."""
        self._schedule()
        if not self._committing and self._uncheckpointed >= CHECKPOINT_IDLE:
            self._checkpoint()
        if self._drained is not None and not self._committing and not self._drained.done():
            self._drained.set_result(None)

    def _schedule(self) -> None:
        """Start the next commit now, unless one is in flight: then it starts as soon
        as that one is done (no timer), with whatever queued up meanwhile. Dispatch
        writes alone wait up to ``LINGER`` for an add (or start at once when the
        inbox closes, or when ``batch_max`` of them wait)."""
        if self._committing:
            return
        if self._queue or (
            self._bookkeeping and (self._closing or len(self._bookkeeping) >= self._batch_max)
        ):
            if self._uncheckpointed >= CHECKPOINT_BUSY:
                self._checkpoint()
            else:
                self._commit()
        elif self._bookkeeping and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if not self._committing and self._bookkeeping:
            self._commit()

    def _commit(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        # what queued up while the previous commit was in flight, acks first
        batch: builtins.list[_Write] = []
        for queue in (self._queue, self._bookkeeping):
            while queue and len(batch) < self._batch_max:
                batch.append(queue.popleft())
        assert self._thread is not None  # (close() waits for the queue to empty)
        self._committing = True
        self._thread.run(
            functools.partial(self._store.run_batch, [op for op, _ in batch]),
            functools.partial(self._committed, batch),
        )

    def _committed(self, batch: builtins.list[_Write], ok: bool, result: Any) -> None:
        self._committing = False
        if ok:
            outcomes: builtins.list[Any] = result
        else:  # the whole transaction failed
            if is_busy(result):  # the writes queued meanwhile would wait as long
                batch.extend([*self._queue, *self._bookkeeping])
                self._queue.clear()
                self._bookkeeping.clear()
            outcomes = [result] * len(batch)
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):
                waiter.set_exception(self._not_written(outcome))
            else:
                waiter.set_result(outcome)
        self._uncheckpointed += 1
        self._next()

    def _not_written(self, exc: BaseException) -> InboxError:
        error = InboxError(f"inbox {self.path!r}: not written: {exc}")
        error.__cause__ = exc
        return error

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

    async def record_attempt(
        self,
        id: str,
        *,
        handlers_done: Collection[str] = (),
        failed: bool = False,
        next_attempt_at: float = 0.0,
        state: InboxState | None = None,
        error: str | None = None,
    ) -> int:
        """Record a dispatch attempt in one write (handlers that succeeded, a failed
        attempt, a new state, the error); the failed attempts after it.

        It joins the next group commit after every ``add()`` queued before it."""
        names = check_attempt(handlers_done, state)
        op = functools.partial(record_attempt_op, id, names, failed, next_attempt_at, state, error)
        attempts: int | None = await self._enqueue(op, bookkeeping=True)
        if attempts is None:
            raise EventNotFoundError(id)
        return attempts

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given) with ``seq > after_seq``, by seq."""
        if state is not None:
            check_state(state)
        check_limit(limit)
        rows = await self._call(lambda: self._store.list(state, limit, after_seq))
        return [event_from_row(row) for row in rows]

    async def replay(
        self,
        ids: Collection[str] = (),
        *,
        received_after: float | None = None,
        received_before: float | None = None,
        action: str | None = None,
        handler: str | None = None,
    ) -> int:
        """Done events (by id and/or condition) back to pending now, as a replay (for
        every handler, or ``handler`` alone); how many moved. A transaction per page
        of events (``_inbox_sqlite_replay``): acknowledgements go in between."""
        chosen, selection = check_replay(ids, received_after, received_before, action, handler)
        moved, after = 0, 0
        while True:
            page = functools.partial(replay_page, chosen, selection, handler, after)
            count, last = await self._call(functools.partial(self._store.write, page))
            moved += count
            if last is None:
                return moved
            after = last

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


def _ignore(ok: bool, value: object) -> None:
    """What to do with the outcome of closing after a failed open: nothing."""
