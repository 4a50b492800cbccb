"""The receiver's dispatcher: from the inbox to the handlers, at least once each.

* Events of one signing go in the order received: only the oldest unfinished event
  of a signing token is ever in flight, and a later one waits while it is retried.
  Different signings run concurrently, at most ``concurrency`` at a time.
* A handler that succeeds is never called again for that event. Its success is
  remembered in memory at once and then recorded in the inbox; the others are
  retried with exponential backoff until ``max_attempts``, then the event is
  dead-lettered with the last error.
* When the inbox cannot record an outcome (a full disk, an I/O error, a lock held
  too long), the *recording* is retried with exponential backoff, never the
  handlers: while the process lives, the successes it remembers are not run again,
  recorded or not. Until a recording succeeds again new events wait (their outcome
  could not be kept either), but for one at a time that goes ahead to find out
  whether writes work again (what fails may belong to one event only). Each failed
  attempt is one log line; at shutdown, what is still unrecorded gets one more try.
* With a confirmation (:mod:`dokobit_async._confirm`), an event is first confirmed
  against the API (a postback is only a hint: Dokobit does not sign them); an event
  the API keeps contradicting is set aside as ``unconfirmed``.
* Pipeline consumers (``receiver.deliveries(name)``) are handlers whose success is
  the consumer's ``ack()``.
* A replayed event (``Inbox.replay``) comes with ``event.replay`` set, is not
  confirmed again, and goes to its one named handler only, when the replay names one.

Where events come from, and in what order: :mod:`dokobit_async._backlog`.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import attrs

from . import _telemetry
from ._backlog import IDLE_POLL, SWEEP_WAIT, Backlog
from ._confirm import Confirmation
from ._confirm import confirmed as confirm
from ._inbox_replay import replayed, skipped_handlers
from ._outcomes import Outcome, Progress, Recorder, unconfirmed
from ._policy import DispatchPolicy
from ._pressure import BackPressure
from ._redact import error_text, printable
from .events import Event, parse_postback
from .inbox import Inbox, StoredEvent
from .routing import Router, dispatch_attempt

__all__ = ["Delivery", "Dispatcher"]

logger = logging.getLogger("dokobit_async.receiver")

CONSUMER_PREFIX = "consumer:"


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


class Dispatcher:
    """Runs until stopped; see the module docstring for the rules."""

    def __init__(
        self,
        router: Router,
        inbox: Inbox,
        *,
        policy: DispatchPolicy = DispatchPolicy(),  # noqa: B008 - frozen
        confirmation: Confirmation | None = None,
        consumers: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
    ):
        self.router = router
        self.inbox = inbox
        self.policy = policy
        self.confirmation = confirmation
        self.stopped = asyncio.Event()  # set once draining begins: consumers stop
        self.queues: dict[str, asyncio.Queue[Delivery]] = {c: asyncio.Queue() for c in consumers}
        self._consumers = [CONSUMER_PREFIX + name for name in consumers]  # as handlers_done
        self.wake = asyncio.Event()
        self.backlog = Backlog(inbox, page=max(1000, 50 * policy.concurrency), wake=self.wake)
        self._later: list[tuple[float, str]] = []  # (when, key): first event awaits a retry
        self._running: set[str] = set()  # keys whose first event runs or is being recorded
        self._workers: list[asyncio.Task[None]] = []  # see run()
        self._waiting: deque[asyncio.Future[None]] = deque()  # idle workers
        self._recordings: set[asyncio.Task[None]] = set()
        self.pressure = BackPressure(policy)  # the receiver's answers wait on it
        self._stopping = False  # workers take no more events
        self._idle = asyncio.Event()  # set by the loop when nothing is left to do
        self._secrets = secrets  # masked in stored errors and log lines
        self._scan_failures = 0
        self._rng = random.Random()
        self._clock: Callable[[], float] = time.time
        self.recorder = Recorder(
            inbox,
            self.backlog,
            policy=policy,
            secrets=self._secrets,
            clock=lambda: self._clock(),
            rng=self._rng,
        )

    def submit(self, stored: StoredEvent, event: Event | None = None) -> None:
        """Take a new pending event from the receiver (after it was stored), with the
        event it parsed from it (``stored.received_at`` as its ``received_at``)."""
        self.backlog.submit(stored, event)

    async def hold(self, gone: Callable[[], bool]) -> None:
        """Back-pressure on the receiver's answer to a postback it just stored (and
        submitted): :meth:`BackPressure.hold`; ``gone`` tells if its sender hung up."""
        await self.pressure.hold(self.backlog.waiting, gone)

    async def start(self) -> None:
        """Read what a previous run left pending, before new postbacks arrive."""
        self.pressure.start()
        await self.backlog.start()

    async def _sweep_step(self) -> float:
        """Run a sweep step unless there is no room for anything it could find; when
        the next one is due."""
        if self.backlog.behind and self.backlog.full:
            return self._clock() + SWEEP_WAIT
        try:
            wait = await self.backlog.scan()
        except Exception as exc:  # e.g. the file is locked or gone for a moment
            self._scan_failures += 1
            delay = self.recorder.backoff(self._scan_failures)
            logger.error(
                "the dispatcher could not read the inbox (attempt %d: %s); trying again in %.1f s",
                self._scan_failures,
                printable(error_text(exc)),
                delay,
            )
            return self._clock() + delay
        self._scan_failures = 0
        return self._clock() + wait

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """The dispatch loop (cancel it to stop; running events are left to finish).

        ``concurrency`` workers run the handlers; this loop reads the inbox, moves
        retries that came due back in line, and wakes idle workers."""
        loop = asyncio.get_running_loop()
        for _ in range(self.policy.concurrency):
            worker = loop.create_task(self._work(), name="dokobit-dispatch")
            worker.add_done_callback(_log_failure)
            self._workers.append(worker)
        next_scan = self._clock() + (0.0 if self.backlog.behind else IDLE_POLL)  # after start()
        hooks = _telemetry.receiver
        unwatch = None if hooks is None else hooks.watch_backlog(self.backlog.size)
        try:
            while True:
                self.wake.clear()
                if self._clock() >= next_scan:
                    next_scan = await self._sweep_step()
                next_due = self._due()
                for _ in range(min(len(self.backlog.ready), len(self._waiting))):
                    self._waiting.popleft().set_result(None)
                if self._is_idle():
                    self._idle.set()
                until = next_scan if next_due is None else min(next_scan, next_due)
                await self._sleep_until_woken(until - self._clock())
        finally:
            self._stop_workers()
            if unwatch is not None:
                unwatch()

    def _is_idle(self) -> bool:
        return not self._running and not len(self.backlog) and not self.backlog.behind

    async def wait_idle(self) -> bool:
        """Wait until every event this dispatcher knows of is finished (done, dead
        or unconfirmed) and no sweep is catching up: nothing runs, nothing waits
        for a retry. Whether it got there: ``False`` when the dispatcher stopped
        first (draining begun)."""
        while not self._is_idle():
            if self.stopped.is_set():
                return False
            self._idle.clear()
            idle = asyncio.ensure_future(self._idle.wait())
            stopped = asyncio.ensure_future(self.stopped.wait())
            try:
                await asyncio.wait({idle, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()
                stopped.cancel()
        return True

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

    def _due(self) -> float | None:
        """Put the retries and the probe whose time has come back in line; when the
        next one is due."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            self.backlog.ready.append(heapq.heappop(self._later)[1])
        probe_at = self.recorder.next_probe(now)
        due = [t for t in (self._later[0][0] if self._later else None, probe_at) if t is not None]
        return min(due) if due else None

    def _take(self) -> tuple[str, StoredEvent] | None:
        """The first event of a ready queue that may start now, its signing marked as
        running (its next event waits until this one is recorded); None if none."""
        now = self._clock()
        ready = self.backlog.ready
        while ready:
            key = ready.popleft()
            queue = self.backlog.queues.get(key)
            if key in self._running or not queue:
                continue
            head = queue[0]
            if head.next_attempt_at > now:
                heapq.heappush(self._later, (head.next_attempt_at, key))
                continue
            if not self.recorder.may_start(key, head, now):
                continue  # held: the inbox cannot record outcomes now
            self._running.add(key)
            return key, head
        return None

    async def _work(self) -> None:
        """A worker: run the handlers of one ready event after another; hand each
        outcome to a recording task of its own and go on. The recording waits for a
        group commit; a worker does not, so cheap handlers are not held back by the
        commits of their own bookkeeping."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            taken = self._take()
            if taken is None:
                waiter = loop.create_future()
                self._waiting.append(waiter)
                await waiter
                continue
            key, stored = taken
            progress = self.recorder.progress.get(stored.id)
            if progress is None:
                progress = self.recorder.progress[stored.id] = Progress()
            try:
                if progress.outcome is None:
                    progress.outcome = await self._decide(stored, progress)
            except Exception as exc:  # a bug of ours: retried later
                self._settle(key, self.recorder.not_recorded(stored, progress, exc))
                continue
            except BaseException:  # cancelled (shutdown): it stays pending
                self._settle(key, stored)
                raise
            recording = loop.create_task(self._record(key, stored, progress))
            self._recordings.add(recording)
            recording.add_done_callback(self._recordings.discard)
            recording.add_done_callback(_log_failure)

    async def _record(self, key: str, stored: StoredEvent, progress: Progress) -> None:
        outcome = progress.outcome
        assert outcome is not None  # (decided by the worker that made this task)
        try:
            after = await self.recorder.record(stored, progress, outcome)
        except Exception as exc:  # the inbox cannot write (or a bug of ours): later
            after = self.recorder.not_recorded(stored, progress, exc)
        except BaseException:  # cancelled (shutdown): what succeeded is in progress
            self._settle(key, stored)
            raise
        if after is None:  # finished: done, dead, unconfirmed (or gone)
            self.recorder.progress.pop(stored.id, None)
        self._settle(key, after)  # first: whatever the telemetry does, the queue goes on
        if after is None and outcome.state == "dead" and (hooks := _telemetry.receiver):
            hooks.dead_letter(stored)

    def _settle(self, key: str, after: StoredEvent | None) -> None:
        """The first event of ``key`` is finished (``after`` is None) or stands as
        ``after``; the signing's queue may go on."""
        if key not in self._running:
            return
        self._running.discard(key)
        if after is None:
            self.backlog.finish(key)
            self.pressure.finished(self.backlog.waiting)
        else:
            self.backlog.update(key, after)
        if key in self.backlog.queues:
            self.backlog.ready.append(key)
        self.wake.set()

    def _stop_workers(self) -> None:
        """Idle workers stop now, busy ones after their event."""
        self._stopping = True
        while self._waiting:
            self._waiting.popleft().cancel()

    async def drain(self, timeout: float | None = None) -> None:
        """Let running events finish within ``timeout`` (default: the policy's
        ``shutdown_timeout``); cancel the rest (they stay pending in the inbox).
        Outcomes not yet recorded get one more try."""
        self.stopped.set()
        self._stop_workers()
        if timeout is None:
            timeout = self.policy.shutdown_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while busy := [t for t in (*self._workers, *self._recordings) if not t.done()]:
            if loop.time() >= deadline:
                left = len(self._running)
                for task in busy:
                    task.cancel()
                await asyncio.wait(busy, timeout=max(1.0, timeout))
                logger.warning("shutdown: %d events left in the inbox for the next start", left)
                break
            await asyncio.wait(busy, timeout=deadline - loop.time())
        await self.recorder.record_leftovers(deadline)

    # ------------------------------------------------------------ one event

    async def _decide(self, stored: StoredEvent, progress: Progress) -> Outcome:
        """Run what is left of the event (confirmation, handlers not yet done)."""
        try:
            event = self.backlog.parsed.pop(stored.id, None)
            if event is None:  # read from the inbox, or a retry
                received = datetime.fromtimestamp(stored.received_at, tz=timezone.utc)
                event = parse_postback(stored.body, stored.content_type, received_at=received)
            event = replayed(event, stored)
            if not (progress.confirmed or stored.replays) and self.confirmation is not None:
                tries, delay = self.policy.confirm_attempts, self.policy.confirm_delay
                try:  # (a replay was confirmed when it first ran: not asked again)
                    verdict = await confirm(self.confirmation, event, attempts=tries, delay=delay)
                except Exception as exc:  # the API (or your confirmation) failed: later
                    return self.recorder.failed(stored, f"confirmation failed: {error_text(exc)}")
                if verdict is False:
                    return Outcome("unconfirmed", unconfirmed(stored))
                progress.confirmed = True
            names = functools.partial(self.router.handlers_for, event)  # (asked on a replay)
            done = skipped_handlers(stored, names, self._consumers) | progress.succeeded
            handled = await self._dispatch(event, stored, done)
        except Exception as exc:  # a bug of ours: retried like a failed handler
            logger.exception("dispatching postback %s failed", printable(stored.action))
            return self.recorder.failed(stored, f"dispatcher: {error_text(exc)}")
        progress.succeeded.update(name for name, error in handled.items() if error is None)
        errors = [
            f"{name}: {error_text(error)}" for name, error in handled.items() if error is not None
        ]
        return self.recorder.failed(stored, "; ".join(errors)) if errors else Outcome("done")

    async def _dispatch(
        self, event: Event, stored: StoredEvent, done: frozenset[str]
    ) -> dict[str, BaseException | None]:
        waits: dict[str, Awaitable[BaseException | None]] = {}
        loop = asyncio.get_running_loop()
        for name, queue in self.queues.items():
            if CONSUMER_PREFIX + name in done:
                continue
            outcome: asyncio.Future[BaseException | None] = loop.create_future()
            await queue.put(Delivery(event, outcome))
            waits[CONSUMER_PREFIX + name] = outcome
        handled = await dispatch_attempt(
            self.router, event, stored, done, self.policy.max_attempts
        )
        for name, wait in waits.items():
            try:
                handled[name] = await asyncio.wait_for(wait, self.policy.ack_timeout)
            except asyncio.TimeoutError:
                limit = self.policy.ack_timeout
                handled[name] = TimeoutError(f"not acknowledged within {limit} s")
        return handled


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # a bug of ours
        logger.error("dispatch task failed: %s", printable(error_text(task.exception())))
