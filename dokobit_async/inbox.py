"""The durable inbox: postbacks are stored here before the receiver answers 200.

The receiver calls :meth:`Inbox.add` and answers Dokobit only after it returns; then it
dispatches pending events to the handlers, recording each handler that succeeded
(:meth:`~Inbox.mark_handler_done`), each failed attempt (:meth:`~Inbox.record_failure`)
and the outcome (:meth:`~Inbox.set_state`: ``done``, ``dead`` letter, ``unconfirmed``).
The ``dokobit-async inbox list|retry|purge`` command works on the same file from
another process while a receiver runs.

Durability (:class:`SQLiteInbox`)
---------------------------------
* When ``add()`` returns, the transaction that holds the event has committed. With
  ``synchronous="FULL"`` (the default) SQLite fsyncs the write-ahead log on every
  commit, so the event survives ``kill -9``, a restart, an OS crash and power loss (on
  storage that honours fsync). With ``synchronous="NORMAL"`` a commit is not fsync'd:
  it survives the process dying (``kill -9``), but the last commits may be rolled back
  by an OS crash or power loss; the file itself stays consistent either way.
* An ``add()`` that had not returned when the process died may or may not be stored.
  Dokobit got no 200 for it and sends it again; ``id`` dedupes, so this is safe.
* Dispatch bookkeeping is committed the same way, so delivery is *at least once*: a
  crash between a handler's success and ``mark_handler_done`` runs that handler again
  after restart. ``handlers_done`` lets the dispatcher skip handlers that already
  succeeded; handlers should still be idempotent. A write that fails (a full disk, a
  lock held past ``busy_timeout``) does not rerun anything: the dispatcher remembers
  the success in memory and retries the write.
* :class:`MemoryInbox` keeps the same rules but survives nothing: it is for tests.

Group commit
------------
An fsync costs far more than an insert, so ``add()`` does not commit on its own, and
neither do the dispatcher's writes (``mark_handler_done``, ``record_failure``,
``set_state``). Each queues its write and waits. One flusher task hands the queue to
the worker thread, which runs up to ``batch_max`` writes in one transaction, each in
its own savepoint (a write that fails fails alone), commits once (one fsync) and wakes
every waiter. Writes that arrive while that commit is in flight wait for the next one,
so under load many acknowledgements share one fsync, while a lone write is still
committed at once (no timer). ``SQLiteInbox.commits`` counts the write transactions.

All SQLite work runs on one dedicated worker thread that owns the connection, never on
the event loop. The database is in WAL mode with a busy timeout, so readers never block
the writer and another process can read and write the same file meanwhile.
"""

from __future__ import annotations

import builtins
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

import attrs

from .exceptions import EventNotFoundError, InboxClosedError, InboxError, InvalidArgumentError

__all__ = [
    "EventNotFoundError",
    "Inbox",
    "InboxClosedError",
    "InboxError",
    "InboxState",
    "MemoryInbox",
    "SQLiteInbox",
    "StoredEvent",
    "add_event",
    "new_event",
]

InboxState = Literal["pending", "done", "dead", "unconfirmed"]
"""Where an event is: awaiting dispatch, handled, dead letter, or awaiting confirmation."""

_STATES: frozenset[str] = frozenset(get_args(InboxState))
_Self = TypeVar("_Self", bound="_Lifecycle")


@attrs.frozen(kw_only=True)
class StoredEvent:
    """One postback as stored in the inbox, with its dispatch bookkeeping."""

    id: str
    """Dedupe key computed by the receiver; unique in the inbox."""
    seq: int
    """Arrival order, strictly increasing (never reused, even after a purge)."""
    signing_token: str
    """The signing this postback is about, for per-signing ordering ("" if none)."""
    action: str
    """The postback's action."""
    body: bytes
    """The postback body exactly as received."""
    content_type: str
    """The postback's Content-Type header."""
    received_at: float
    """When the receiver got it (unix time)."""
    state: InboxState
    """``pending``, ``done``, ``dead`` or ``unconfirmed``."""
    attempts: int
    """Failed dispatch attempts so far."""
    next_attempt_at: float
    """Earliest time for the next dispatch attempt (unix time; 0 = now)."""
    last_error: str | None
    """The last failure, if any."""
    handlers_done: frozenset[str]
    """Names of the handlers (or consumers) that succeeded for this event."""


