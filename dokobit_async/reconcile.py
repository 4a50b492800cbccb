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
* **a bounded share of the budget**: every status call goes through the client's
  rate limit and first through the reconciler's own limit, ``share`` of the
  client's, and is one attempt (no retry inside the slot: the schedule looks again
  later), so polling never takes more than that share of the token's calls.
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
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import attrs

from . import _actions, _telemetry
from . import client as _client
from ._reconcile_bodies import missed_postbacks, seen_signers
from ._redact import error_text, printable, redact, shown_token
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
        client: Asks the status (through its rate limit and session, one attempt
            per look: a failed look is retried on the schedule); the client that
            created the signings, or one with the same access token.
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
        self._reader: DokobitClient | None = None
        if client.rate_limit is not None:
            calls = _budget_calls(client.rate_limit.calls, share)
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
                logger.error("reconciler: the tracker failed: %s", self._shown(exc))
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
                logger.error("look at %s failed: %s", shown, self._shown(failed))
            elif isinstance(failed, BaseException):
                raise failed
        return len(due)

    async def aclose(self) -> None:
        """Release the budget's resources (a ``RedisRateLimit``'s client) and close
        the tracker."""
        self._reader = None  # it borrowed the user client's session: nothing to close
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
            logger.warning("status of signing %s failed: %s", shown, self._shown(exc))
            if self._too_old(signing):  # a status that fails for ever ends too
                await self._drop(signing, "too old")
            else:
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
            logger.error("postbacks for %s not stored: %s", shown, self._shown(exc))
            return "not_stored", missed
        final = str(status.status) in self.tracker.schedule.final
        if final or self._too_old(signing):
            await self._drop(signing, f"status {status.status}" if final else "too old")
            return "final", missed
        await self._next(signing, str(status.status), seen_signers(status))
        return ("changed" if missed else "unchanged"), missed

    def _shown(self, exc: BaseException) -> str:
        """An error as a log line shows it: the access token masked in any spelling
        (a tracker's or an inbox's error may quote a URL with it), printable."""
        return printable(redact(error_text(exc), self.client._token))

    def _too_old(self, signing: TrackedSigning) -> bool:
        return self._clock() - signing.created_at >= self.tracker.schedule.max_age

    async def _drop(self, signing: TrackedSigning, why: str) -> None:
        logger.info("signing %s no longer tracked: %s", shown_token(signing.token), printable(why))
        await self.tracker.forget(signing.token)

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
        client = self._read_client()
        signings = client.internal if signing.flow == "internal" else client.external
        async with self._spend():
            return await signings.status(signing.token)

    def _read_client(self) -> DokobitClient:
        """The client that asks the status: the user's, but one attempt per call, so
        one slot of the budget is one call at the server (a 429 or 5xx is looked at
        again on the schedule). Its session and its token's limiter are the user
        client's (the rate limit shares one limiter per token in a loop)."""
        user = self.client
        session = user._get_session()  # a closed client: ClientClosedError, a failed look
        reader = self._reader
        if reader is None or reader._session is not session:
            reader = self._reader = _client.DokobitClient(
                user._token,
                base_url=user.base_url,
                session=session,
                rate_limit=user.rate_limit,
                retry=attrs.evolve(user.retry, max_attempts=1),
                timeout=user.timeout,
                body_encoding=user.body_encoding,
            )
        return reader

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


def _budget_calls(calls: int, share: float) -> int:
    """The reconciler's calls per period: ``share`` of ``calls``, at least one, rounded
    down without losing a call to floating error (``100 * 0.29`` is ``28.999...``)."""
    return max(1, math.floor(calls * share + 1e-9))
