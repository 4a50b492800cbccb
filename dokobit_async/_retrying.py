"""After each attempt of a call: its debug line, and what its failure leads to.

:func:`retry_delay` applies the :class:`~dokobit_async.retry.RetryPolicy` (a write
whose outcome is unknown is never resent) and turns a 429 into a pause of the token's
shared limiter (docs/architecture.md#the-rate-limit); :func:`log_attempt` writes the
attempt's debug line. Both redact the access token, and only when they show a line.
"""

from __future__ import annotations

import logging
import random

import aiohttp

from . import sansio
from ._redact import redact
from .ratelimit import Limiter
from .retry import Failure, Outcome, RetryPolicy

__all__ = ["log_attempt", "retry_delay"]

logger = logging.getLogger("dokobit_async")


def log_attempt(
    request: sansio.Request,
    answer: aiohttp.ClientResponse | Failure,
    seconds: float,
    attempt: int,
    secret: str,
) -> None:
    """One debug line per attempt: method, path, status (or failure), time (any wait
    for the rate limit included), attempt."""
    if not logger.isEnabledFor(logging.DEBUG):  # redacting costs; skip it unseen
        return
    logger.debug(
        "%s %s -> %s in %.1f ms (attempt %d)",
        request.method,
        redact(request.path, secret),
        answer.label if isinstance(answer, Failure) else answer.status,
        seconds * 1000,
        attempt,
    )


def retry_delay(
    retry: RetryPolicy,
    request: sansio.Request,
    failure: Failure,
    *,
    attempt: int,
    elapsed: float,
    limiter: Limiter | None,
    rng: random.Random,
    url: str,
    secret: str,
) -> float | None:
    """Seconds to sleep before the next attempt of ``request`` (its URL shown as
    ``url``, ``secret`` masked in the warning), or ``None`` to raise ``failure``.

    A 429 pauses the shared limiter instead (every call of the token waits it out in
    ``acquire``, this one too), so the sleep is then 0.
    """
    delay = retry.decide(
        idempotent=request.idempotent,
        attempt=attempt,
        outcome=failure.outcome,
        elapsed=elapsed,
        retry_after=failure.retry_after,
        rng=rng,
    )
    paused = False
    if failure.outcome is Outcome.RATE_LIMITED and limiter is not None:
        pause = failure.retry_after
        limiter.pause(pause if pause is not None else retry.backoff(attempt, rng))
        paused = True
    if delay is None:
        return None
    logger.warning(
        "retrying %s after %.2f s (attempt %d: %s)",
        redact(f"{request.method} {url}", secret),
        delay,
        attempt,
        failure.error,
    )
    return 0.0 if paused else delay
