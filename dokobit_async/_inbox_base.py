"""The inbox's base: :class:`StoredEvent`, the :class:`Inbox` protocol and what every
implementation shares (argument checks, ``async with``).

The guarantees of the implementations are stated in :mod:`dokobit_async.inbox`, the
public face that re-exports these names.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection
from types import TracebackType
from typing import Literal, Protocol, TypeVar, get_args

import attrs

from .exceptions import InvalidArgumentError

__all__ = [
    "STATES",
    "TRACEPARENT_MAX",
    "Inbox",
    "InboxState",
    "Lifecycle",
    "NewRow",
    "StoredEvent",
    "check_attempt",
    "check_limit",
    "check_state",
    "new_row",
    "pending_event",
]

InboxState = Literal["pending", "done", "dead", "unconfirmed"]
"""Where an event is: awaiting dispatch, handled, dead letter, or awaiting confirmation."""

STATES: frozenset[str] = frozenset(get_args(InboxState))
"""Every :data:`InboxState`."""

_Self = TypeVar("_Self", bound="Lifecycle")


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
    traceparent: str | None = None
    """The W3C ``traceparent`` of the span that received the postback, or None: what
    lets a handler's span link to it, in another process too. Opaque to the inbox,
    which stores it with the event and hands it back unchanged."""
    replays: int = 0
    """How many times :meth:`Inbox.replay` sent the event back to its handlers (0: it
    was never replayed). A handler sees it as ``event.replay``."""
    replay_handler: str | None = None
    """The one handler the last replay was for (only it runs), or None: every handler
    (or never replayed)."""


def pending_event(row: NewRow, seq: int) -> StoredEvent:
    """The event an :meth:`Inbox.add` just stored: ``row`` (from :func:`new_row`) as
    number ``seq``, pending, with no attempts yet."""
    id, signing_token, action, body, content_type, received_at, traceparent = row
    return StoredEvent(
        id=id,
        seq=seq,
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
        traceparent=traceparent,
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
        traceparent: str | None = None,
    ) -> StoredEvent | None:
        """Store a new pending event; the event as stored (with its ``seq``), or
        ``None`` if ``id`` is already stored (a duplicate: nothing changes, the first
        event's ``traceparent`` included).

        ``traceparent`` (the W3C trace context of the span that received the
        postback, or None) is stored with the event as an opaque string of at most
        256 printable ASCII characters. When this returns, the event is durable.
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
        """Record a dispatch attempt in one write (the dispatcher's only write per
        attempt): add ``handlers_done`` to the event's; if ``failed``, count a failed
        attempt to retry at ``next_attempt_at``; if ``state`` is given, move the event
        there; ``error`` (if given) becomes ``last_error``. The failed attempts after
        it. Durable when it returns, like :meth:`add`; an implementation may let it
        wait for the next commit of an ``add()`` (acknowledgements go first)."""

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given) with ``seq > after_seq``, by seq: page through
        them with the last seq seen."""

    async def replay(
        self,
        ids: Collection[str] = (),
        *,
        received_after: float | None = None,
        received_before: float | None = None,
        action: str | None = None,
        handler: str | None = None,
    ) -> int:
        """Done events back to pending now, as a replay; how many moved.

        The events chosen are those ``done`` that match every condition given: one of
        ``ids``, received at or after ``received_after`` and before
        ``received_before`` (unix time), of ``action``. Events in another state are
        left alone (and not counted). Each one moved gets ``replays`` + 1 and
        ``attempts`` 0; with ``handler``, only that handler runs again (it leaves
        ``handlers_done``; ``replay_handler`` names it), else every handler does
        (``handlers_done`` is emptied). A replay of everything is asked for
        explicitly (``received_after=0``): with no id and no condition this raises
        :class:`~dokobit_async.exceptions.InvalidArgumentError`."""

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""

    async def counts(self) -> dict[str, int]:
        """How many events are in each state."""


def check_state(state: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``state`` is an :data:`InboxState`."""
    if state not in STATES:
        raise InvalidArgumentError(f"unknown inbox state {state!r}")


def check_attempt(handlers_done: Collection[str], state: str | None) -> frozenset[str]:
    """The arguments of :meth:`Inbox.record_attempt` checked: the names as a set.

    Raises:
        InvalidArgumentError: ``state`` is not an :data:`InboxState`, or
            ``handlers_done`` is a string or holds something else.
    """
    if state is not None:
        check_state(state)
    names = frozenset(() if isinstance(handlers_done, str) else handlers_done)
    if isinstance(handlers_done, str) or not all(isinstance(n, str) and n for n in names):
        raise InvalidArgumentError("handlers_done must be a collection of handler names")
    return names


def check_limit(limit: int) -> None:
    """Raise :class:`InvalidArgumentError` unless ``limit`` is an ``int`` >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"limit must be a non-negative integer, not {limit!r}")


NewRow = tuple[str, str, str, bytes, str, float, "str | None"]
"""The checked arguments of :meth:`Inbox.add`, in the table's column order."""

TRACEPARENT_MAX = 256
"""The longest ``traceparent`` an inbox stores (a W3C one is 55 characters)."""


def new_row(
    id: str,
    signing_token: str,
    action: str,
    body: bytes,
    content_type: str,
    received_at: float,
    traceparent: str | None = None,
) -> NewRow:
    """The arguments of :meth:`Inbox.add` checked, as one row.

    Raises:
        InvalidArgumentError: ``id`` is empty, a field has the wrong type, or
            ``traceparent`` is not None nor a string of at most
            :data:`TRACEPARENT_MAX` printable ASCII characters.
    """
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
    if traceparent is not None and not (
        isinstance(traceparent, str)
        and len(traceparent) <= TRACEPARENT_MAX
        and traceparent.isascii()
        and traceparent.isprintable()
    ):
        raise InvalidArgumentError(
            f"traceparent must be None or at most {TRACEPARENT_MAX} printable ASCII characters"
        )
    return (id, signing_token, action, bytes(body), content_type, float(received_at), traceparent)


class Lifecycle:
    """``async with`` support shared by the inboxes: :meth:`open` on entry,
    :meth:`close` on exit."""

    async def open(self) -> None:
        """Make the inbox usable."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the inbox."""
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
