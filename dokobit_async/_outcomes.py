"""Recording what dispatch did, and what happens when the inbox cannot record it.

Each attempt at an event ends in an :class:`Outcome` (done, dead, unconfirmed, or a
failed attempt to retry later) plus the handlers that succeeded, kept in the event's
:class:`Progress` until :meth:`Recorder.record` has written them: one write per
attempt (:meth:`~dokobit_async.inbox.Inbox.record_attempt`), so an event handled at
the first try costs the inbox one ``add`` and one write, nothing before its handlers
run.

When the inbox cannot write (a full disk, an I/O error, a lock held too long), the
*recording* is retried with exponential backoff (:meth:`Recorder.backoff`), one log
line per attempt, never the handlers: while the process lives, a success it
remembers is not run again, recorded or not. Until a write succeeds again, new
events wait (:meth:`Recorder.may_start`: their outcome could not be kept either),
but for one at a time, the *probe*, that goes ahead to find out whether writes work
again (what fails may belong to one event only). At shutdown, what is still
unrecorded gets one more try (:meth:`Recorder.record_leftovers`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable

import attrs

from ._backlog import Backlog
from ._policy import DispatchPolicy
from ._redact import error_text, printable, redact, shown_token
from .exceptions import EventNotFoundError, InboxError
from .inbox import Inbox, InboxState, StoredEvent
from .retry import backoff_ceiling

__all__ = [
    "ERROR_LIMIT",
    "RECORD_RETRY_BASE",
    "RECORD_RETRY_MAX",
    "Outcome",
    "Progress",
    "Recorder",
    "failed_attempt",
    "unconfirmed",
]

logger = logging.getLogger("dokobit_async.receiver")

RECORD_RETRY_BASE = 1.0  # seconds: first backoff after the inbox failed to write
RECORD_RETRY_MAX = 30.0  # seconds: the longest backoff between two write attempts
ERROR_LIMIT = 2000  # characters of an error kept in the inbox and shown in a log line


@attrs.frozen
class Outcome:
    """An attempt's result, to be recorded: a final ``state``, and/or a failed
    attempt (``failed``) to be retried at ``next_attempt_at``."""

    state: InboxState | None = None
    error: str | None = None
    failed: bool = False
    next_attempt_at: float = 0.0


@attrs.define
class Progress:
    """What this process knows of one event beyond its inbox row."""

    succeeded: set[str] = attrs.field(factory=set)  # handlers that succeeded here
    confirmed: bool = False  # the API confirmed it (not asked again)
    outcome: Outcome | None = None  # decided, not yet recorded
    write_failures: int = 0  # failed attempts to record ``outcome``


def unconfirmed(stored: StoredEvent) -> str:
    """An event the API keeps contradicting is set aside (one log line); the error
    to keep with it. Shared by the dispatcher and the Redis workers."""
    logger.warning(
        "postback %s for %s kept aside: the API does not confirm it",
        printable(stored.action),
        shown_token(stored.signing_token),
    )
    return "the API does not confirm this event"


def failed_attempt(
    stored: StoredEvent,
    error: str,
    *,
    policy: DispatchPolicy,
    secrets: tuple[str, ...],
    rng: random.Random,
) -> tuple[str, float | None]:
    """A failed attempt at ``stored`` (one log line): its error as it is kept, and the
    seconds until the next attempt, or ``None`` after the last one (dead letter).

    The error is kept as it is shown: secrets masked, printable, cut to
    ``ERROR_LIMIT`` (a handler's error may quote what a sender sent; stored raw, a lone
    surrogate in it would make the write fail every time). Shared by the dispatcher and
    the Redis workers."""
    error = printable(redact(error, secrets), ERROR_LIMIT)
    attempts = stored.attempts + 1
    shown = printable(stored.action), shown_token(stored.signing_token), attempts
    if attempts >= policy.max_attempts:
        logger.warning("postback %s for %s dead-lettered after %d attempts: %s", *shown, error)
        return error, None
    delay = policy.backoff(attempts, rng)
    logger.warning(
        "postback %s for %s failed (attempt %d), retrying in %.1f s: %s", *shown, delay, error
    )
    return error, delay


class Recorder:
    """Writes outcomes to ``inbox``; see the module docstring for the rules.

    ``backlog`` is where held events go back to when writes work again, ``policy``
    how failed attempts are retried, ``secrets`` what is masked in stored errors and
    log lines, ``clock`` the time of ``next_attempt_at``.
    """

    def __init__(
        self,
        inbox: Inbox,
        backlog: Backlog,
        *,
        policy: DispatchPolicy,
        secrets: tuple[str, ...],
        clock: Callable[[], float],
        rng: random.Random,
    ):
        self.inbox = inbox
        self.backlog = backlog
        self.policy = policy
        self.progress: dict[str, Progress] = {}  # id -> what the inbox may not know yet
        self.failing = False  # the last attempt to record an outcome failed
        self._secrets = secrets
        self._clock = clock
        self._rng = rng
        self._held: deque[str] = deque()  # keys kept back while the inbox cannot write
        self._probe: str | None = None  # a new event let through to try, until recorded
        self._probe_at = 0.0  # when the next one may go
        self._failures = 0  # writes failed in a row, across events

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failed inbox accesses:
        doubling from ``RECORD_RETRY_BASE`` up to ``RECORD_RETRY_MAX``, with jitter
        that never shortens it below half."""
        ceiling = backoff_ceiling(failures, RECORD_RETRY_BASE, RECORD_RETRY_MAX)
        return ceiling * self._rng.uniform(0.5, 1.0)

    def failed(self, stored: StoredEvent, error: str) -> Outcome:
        """A failed attempt: retried after a backoff, or dead after the last one
        (:func:`failed_attempt`)."""
        error, delay = failed_attempt(
            stored, error, policy=self.policy, secrets=self._secrets, rng=self._rng
        )
        if delay is None:
            return Outcome("dead", error, failed=True)
        return Outcome(None, error, failed=True, next_attempt_at=self._clock() + delay)

    # ------------------------------------------------------------ the gate

    def may_start(self, key: str, head: StoredEvent, now: float) -> bool:
        """Whether the first event of ``key`` may start; if not, it is held until
        writes work again (or its turn as the probe comes)."""
        progress = self.progress.get(head.id)
        if not self.failing or (progress is not None and progress.outcome is not None):
            return True  # (retrying a write is always allowed)
        if self._probe is not None or now < self._probe_at:
            self._held.append(key)
            return False
        self._probe = head.id
        return True

    def next_probe(self, now: float) -> float | None:
        """Put the next probe back in line if its time has come; when it will."""
        if not self._held or self._probe is not None:
            return None
        if now >= self._probe_at:
            self.backlog.ready.appendleft(self._held.popleft())
        return self._probe_at

    def _writes_work(self) -> None:
        self._failures = 0
        self._probe = None
        if self.failing:
            self.failing = False
            logger.warning("the inbox records outcomes again")
            self.backlog.ready.extend(self._held)
            self._held.clear()

    # ------------------------------------------------------------ writing

    async def record(
        self, stored: StoredEvent, progress: Progress, outcome: Outcome
    ) -> StoredEvent | None:
        """Write the outcome and the handlers that succeeded, in one write; the event
        as it now stands, or None when it is finished. Raises what the inbox raised."""
        new = progress.succeeded - stored.handlers_done
        try:
            attempts = await self.inbox.record_attempt(
                stored.id,
                handlers_done=new,
                failed=outcome.failed,
                next_attempt_at=outcome.next_attempt_at,
                state=outcome.state,
                error=outcome.error,
            )
        except EventNotFoundError:  # purged (or deleted by hand) while dispatched
            self._writes_work()
            logger.warning(
                "postback %s for %s left the inbox before its outcome was recorded",
                printable(stored.action),
                shown_token(stored.signing_token),
            )
            return None
        self._writes_work()
        progress.outcome = None
        progress.write_failures = 0
        progress.succeeded.clear()  # recorded: now in handlers_done
        if outcome.state is not None:
            return None
        return attrs.evolve(
            stored,
            attempts=attempts,
            last_error=outcome.error,
            next_attempt_at=outcome.next_attempt_at,
            handlers_done=stored.handlers_done | new,
        )

    def not_recorded(self, stored: StoredEvent, progress: Progress, exc: Exception) -> StoredEvent:
        """The inbox failed to record the outcome (or a bug of ours failed the event):
        back off, then retry what is left (the write), never what succeeded."""
        progress.write_failures += 1
        delay = self.backoff(progress.write_failures)
        if isinstance(exc, InboxError):
            self.failing = True
            self._failures += 1
            self._probe_at = self._clock() + self.backoff(self._failures)
            what = "the inbox could not record its outcome"
        else:
            logger.exception("dispatching postback %s failed", printable(stored.action))
            what = "it could not be finished"
        logger.error(
            "postback %s for %s: %s (attempt %d: %s); trying again in %.1f s, without "
            "running again the handlers that succeeded",
            printable(stored.action),
            shown_token(stored.signing_token),
            what,
            progress.write_failures,
            printable(redact(error_text(exc), self._secrets)),
            delay,
        )
        return attrs.evolve(stored, next_attempt_at=self._clock() + delay)

    async def record_leftovers(self, deadline: float) -> None:
        """At shutdown: one more try for the outcomes not yet recorded, until
        ``deadline`` (the loop's time)."""
        loop = asyncio.get_running_loop()
        lost = 0
        for queue in list(self.backlog.queues.values()):
            stored = queue[0]
            progress = self.progress.get(stored.id)
            if progress is None or progress.outcome is None:
                continue
            try:
                left = max(0.1, deadline - loop.time())
                await asyncio.wait_for(self.record(stored, progress, progress.outcome), left)
            except Exception:  # (the inbox still fails)
                lost += 1
        if lost:
            logger.warning(
                "shutdown: the outcomes of %d events could not be recorded; their handlers "
                "that succeeded will run again after the next start",
                lost,
            )