def new_event(
    *,
    id: str,
    signing_token: str,
    action: str,
    body: bytes,
    content_type: str,
    received_at: float,
) -> StoredEvent:
    """A postback about to be stored, as the dispatcher takes it over: pending, no
    attempts yet, and ``seq`` 0 (the inbox numbers it; the dispatcher keeps the arrival
    order of what it is handed by itself)."""
    return StoredEvent(
        id=id,
        seq=0,
        signing_token=signing_token,
        action=action,
        body=body,
        content_type=content_type,
        received_at=received_at,
        state="pending",
        attempts=0,
        next_attempt_at=0.0,
        last_error=None,
        handlers_done=frozenset(),
    )


async def add_event(inbox: Inbox, event: StoredEvent) -> bool:
    """``inbox.add()`` of a :func:`new_event`: False if it is a duplicate."""
    return await inbox.add(
        id=event.id,
        signing_token=event.signing_token,
        action=event.action,
        body=event.body,
        content_type=event.content_type,
        received_at=event.received_at,
    )


class Inbox(Protocol):
    """What the receiver, the dispatcher and the CLI need from a durable inbox."""

    async def open(self) -> None:
        """Make the inbox usable (create the storage if needed)."""

    async def close(self) -> None:
        """Finish in-flight work and release the storage."""

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
        """Store a new pending event; False if ``id`` is already stored (duplicate).

        When this returns, the event is durable.
        """

    async def get(self, id: str) -> StoredEvent | None:
        """The event with this id, or None."""

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq: page through them with the last seq seen."""

    async def mark_handler_done(self, id: str, handler: str) -> None:
        """Record that ``handler`` succeeded for the event (idempotent)."""

    async def record_failure(self, id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt, keep the error and the retry time; the new count."""

    async def set_state(self, id: str, state: InboxState, *, error: str | None = None) -> None:
        """Move the event to ``state``; ``error`` (if given) becomes ``last_error``."""

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given), by seq."""

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""

    async def counts(self) -> dict[str, int]:
        """How many events are in each state."""


def _check_state(state: str) -> None:
    if state not in _STATES:
        raise InvalidArgumentError(f"unknown inbox state {state!r}")


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"limit must be a non-negative integer, not {limit!r}")


def _new_row(
    id: str, signing_token: str, action: str, body: bytes, content_type: str, received_at: float
) -> tuple[str, str, str, bytes, str, float]:
    # Checked here so that one bad event can never fail a whole group commit.
    if not isinstance(id, str) or not id:
        raise InvalidArgumentError("event id must be a non-empty string")
    for name, value in (
        ("signing_token", signing_token),
        ("action", action),
        ("content_type", content_type),
    ):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a string")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("body must be bytes")
    return (id, signing_token, action, bytes(body), content_type, float(received_at))


class _Lifecycle:
    """``async with`` support shared by both inboxes."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _Self) -> _Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class MemoryInbox(_Lifecycle):
    """An :class:`Inbox` in memory, for tests: same rules, no durability.

    Its events survive :meth:`close` and a later :meth:`open` on the same object, which
    lets tests imitate a restart.
    """

    def __init__(self) -> None:
        self._events: dict[str, StoredEvent] = {}  # insertion order == seq order
        self._seq = 0
        self._open = False

    def __repr__(self) -> str:
        return f"MemoryInbox(events={len(self._events)}, open={self._open})"

    async def open(self) -> None:
        """Make the inbox usable (idempotent)."""
        self._open = True

    async def close(self) -> None:
        """Make the inbox unusable until the next :meth:`open` (idempotent)."""
        self._open = False

    def _require_open(self) -> None:
        if not self._open:
            raise InboxClosedError("the inbox is not open; call open() or use 'async with'")

    def _find(self, id: str) -> StoredEvent:
        self._require_open()
        try:
            return self._events[id]
        except KeyError:
            raise EventNotFoundError(id) from None

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
        """Store a new pending event; False if ``id`` is already stored."""
        row = _new_row(id, signing_token, action, body, content_type, received_at)
        self._require_open()
        if id in self._events:
            return False
        self._seq += 1
        self._events[id] = StoredEvent(
            id=row[0],
            seq=self._seq,
            signing_token=row[1],
            action=row[2],
            body=row[3],
            content_type=row[4],
            received_at=row[5],
            state="pending",
            attempts=0,
            next_attempt_at=0.0,
            last_error=None,
            handlers_done=frozenset(),
        )
        return True

    async def get(self, id: str) -> StoredEvent | None:
        """The event with this id, or None."""
        self._require_open()
        return self._events.get(id)

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq."""
        _check_limit(limit)
        self._require_open()
        due = [
            event
            for event in self._events.values()
            if event.state == "pending"
            and event.seq > after_seq
            and (due_before is None or event.next_attempt_at <= due_before)
        ]
        return due[:limit]

    async def mark_handler_done(self, id: str, handler: str) -> None:
        """Record that ``handler`` succeeded for the event (idempotent)."""
        event = self._find(id)
        self._events[id] = attrs.evolve(event, handlers_done=event.handlers_done | {handler})

    async def record_failure(self, id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt, keep the error and the retry time; the new count."""
        event = self._find(id)
        attempts = event.attempts + 1
        self._events[id] = attrs.evolve(
            event, attempts=attempts, last_error=error, next_attempt_at=next_attempt_at
        )
        return attempts

    async def set_state(self, id: str, state: InboxState, *, error: str | None = None) -> None:
        """Move the event to ``state``; ``error`` (if given) becomes ``last_error``."""
        _check_state(state)
        event = self._find(id)
        last_error = event.last_error if error is None else error
        self._events[id] = attrs.evolve(event, state=state, last_error=last_error)

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given), by seq."""
        if state is not None:
            _check_state(state)
        _check_limit(limit)
        self._require_open()
        found = [e for e in self._events.values() if state is None or e.state == state]
        return found[:limit]

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""
        self._require_open()
        chosen = self._events.values() if id is None else [self._events.get(id)]
        moved = 0
        for event in builtins.list(chosen):
            if event is not None and event.state in ("dead", "unconfirmed"):
                self._events[event.id] = attrs.evolve(
                    event, state="pending", attempts=0, next_attempt_at=0.0
                )
                moved += 1
        return moved

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""
        _check_state(state)
        self._require_open()
        doomed = [
            event.id
            for event in self._events.values()
            if event.state == state and (older_than is None or event.received_at < older_than)
        ]
        for id in doomed:
            del self._events[id]
        return len(doomed)

    async def counts(self) -> dict[str, int]:
        """How many events are in each state (every state present, zeros included)."""
        self._require_open()
        counts = dict.fromkeys(sorted(_STATES), 0)
        for event in self._events.values():
            counts[event.state] += 1
        return counts


if TYPE_CHECKING:
    from ._inbox_sqlite import SQLiteInbox

    def _conforms(memory: MemoryInbox, sqlite: SQLiteInbox) -> tuple[Inbox, Inbox]:
        return memory, sqlite  # both implementations satisfy the protocol


def __getattr__(name: str) -> object:
    # SQLiteInbox lives in _inbox_sqlite, which imports this module's types; loading
    # it on first use keeps the import graph acyclic whichever module loads first.
    if name == "SQLiteInbox":
        from ._inbox_sqlite import SQLiteInbox

        return SQLiteInbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
