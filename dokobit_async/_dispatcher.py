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
import logging
import random
import time
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
IDLE_POLL = 1.0


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
    if isinstance(event, SigningCompleted):
        return status.status == "completed"
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
    ):
        self.router = router
        self.inbox = inbox
        self.client = client
        self.concurrency = concurrency
        self.retry = retry
        self.confirm_attempts = confirm_attempts
        self.confirm_delay = confirm_delay
        self.queues: dict[str, asyncio.Queue[Delivery]] = {c: asyncio.Queue() for c in consumers}
        self.wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # signing token -> its task
        self._rng = random.Random()
        self._clock: Callable[[], float] = time.time

    async def run(self) -> None:
        """The dispatch loop (cancel it to stop; running events are left to finish)."""
        while True:
            self.wake.clear()
            next_due = await self._start_due()
            # look again at least every IDLE_POLL seconds: another process (the
            # ``inbox retry`` command) may have put events back to pending
            timeout = IDLE_POLL if next_due is None else max(0.0, next_due - self._clock())
            timeout = min(timeout, IDLE_POLL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=timeout)

    async def _start_due(self) -> float | None:
        now = self._clock()
        next_due: float | None = None
        heads: dict[str, StoredEvent] = {}
        # the oldest pending events are enough to find every signing's head event
        # while the backlog is moderate; a larger backlog drains from the oldest on
        for stored in await self.inbox.pending(limit=max(1000, 50 * self.concurrency)):
            heads.setdefault(stored.signing_token or stored.id, stored)
        for key, stored in heads.items():
            if key in self._tasks or len(self._tasks) >= self.concurrency:
                continue
            if stored.next_attempt_at > now:
                next_due = min(next_due or stored.next_attempt_at, stored.next_attempt_at)
                continue
            task = asyncio.create_task(self._process(stored), name=f"dokobit-dispatch-{key[:6]}")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        return next_due

    def _finished(self, key: str, _: object = None) -> None:
        self._tasks.pop(key, None)
        self.wake.set()

    async def drain(self, timeout: float) -> None:
        """Let running events finish within ``timeout``; cancel the rest (they stay
        pending in the inbox)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, running = await asyncio.wait(tasks, timeout=timeout)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
            logger.warning(
                "shutdown: %d events left in the inbox for the next start", len(running)
            )

    async def _process(self, stored: StoredEvent) -> None:
        try:
            await self._handle(stored)
        except Exception as exc:  # a bug of ours: keep the event, retry it later
            logger.exception("dispatching postback %s failed", stored.action)
            await self.inbox.record_failure(
                stored.id,
                error=f"dispatcher: {type(exc).__name__}: {exc}",
                next_attempt_at=self._clock() + self.retry.backoff(stored.attempts + 1),
            )

    async def _handle(self, stored: StoredEvent) -> None:
        received = datetime.fromtimestamp(stored.received_at, tz=timezone.utc)
        event = parse_postback(stored.body, stored.content_type, received_at=received)
        shown = shown_token(event.token)
        try:
            confirmed = await self._confirmed(event)
        except DokobitError as exc:
            await self._failed(stored, event, f"confirmation failed: {exc}")
            return
        if confirmed is False:
            await self.inbox.set_state(
                stored.id, "unconfirmed", error="the API does not confirm this event"
            )
            logger.warning(
                "postback %s for %s kept aside: the API does not confirm it", event.action, shown
            )
            return
        outcome = await self._dispatch(event, stored.handlers_done)
        errors = []
        for name, error in outcome.items():
            if error is None:
                await self.inbox.mark_handler_done(stored.id, name)
            else:
                errors.append(f"{name}: {type(error).__name__}: {error}")
        if errors:
            await self._failed(stored, event, "; ".join(errors))
        else:
            await self.inbox.set_state(stored.id, "done")

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
            handled[name] = await wait
        return handled

    async def _failed(self, stored: StoredEvent, event: Event, error: str) -> None:
        attempts = stored.attempts + 1
        delay = self.retry.backoff(attempts, self._rng)
        attempts = await self.inbox.record_failure(
            stored.id, error=error, next_attempt_at=self._clock() + delay
        )
        shown = shown_token(event.token)
        if attempts >= self.retry.max_attempts:
            await self.inbox.set_state(stored.id, "dead", error=error)
            logger.warning(
                "postback %s for %s dead-lettered after %d attempts: %s",
                event.action,
                shown,
                attempts,
                error,
            )
        else:
            logger.warning(
                "postback %s for %s failed (attempt %d), retrying in %.1f s: %s",
                event.action,
                shown,
                attempts,
                delay,
                error,
            )
