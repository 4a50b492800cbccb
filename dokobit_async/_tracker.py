"""Tracked signings: what the reconciler needs to know of each open signing.

The guarantee: a signing that the client created with a tracker is looked at on the
:class:`Schedule` until it reaches a final state or its maximum age, and by one poller
at a time: :meth:`Tracker.claim` hands a due signing to one caller with a lease, and
nobody else gets it until the lease ends or :meth:`Tracker.update` gives it back
(``docs/architecture.md#reconciliation``). A poller that dies loses its claims when
their leases end, so nothing stays unpolled for longer than a lease.

Times are Unix seconds (wall clock): the records outlive a process and are shared
between processes. The access token is never part of a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import Protocol, TypeVar

import attrs

from ._redact import shown_token
from .models import CreatedSigning

__all__ = ["MemoryTracker", "Schedule", "TrackedSigning", "Tracker"]

logger = logging.getLogger("dokobit_async")
T = TypeVar("T")

_NONE: Mapping[str, str] = MappingProxyType({})

FINAL_STATUSES = frozenset({"completed", "archived", "failed", "declined", "expired", "deleted"})
"""Document statuses after which nothing the reconciler rebuilds can happen: the
confirmed ``completed``, and the inferred ``archived`` (after the completion) and
``failed`` (docs/wire-notes.md#document-status), ``declined``, ``expired``, ``deleted``."""


@attrs.frozen(kw_only=True)
class Schedule:
    """When the reconciler looks at a tracked signing (every value in seconds).

    Attributes:
        first: The first look, after the create (10 minutes: when a result is
            likely).
        factor: Each later look waits this many times longer than the one before...
        longest: ...but never longer than this (6 hours).
        max_age: A signing still open this long after its create is no longer
            tracked (30 days).
        final: The document statuses after which nothing more happens (the
            signing is no longer tracked); a signing that is gone (404) is dropped
            too.
    """

    first: float = attrs.field(default=600.0, validator=attrs.validators.ge(0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    longest: float = attrs.field(default=6 * 3600.0, validator=attrs.validators.gt(0))
    max_age: float = attrs.field(default=30 * 86400.0, validator=attrs.validators.gt(0))
    final: frozenset[str] = FINAL_STATUSES

    def after(self, polls: int) -> float:
        """Seconds from the look number ``polls`` (1 for the first) to the next:
        ``first * factor ** polls``, at most ``longest`` (``first`` 0 counts as 1 s)."""
        try:
            return min(self.longest, (self.first or 1.0) * self.factor ** min(polls, 1000))
        except OverflowError:
            return self.longest


def _frozen(signers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(signers))


@attrs.frozen(kw_only=True)
class TrackedSigning:
    """One tracked signing.

    Attributes:
        token: The signing token (not the access token).
        flow: ``"external"`` or ``"internal"``: which status endpoint to ask.
        created_at: When the client created it (Unix seconds).
        next_at: When to look next (Unix seconds).
        polls: How many times its status was asked.
        status: The document status last seen (``""`` before the first look).
        signers: Each participant's status last seen, by the participant's token.
    """

    token: str
    flow: str
    created_at: float
    next_at: float
    polls: int = 0
    status: str = ""
    signers: Mapping[str, str] = attrs.field(default=_NONE, converter=_frozen)


class Tracker(Protocol):
    """Where tracked signings are kept: :class:`MemoryTracker`, ``SQLiteTracker``,
    ``dokobit_async.redis.RedisTracker``, or your own.

    ``schedule`` sets the first look of a newly tracked signing (the reconciler
    reads the rest of it from here too).
    """

    schedule: Schedule

    async def open(self) -> None:
        """Get ready (create tables, connect); called again after a close."""

    async def close(self) -> None:
        """Release what :meth:`open` took."""

    async def track(self, token: str, flow: str, created_at: float) -> None:
        """Start tracking a signing (its first look: ``created_at`` plus
        ``schedule.first``); a signing already tracked is left as it is."""

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        """Up to ``limit`` signings due at ``now`` (soonest first) that nobody holds,
        each held by this caller for ``lease`` seconds."""

    async def update(self, signing: TrackedSigning) -> None:
        """Store what a look found (and when to look next), and let go of it."""

    async def forget(self, token: str) -> None:
        """Stop tracking a signing (final, gone or too old)."""

    async def get(self, token: str) -> TrackedSigning | None:
        """The tracked signing with this token, if any."""

    async def oldest(self) -> TrackedSigning | None:
        """The tracked (still open) signing created first, if any: when it was created
        after a postback secret's rotation, no open signing's URL uses the old
        secret any more (docs/architecture.md#rotating-the-postback-secret)."""


class MemoryTracker:
    """A :class:`Tracker` in this process's memory: for tests and single processes
    that may forget their open signings on a restart.

    Args:
        schedule: When to look at each signing.
    """

    def __init__(self, schedule: Schedule = Schedule()) -> None:
        self.schedule = schedule
        self._signings: dict[str, TrackedSigning] = {}
        self._held: dict[str, float] = {}  # token -> end of its lease

    def __repr__(self) -> str:
        return f"<MemoryTracker signings={len(self._signings)}>"

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close (the records stay for a next open)."""

    async def track(self, token: str, flow: str, created_at: float) -> None:
        """See :meth:`Tracker.track`."""
        if token not in self._signings:
            next_at = created_at + self.schedule.first
            self._signings[token] = TrackedSigning(
                token=token, flow=flow, created_at=created_at, next_at=next_at
            )

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        """See :meth:`Tracker.claim`."""
        due = sorted(
            (s for s in self._signings.values() if s.next_at <= now),
            key=lambda s: s.next_at,
        )
        taken = [s for s in due if self._held.get(s.token, 0.0) <= now][:limit]
        for signing in taken:
            self._held[signing.token] = now + lease
        return taken

    async def update(self, signing: TrackedSigning) -> None:
        """See :meth:`Tracker.update`."""
        if signing.token in self._signings:
            self._signings[signing.token] = signing
        self._held.pop(signing.token, None)

    async def forget(self, token: str) -> None:
        """See :meth:`Tracker.forget`."""
        self._signings.pop(token, None)
        self._held.pop(token, None)

    async def get(self, token: str) -> TrackedSigning | None:
        """See :meth:`Tracker.get`."""
        return self._signings.get(token)

    async def oldest(self) -> TrackedSigning | None:
        """See :meth:`Tracker.oldest`."""
        return min(self._signings.values(), key=lambda s: (s.created_at, s.token), default=None)


async def tracked(sent: Awaitable[T], tracker: Tracker, operation: str) -> T:
    """The answer of a create, whose signing ``tracker`` tracks once it exists
    (``docs/architecture.md#reconciliation``): the client's hook."""
    created = await sent
    if isinstance(created, CreatedSigning):
        flow = operation.partition(".")[0]  # "external.create" -> "external"
        try:
            await tracker.track(created.token, flow, time.time())
        except Exception as exc:  # the signing exists: its create must not look failed
            logger.error(
                "signing %s not tracked: %s", shown_token(created.token), type(exc).__name__
            )
    return created
