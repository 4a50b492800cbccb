"""The inbox in memory, for tests: :class:`MemoryInbox`."""

from __future__ import annotations

import builtins
from collections.abc import Collection

import attrs

from ._inbox_base import (
    STATES,
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
from .exceptions import EventNotFoundError, InboxClosedError

__all__ = ["MemoryInbox"]


class MemoryInbox(Lifecycle):
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
        traceparent: str | None = None,
    ) -> StoredEvent | None:
        """Store a new pending event; the event as stored, or ``None`` if ``id`` is
        already stored."""
        row = new_row(id, signing_token, action, body, content_type, received_at, traceparent)
        self._require_open()
        if id in self._events:
            return None
        self._seq += 1
        stored = self._events[id] = pending_event(row, self._seq)
        return stored

    async def get(self, id: str) -> StoredEvent | None:
        """The event with this id, or None."""
        self._require_open()
        return self._events.get(id)

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq."""
        check_limit(limit)
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
        check_state(state)
        event = self._find(id)
        last_error = event.last_error if error is None else error
        self._events[id] = attrs.evolve(event, state=state, last_error=last_error)

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
        attempt, a new state, the error); the failed attempts after it."""
        names = check_attempt(handlers_done, state)
        event = self._find(id)
        attempts = event.attempts + 1 if failed else event.attempts
        self._events[id] = attrs.evolve(
            event,
            handlers_done=event.handlers_done | names,
            attempts=attempts,
            next_attempt_at=next_attempt_at if failed else event.next_attempt_at,
            state=event.state if state is None else state,
            last_error=event.last_error if error is None else error,
        )
        return attempts

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given) with ``seq > after_seq``, by seq."""
        if state is not None:
            check_state(state)
        check_limit(limit)
        self._require_open()
        found = [
            e
            for e in self._events.values()
            if (state is None or e.state == state) and e.seq > after_seq
        ]
        return found[:limit]

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
        every handler, or ``handler`` alone); how many moved."""
        chosen, selection = check_replay(ids, received_after, received_before, action, handler)
        self._require_open()
        moved = 0
        for event in builtins.list(self._events.values()):
            if (
                event.state == "done"
                and (chosen is None or event.id in chosen)
                and selection.matches(event)
            ):
                left = frozenset() if handler is None else event.handlers_done - {handler}
                self._events[event.id] = attrs.evolve(
                    event,
                    state="pending",
                    attempts=0,
                    next_attempt_at=0.0,
                    replays=event.replays + 1,
                    replay_handler=handler,
                    handlers_done=left,
                )
                moved += 1
        return moved

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
        check_state(state)
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
        counts = dict.fromkeys(sorted(STATES), 0)
        for event in self._events.values():
            counts[event.state] += 1
        return counts
