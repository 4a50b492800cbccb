"""The receiver's dispatcher: from the inbox to the handlers, at least once each.

* Events of one signing go in the order received: only the oldest unfinished event
  of a signing token is ever in flight, and a later one waits while it is retried.
  Different signings run concurrently, at most ``concurrency`` at a time.
* Each handler that succeeds is recorded in the inbox and never called again for
  that event; the others are retried with exponential backoff until
  ``max_attempts``, then the event is dead-lettered with the last error.
* With a client, an event is first confirmed against the API (a postback is only a
  hint: Dokobit does not sign them); an event the API keeps contradicting is set
  aside as ``unconfirmed``.
* Pipeline consumers (``receiver.deliveries(name)``) are handlers whose success is
  the consumer's ``ack()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import attrs

from .events import Event, SignerDeclined, SignerSigned, SigningCompleted, parse_postback
from .exceptions import DokobitError, NotFoundError
from .inbox import Inbox, StoredEvent
from .retry import RetryPolicy
from .routing import Router

if TYPE_CHECKING:
    from .client import DokobitClient
    from .models import SigningStatus

logger = logging.getLogger("dokobit_async.receiver")

CONSUMER_PREFIX = "consumer:"
IDLE_POLL = 1.0  # seconds between looks at the inbox itself
MAX_BACKLOG = 10_000  # events held in memory; more wait in the inbox for a later look


@attrs.define(eq=False)
class Delivery:
    """One event handed to a pipeline consumer; call :meth:`ack` when it is handled
    (or :meth:`nack` to have it retried). Unacknowledged events come back after a
    restart."""

    event: Event
    _outcome: asyncio.Future[BaseException | None]

    async def ack(self) -> None:
        """The event is handled; it will not be delivered to this consumer again."""
        if not self._outcome.done():
            self._outcome.set_result(None)

    async def nack(self, error: str = "not acknowledged") -> None:
        """The event failed; it is retried like a failed handler."""
        if not self._outcome.done():
            self._outcome.set_result(RuntimeError(error))


def shown_token(token: str | None) -> str:
    """A signing token as logs show it: a short prefix."""
    return f"{token[:6]}..." if token else "-"


async def confirm(client: DokobitClient, event: Event) -> bool | None:
    """Whether the API agrees with ``event``: ``True`` yes, ``False`` not (yet),
    ``None`` when the event is not one the status endpoint can confirm."""
    if not isinstance(event, (SigningCompleted, SignerSigned, SignerDeclined)) or not event.token:
        return None
    status: SigningStatus | None = None
    for flow in (client.external, client.internal):
        try:
            status = await flow.status(event.token)
            break
        except NotFoundError:
            continue
    if status is None:
        return False
    if isinstance(event, SigningCompleted):  # an archived signing was completed first
        return status.status in ("completed", "archived")
    wanted = "signed" if isinstance(event, SignerSigned) else "declined"
    people = [s for s in status.signers if event.signer in (s.token, s.external_id)]
    return any(s.status == wanted for s in people) if people else True


class Dispatcher:
    """Runs until stopped; see the module docstring for the rules."""

    def __init__(
        self,
        router: Router,
        inbox: Inbox,
        *,
        client: DokobitClient | None,
        consumers: tuple[str, ...],
        concurrency: int,
        retry: RetryPolicy,
        confirm_attempts: int,
        confirm_delay: float,
        ack_timeout: float | None = None,
    ):
        self.router = router
        self.inbox = inbox
        self.client = client
        self.concurrency = concurrency
        self.retry = retry
        self.confirm_attempts = confirm_attempts
        self.confirm_delay = confirm_delay
        self.ack_timeout = ack_timeout
        self.stopped = asyncio.Event()  # set once draining begins: consumers stop
        self.queues: dict[str, asyncio.Queue[Delivery]] = {c: asyncio.Queue() for c in consumers}
        self.wake = asyncio.Event()
        self._backlog: dict[str, deque[StoredEvent]] = {}  # key -> unfinished, in order
        self._known: set[str] = set()  # ids in the backlog
        self._ready: deque[str] = deque()  # keys whose first event may start
        self._later: list[tuple[float, str]] = []  # (when, key): first event awaits a retry
        self._tasks: dict[str, asyncio.Task[None]] = {}  # key -> its running first event
        self._finished: set[str] = set()  # ids finished since the last scan began
        self._overflow = False  # the backlog was full: new events wait for the scans
        self._rng = random.Random()
        self._clock: Callable[[], float] = time.time

    def submit(self, stored: StoredEvent, *, scanned: bool = False) -> None:
        """Take a pending event (a fresh one from the receiver, or one a scan found);
        events of one signing (key) are kept in the order submitted."""
        if stored.id in self._known:
            return
        if len(self._known) >= MAX_BACKLOG or (self._overflow and not scanned):
            # no room: it waits in the inbox, and so does every newer event until the
            # scans (which go by arrival order) have caught up
            self._overflow = True
            return
        key = stored.signing_token or stored.id
        self._known.add(stored.id)
        queue = self._backlog.setdefault(key, deque())
        queue.append(stored)
        if len(queue) == 1 and key not in self._tasks:
            self._ready.append(key)
        self.wake.set()

    async def run(self) -> None:
        """The dispatch loop (cancel it to stop; running events are left to finish).

        New postbacks come in through :meth:`submit`; the inbox is read at start and
        every ``IDLE_POLL`` seconds, for events put back to pending by another process
        (``dokobit-async inbox retry``) or left over by a crash.
        """
        next_scan = self._clock() + IDLE_POLL  # start() made the first scan
        while True:
            self.wake.clear()
            try:
                if self._clock() >= next_scan:
                    await self._scan()
                next_due = self._start_ready()
            except Exception:  # e.g. the database is locked for a moment: try again
                logger.exception("the dispatcher could not read the inbox")
                next_due = None
            if self._clock() >= next_scan:
                next_scan = self._clock() + IDLE_POLL
            until = min(next_scan, next_due if next_due is not None else next_scan)
            await self._sleep_until_woken(until - self._clock())

    async def start(self) -> None:
        """Take the events a previous run left pending, before new ones arrive (so
        that a signing's older events stay ahead of its new ones)."""
        await self._scan()

    async def _sleep_until_woken(self, seconds: float) -> None:
        # a timer that sets the event, not asyncio.wait_for: wait_for with a zero or
        # racing timeout can swallow the cancellation that stops this loop
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        timer = asyncio.get_running_loop().call_later(seconds, self.wake.set)
        try:
            await self.wake.wait()
        finally:
            timer.cancel()

    async def _scan(self) -> None:
        self._finished.clear()
        limit = max(1000, 50 * self.concurrency)
        found = await self.inbox.pending(limit=limit)
        if len(found) < limit:
            self._overflow = False  # every pending event is known again after this
        for stored in found:
            if stored.id not in self._finished:  # finished while the query ran
                self.submit(stored, scanned=True)

    def _start_ready(self) -> float | None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            self._ready.append(heapq.heappop(self._later)[1])
        while self._ready and len(self._tasks) < self.concurrency:
            key = self._ready.popleft()
            queue = self._backlog.get(key)
            if key in self._tasks or not queue:
                continue
            if queue[0].next_attempt_at > now:
                heapq.heappush(self._later, (queue[0].next_attempt_at, key))
                continue
            task = asyncio.create_task(self._process(key, queue[0]), name="dokobit-dispatch")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._task_done, key))
        return self._later[0][0] if self._later else None

    def _task_done(self, key: str, _: object = None) -> None:
        self._tasks.pop(key, None)
        if key in self._backlog:
            self._ready.append(key)
        self.wake.set()

    async def drain(self, timeout: float) -> None:
        """Let running events finish within ``timeout``; cancel the rest (they stay
        pending in the inbox)."""
        self.stopped.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, running = await asyncio.wait(tasks, timeout=timeout)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=max(1.0, timeout))
            logger.warning(
                "shutdown: %d events left in the inbox for the next start", len(running)
            )

    async def _process(self, key: str, stored: StoredEvent) -> None:
        try:
            finished = await self._handle(stored)
        except Exception as exc:  # a bug of ours, or the inbox failing: retry it later
            logger.exception("dispatching postback %s failed", stored.action)
            finished = False
            with contextlib.suppress(Exception):
                finished = await self._failed(stored, f"dispatcher: {type(exc).__name__}: {exc}")
        queue = self._backlog[key]
        try:
            fresh = None if finished else await self.inbox.get(stored.id)
        except Exception:  # the inbox is failing: back off in memory, look again later
            delay = self.retry.backoff(stored.attempts + 1, self._rng)
            fresh = attrs.evolve(stored, next_attempt_at=self._clock() + max(delay, 1.0))
        if fresh is not None and fresh.state == "pending":
            queue[0] = fresh  # to be retried: attempts, handlers done, next attempt time
        else:
            queue.popleft()
            self._known.discard(stored.id)
            self._finished.add(stored.id)
        if not queue:
            del self._backlog[key]

    async def _handle(self, stored: StoredEvent) -> bool:
        """Dispatch one event; whether it is finished (done, dead or unconfirmed)."""
        received = datetime.fromtimestamp(stored.received_at, tz=timezone.utc)
        event = parse_postback(stored.body, stored.content_type, received_at=received)
        shown = shown_token(event.token)
        try:
            confirmed = await self._confirmed(event)
        except DokobitError as exc:
            return await self._failed(stored, f"confirmation failed: {exc}")
        if confirmed is False:
            await self.inbox.set_state(
                stored.id, "unconfirmed", error="the API does not confirm this event"
            )
            logger.warning(
                "postback %s for %s kept aside: the API does not confirm it", event.action, shown
            )
            return True
        outcome = await self._dispatch(event, stored.handlers_done)
        errors = [
            f"{name}: {type(error).__name__}: {error}"
            for name, error in outcome.items()
            if error is not None
        ]
        # queued together, these writes share one group commit (one fsync)
        await asyncio.gather(
            *(self.inbox.mark_handler_done(stored.id, n) for n, e in outcome.items() if e is None),
            *([] if errors else [self.inbox.set_state(stored.id, "done")]),
        )
        if not errors:
            return True
        return await self._failed(stored, "; ".join(errors))

    async def _confirmed(self, event: Event) -> bool | None:
        if self.client is None:
            return None
        for attempt in range(self.confirm_attempts):
            verdict = await confirm(self.client, event)
            if verdict is not False:
                return verdict
            if attempt + 1 < self.confirm_attempts:
                await asyncio.sleep(self.confirm_delay * 2**attempt)
        return False

    async def _dispatch(
        self, event: Event, done: frozenset[str]
    ) -> dict[str, BaseException | None]:
        waits: dict[str, Awaitable[BaseException | None]] = {}
        for name, queue in self.queues.items():
            if CONSUMER_PREFIX + name in done:
                continue
            outcome: asyncio.Future[BaseException | None] = (
                asyncio.get_running_loop().create_future()
            )
            await queue.put(Delivery(event, outcome))
            waits[CONSUMER_PREFIX + name] = outcome
        handled = await self.router.dispatch(event, skip=done)
        for name, wait in waits.items():
            try:
                handled[name] = await asyncio.wait_for(wait, self.ack_timeout)
            except asyncio.TimeoutError:
                handled[name] = TimeoutError(f"not acknowledged within {self.ack_timeout} s")
        return handled

    async def _failed(self, stored: StoredEvent, error: str) -> bool:
        """Count a failed attempt; whether the event is finished (dead-lettered)."""
        attempts = stored.attempts + 1
        delay = self.retry.backoff(attempts, self._rng)
        attempts = await self.inbox.record_failure(
            stored.id, error=error, next_attempt_at=self._clock() + delay
        )
        shown = shown_token(stored.signing_token)
        if attempts >= self.retry.max_attempts:
            await self.inbox.set_state(stored.id, "dead", error=error)
            logger.warning(
                "postback %s for %s dead-lettered after %d attempts: %s",
                stored.action,
                shown,
                attempts,
                error,
            )
            return True
        else:
            logger.warning(
                "postback %s for %s failed (attempt %d), retrying in %.1f s: %s",
                stored.action,
                shown,
                attempts,
                delay,
                error,
            )
        return False
