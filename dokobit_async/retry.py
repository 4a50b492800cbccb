"""Pure retry decisions: ``(call, attempt, outcome) -> delay or stop``.

What may be retried (see the issue and ``OutcomeUnknownError``):

* the request never left (connection refused, connect timeout): every call;
* 429 Too Many Requests: every call (the API refused it, so nothing happened);
* a read timeout, a dropped connection, 500/502/503/504: idempotent calls only
  (status, downloads, reports, update, delete). A write whose answer was lost, or
  that failed with a 5xx, is never resent blindly: it could create a second signing.
  The client raises ``OutcomeUnknownError`` for a write whose answer was lost or came
  from a gateway (502, 504: it may have passed the request on), and ``ServerError``
  for a write answered 500 or 503;
* a redirect (3xx): never retried, and never followed by an API call (the client
  raises ``RedirectError``; downloads follow up to three on the API's own origin).

Delays are exponential with full jitter, capped per sleep, and the whole call has a
deadline. A server-given ``Retry-After`` is honoured as long as it fits the deadline.
"""

from __future__ import annotations

import enum
import random

import attrs

__all__ = ["Outcome", "RetryPolicy"]


class Outcome(enum.Enum):
    """What went wrong with one attempt."""

    NOT_SENT = "not sent"  #: connecting failed; the request never left
    LOST = "lost"  #: sent, but the answer never arrived (timeout, dropped)
    RATE_LIMITED = "rate limited"  #: HTTP 429
    UNAVAILABLE = "unavailable"  #: HTTP 500, 502, 503 or 504
    FINAL = "final"  #: anything else: an answer that retrying will not change


_RETRY_ALWAYS = {Outcome.NOT_SENT, Outcome.RATE_LIMITED}
_RETRY_IDEMPOTENT = {Outcome.LOST, Outcome.UNAVAILABLE}


def outcome_of_status(status: int) -> Outcome:
    """The :class:`Outcome` of an error HTTP status."""
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (500, 502, 503, 504):
        return Outcome.UNAVAILABLE
    return Outcome.FINAL


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry.

    ``max_attempts`` counts the first try; ``base_delay`` doubles per attempt up to
    ``max_delay`` and a random share of it is slept (full jitter); no retry starts
    after ``deadline`` seconds since the first attempt. ``RetryPolicy(max_attempts=1)``
    turns retries off.
    """

    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    deadline: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered sleep after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)

    def decide(
        self,
        *,
        idempotent: bool,
        attempt: int,
        outcome: Outcome,
        elapsed: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop."""
        if outcome not in _RETRY_ALWAYS and not (idempotent and outcome in _RETRY_IDEMPOTENT):
            return None
        if attempt >= self.max_attempts:
            return None
        delay = retry_after if retry_after is not None else self.backoff(attempt, rng)
        if elapsed + delay > self.deadline:
            return None
        return delay
