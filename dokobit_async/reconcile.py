"""Missed-postback reconciliation: poll tracked signings, store what never arrived.

A postback lost for good (a receiver down for longer than Dokobit's retries last, a
wrong URL) is gone: Dokobit's postbacks carry no id, and nothing resends them. The
:class:`Reconciler` asks the status of each tracked signing on a :class:`Schedule`;
when the answer shows a change (a participant signed or declined, the signing
completed), it rebuilds the postback Dokobit would have sent and stores it the way a
received one is stored (parse, :func:`~dokobit_async.events.event_key`, the inbox, the
dispatcher). The guarantees (``docs/architecture.md#reconciliation``):

* **once per success, whichever path comes first**: the rebuilt postback has the
  real one's dedupe key, so the inbox stores one of the two and a handler runs once;
  ``event.via`` tells which came first (``"postback"`` or ``"reconciler"``).
* **a bounded share of the budget**: every status call goes through the client (its
  rate limit) and first through the reconciler's own limit, ``share`` of the
  client's, so polling never takes more than that share of the token's calls.
* **one poller per signing at a time**: the tracker hands a due signing to one
  caller, with a lease (across processes with ``SQLiteTracker`` on one file or
  ``dokobit_async.redis.RedisTracker``).

Set up in one line: ``DokobitClient(token, tracker=SQLiteTracker("postbacks.db"))``
tracks every signing the client creates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import attrs

from . import _actions, _telemetry
from ._reconcile_bodies import missed_postbacks, seen_signers
from ._redact import error_text, printable, shown_token
from ._tracker import MemoryTracker, Schedule, TrackedSigning, Tracker
from ._tracker_sqlite import SQLiteTracker
from .events import inbox_fields, parse_postback
from .exceptions import DokobitError, InvalidArgumentError, NotFoundError
from .inbox import Inbox
from .ratelimit import Limiter, RateLimit
from .receiver import PostbackReceiver

if TYPE_CHECKING:
    from .client import DokobitClient
    from .models import SigningStatus

__all__ = [
    "MemoryTracker",
    "Reconciler",
    "SQLiteTracker",
    "Schedule",
    "TrackedSigning",
    "Tracker",
]

logger = logging.getLogger("dokobit_async.reconcile")

_JSON = "application/json"


class Reconciler:
    """Polls the status of tracked signings and stores the postbacks that never came.

    ``await reconciler.poll_due()`` looks at every signing due now (one batch);
    ``await reconciler.run()`` does so until cancelled, waiting ``idle`` seconds
    whenever nothing is due.

    Args:
        client: Asks the status (through its rate limit); the client that created
            the signings, or one with the same access token.
        sink: Where rebuilt postbacks go: the ``PostbackReceiver`` of this process
            (stored and dispatched at once), or an ``Inbox`` that workers elsewhere
            dispatch from (a ``RedisInbox``; opened and closed by you).
        tracker: The tracked signings (the client's ``tracker``); its ``schedule``
            says when to look.
        share: The part of the client's rate limit that polling may take (0 to 1;
            default 0.2: 20 of 100 calls a minute).
        batch: How many due signings one :meth:`poll_due` takes at most.
        lease: Seconds a claimed signing stays this reconciler's; a look that takes
            longer (a long wait for the budget) may be repeated by another one.
        idle: Seconds :meth:`run` waits when nothing was due.
        clock: The time in Unix seconds (for tests).

    Raises:
        InvalidArgumentError: ``share`` not in (0, 1], or ``batch``, ``lease`` or
            ``idle`` not positive.
    """

    def __init__(
        self,
        client: DokobitClient,
        sink: PostbackReceiver | Inbox,
        tracker: Tracker,
        *,
        share: float = 0.2,
        batch: int = 10,
        lease: float = 300.0,
        idle: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < share <= 1:
            raise InvalidArgumentError(f"share must be above 0 and at most 1, not {share!r}")
        if batch < 1 or not lease > 0 or not idle > 0:
            raise InvalidArgumentError("batch, lease and idle must be positive")
        self.client = client
        self.sink = sink
        self.tracker = tracker
        self.share = share
        self.batch = batch
        self.lease = lease
        self.idle = idle
        self._clock = clock
        self._budget: RateLimit | None = None
        if client.rate_limit is not None:
            calls = max(1, int(client.rate_limit.calls * share))
            self._budget = attrs.evolve(client.rate_limit, calls=calls, burst=None)

    def __repr__(self) -> str:
        return f"<Reconciler share={self.share} tracker={self.tracker!r}>"

    @property
    def budget(self) -> RateLimit | None:
        """The reconciler's own limit: ``share`` of the client's (``None`` when the
        client has none)."""
        return self._budget

    async def run(self) -> None:
        """Poll due signings until cancelled: a failing look, or a tracker that fails
        (a database or Redis away), is logged and tried again after ``idle``."""
        while True:
            try:
                looked = await self.poll_due()
            except Exception as exc:
                logger.error("reconciler: the tracker failed: %s", printable(error_text(exc)))
                looked = 0
            if looked < self.batch:
                await asyncio.sleep(self.idle)

    async def poll_due(self) -> int:
        """Look at the signings due now (at most ``batch``); how many were looked at."""
        await self.tracker.open()
        due = await self.tracker.claim(self._clock(), self.batch, self.lease)
        looks = await asyncio.gather(*(self._look(s) for s in due), return_exceptions=True)
        for signing, failed in zip(due, looks, strict=True):
            if isinstance(failed, Exception):  # the tracker's update: its lease ends
                shown = shown_token(signing.token)
                logger.error("look at %s failed: %s", shown, printable(error_text(failed)))
            elif isinstance(failed, BaseException):
                raise failed
        return len(due)

    async def aclose(self) -> None:
        """Release the budget's resources (a ``RedisRateLimit``'s client) and close
        the tracker."""
        closing = getattr(self._budget, "aclose", None)
        if closing is not None:
            await closing()
        await self.tracker.close()

    # ---------------------------------------------------------------- internals

    async def _look(self, signing: TrackedSigning) -> None:
        hooks = _telemetry.receiver  # (None: nothing is recorded)
        if hooks is None:
            await self._looked(signing)
            return
        with hooks.poll(signing.token, signing.flow) as span:  # the status call inside it
            outcome, missed = await self._looked(signing)
            span.looked(outcome, missed=missed)

    async def _looked(self, signing: TrackedSigning) -> tuple[str, int]:
        """One look: ``(outcome, missed postbacks stored)``."""
        shown = shown_token(signing.token)
        try:
            status = await self._status(signing)
        except NotFoundError:
            logger.info("signing %s is gone (404): no longer tracked", shown)
            await self.tracker.forget(signing.token)
            return "gone", 0
        except DokobitError as exc:
            logger.warning("status of signing %s failed: %s", shown, printable(error_text(exc)))
            await self._next(signing, signing.status, signing.signers)
            return "failed", 0
        missed = 0
        try:
            for body in missed_postbacks(
                signing.token,
                status,
                last_status=signing.status,
                last_signers=signing.signers,
                file_url=self._file_url(signing),
            ):
                if await self._store(json.dumps(body).encode()):
                    missed += 1
                    logger.info("missed postback %s for %s stored", body["action"], shown)
        except Exception as exc:  # the inbox failed: the lease ends, the look is redone
            logger.error("postbacks for %s not stored: %s", shown, printable(error_text(exc)))
            return "not_stored", missed
        final = str(status.status) in self.tracker.schedule.final
        if final or self._clock() - signing.created_at >= self.tracker.schedule.max_age:
            why = f"status {printable(str(status.status))}" if final else "too old"
            logger.info("signing %s no longer tracked: %s", shown, why)
            await self.tracker.forget(signing.token)
            return "final", missed
        await self._next(signing, str(status.status), seen_signers(status))
        return ("changed" if missed else "unchanged"), missed

    async def _next(
        self, signing: TrackedSigning, status: str, signers: Mapping[str, str]
    ) -> None:
        polls = signing.polls + 1
        next_at = self._clock() + self.tracker.schedule.after(polls)
        changed = attrs.evolve(
            signing, polls=polls, next_at=next_at, status=status, signers=signers
        )
        await self.tracker.update(changed)

    async def _status(self, signing: TrackedSigning) -> SigningStatus:
        client = self.client
        signings = client.internal if signing.flow == "internal" else client.external
        async with self._spend():
            return await signings.status(signing.token)

    @asynccontextmanager
    async def _spend(self) -> AsyncIterator[None]:
        """Hold a slot of the reconciler's own limit around one status call."""
        limiter = self._limiter()
        if limiter is None:
            yield
            return
        await limiter.acquire()
        try:
            yield
        finally:
            limiter.release()

    def _limiter(self) -> Limiter | None:
        if self._budget is None:
            return None
        # keyed apart from the token's own limit: a hash of this, never the token
        return self._budget._limiter(f"reconciler\x00{self.client._token}")

    def _file_url(self, signing: TrackedSigning) -> str:
        flow: Literal["external", "internal"] = (
            "internal" if signing.flow == "internal" else "external"
        )
        return self.client.base_url + _actions.download(flow, signing.token).path

    async def _store(self, body: bytes) -> bool:
        if isinstance(self.sink, PostbackReceiver):
            return await self.sink.store(body, _JSON)
        event = parse_postback(body, _JSON)
        stored = await self.sink.add(
            **inbox_fields(event), body=body, content_type=_JSON, received_at=time.time()
        )
        return stored is not None
