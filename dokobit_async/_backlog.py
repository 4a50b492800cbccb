"""The dispatcher's backlog: the unfinished events it knows of, and how it finds them.

Events are queued per signing (their ``signing_token``, or their own id when they
have none), in arrival order; only the first of a queue is ever dispatched, so the
events of one signing are handled one at a time, in order. A queue whose first
event may start is in :attr:`Backlog.ready`.

Events come in two ways. The receiver hands each new postback over in memory
(:meth:`Backlog.submit`) right after storing it, with the event it parsed (kept in
:attr:`Backlog.parsed` until dispatch takes it, so a postback is parsed once). And the
inbox is read in pages by arrival order (:meth:`Backlog.scan`):

* catching up (:attr:`Backlog.behind`: at start, and whenever memory was too full to
  take a new postback), page after page to the end, so that a backlog after a
  restart drains at the dispatch rate, not a page per second. Until the sweep gets
  there, new postbacks wait for it (they are kept aside, in order) instead of
  overtaking older events of their signing that it has not read yet;
* otherwise one page every ``IDLE_POLL`` seconds, round and round, to find what
  another process put back (``dokobit-async inbox retry``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from .events import Event
from .inbox import Inbox, StoredEvent

__all__ = ["IDLE_POLL", "MAX_BACKLOG", "MAX_DEFERRED", "SWEEP_WAIT", "Backlog"]

IDLE_POLL = 1.0  # seconds between sweep steps when nothing is behind
SWEEP_WAIT = 0.1  # seconds between sweep steps while memory has no room for more
MAX_BACKLOG = 10_000  # events held in memory; more wait in the inbox for the sweep
MAX_DEFERRED = 1_000  # new postbacks remembered while a sweep catches up


class Backlog:
    """The events waiting in memory, by signing; see the module docstring.

    ``page`` events are read per sweep step, and at most ``max(MAX_BACKLOG, 2 *
    page)`` are held. ``wake`` is set whenever a queue becomes ready.
    """

    def __init__(self, inbox: Inbox, *, page: int, wake: asyncio.Event):
        self.inbox = inbox
        self.page = page
        self.limit = max(MAX_BACKLOG, 2 * page)
        self.queues: dict[str, deque[StoredEvent]] = {}  # key -> unfinished, in order
        self.ready: deque[str] = deque()  # keys whose first event may start
        self.behind = False  # a catch-up sweep is under way: new postbacks wait
        self._wake = wake
        self._known: set[str] = set()  # ids in the queues
        self._finished: set[str] = set()  # ids finished since the last step began
        self._cursor = 0  # the sweep has read the pending events up to this seq
        self._deferred: dict[str, StoredEvent] = {}  # new postbacks waiting for it
        self.parsed: dict[str, Event] = {}  # id -> its event, as the receiver parsed it
        self._deferred_lost = False  # some were not remembered: read on once more

    def __len__(self) -> int:
        return len(self._known)

    def size(self) -> int:
        """Events held and not finished: queued, or new ones waiting for a sweep."""
        return len(self._known) + len(self._deferred)

    @property
    def full(self) -> bool:
        """Whether there is no room for another event."""
        return len(self._known) >= self.limit

    @property
    def waiting(self) -> int:
        """Signings whose next event may start now and has not (about: a queue can
        be in line twice), plus new postbacks waiting for a sweep."""
        return len(self.ready) + len(self._deferred)

    def knows(self, id: str) -> bool:
        """Whether the event is in a queue."""
        return id in self._known

    def submit(self, stored: StoredEvent, event: Event | None = None) -> None:
        """Take a new pending event from the receiver (after it was stored), and the
        event it parsed from it."""
        if stored.id in self._known:
            return
        if event is not None:
            self.parsed[stored.id] = event
        if self.behind or not self.take(stored):
            # a sweep is catching up (or there is no room): it waits, so that it
            # cannot overtake older events of its signing that the sweep has not read
            self.behind = True
            if len(self._deferred) < MAX_DEFERRED:
                self._deferred[stored.id] = stored
            else:
                self._deferred_lost = True
                self.parsed.pop(stored.id, None)
            self._wake.set()

    def take(self, stored: StoredEvent) -> bool:
        """Queue a pending event behind the older ones of its signing; False when
        there is no room."""
        if stored.id in self._known:
            return True
        if self.full:
            return False
        self._deferred.pop(stored.id, None)
        key = stored.signing_token or stored.id
        self._known.add(stored.id)
        queue = self.queues.setdefault(key, deque())
        queue.append(stored)
        if len(queue) == 1:  # (a queue whose first event runs is never empty)
            self.ready.append(key)
        self._wake.set()
        return True

    def update(self, key: str, stored: StoredEvent) -> None:
        """The first event of ``key`` as it now stands (after a failed attempt)."""
        self.queues[key][0] = stored

    def finish(self, key: str) -> None:
        """The first event of ``key`` is finished: it leaves the backlog."""
        queue = self.queues[key]
        done = queue.popleft()
        self._known.discard(done.id)
        self._finished.add(done.id)
        self.parsed.pop(done.id, None)
        if not queue:
            del self.queues[key]

    async def start(self) -> None:
        """Read the first page of what a previous run left pending, before new
        postbacks arrive; a full page starts a catch-up sweep."""
        self.behind = True
        await self.scan()

    async def scan(self) -> float:
        """One step of the sweep: the next page of pending events after the cursor.
        Seconds until the next step: 0 (read on), ``SWEEP_WAIT`` (catching up, but
        no room for the rest yet) or ``IDLE_POLL``."""
        self._finished.clear()
        self._deferred_lost = False  # what was lost before this read is in its pages
        found = await self.inbox.pending(limit=self.page, after_seq=self._cursor)
        for stored in found:
            if stored.id not in self._finished and not self.take(stored):
                return SWEEP_WAIT if self.behind else IDLE_POLL  # the cursor stays
            self._cursor = stored.seq
        if len(found) == self.page:
            return 0.0 if self.behind else IDLE_POLL
        if self.behind:
            if self._deferred_lost:
                # postbacks that waited may be missing from the page just read (stored
                # after it): read on from here rather than let newer ones overtake them
                for id in self._deferred:
                    self.parsed.pop(id, None)
                self._deferred.clear()
                return 0.0
            waiting, self._deferred = self._deferred, {}
            for stored in waiting.values():  # stored after the last page: the newest
                if not self.take(stored):  # no room: they go on waiting, in order
                    self._deferred = {k: v for k, v in waiting.items() if k not in self._known}
                    return SWEEP_WAIT
            self.behind = False
        self._cursor = 0
        return IDLE_POLL
