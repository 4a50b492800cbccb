"""Pure retry decisions: ``(call, attempt, outcome) -> delay or stop``.

What may be retried (``docs/architecture.md#a-write-is-never-sent-twice``, and
``OutcomeUnknownError``):

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
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .exceptions import DokobitError

__all__ = ["Outcome", "RetryPolicy"]  # Failure is the client's, internal


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """``base`` doubled per failed attempt after the first (``attempt`` is 1-based), at
    most ``cap``: the ceiling every backoff here draws its jitter under. The exponent
    stops growing at 60, so no attempt number overflows a float."""
    return min(cap, base * 2.0 ** min(attempt - 1, 60))


class Outcome(enum.Enum):
    """What went wrong with one attempt."""

    NOT_SENT = "not sent"  #: connecting failed; the request never left
    LOST = "lost"  #: sent, but the answer never arrived (timeout, dropped)
    RATE_LIMITED = "rate limited"  #: HTTP 429
    UNAVAILABLE = "unavailable"  #: HTTP 500, 502, 503 or 504
    FINAL = "final"  #: anything else: an answer that retrying will not change


@attrs.frozen(kw_only=True)
class Failure:
    """One attempt at a call that gave no result: what the policy judges.

    Attributes:
        outcome: How far the request got.
        error: The error to raise if the call is not tried again (redacted, with its
            ``request`` set).
        retry_after: The seconds a 429's ``Retry-After`` asked for, if any.
        label: The attempt as the debug log shows it (``"503"``, ``"ClientOSError"``).
    """

    outcome: Outcome
    error: DokobitError
    retry_after: float | None = None
    label: str = ""


_RETRY_ALWAYS = {Outcome.NOT_SENT, Outcome.RATE_LIMITED}
_RETRY_IDEMPOTENT = {Outcome.LOST, Outcome.UNAVAILABLE}


def outcome_of_status(status: int) -> Outcome:
    """The :class:`Outcome` of an error HTTP status (429, 5xx, anything else)."""
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (500, 502, 503, 504):
        return Outcome.UNAVAILABLE
    return Outcome.FINAL


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry. ``RetryPolicy(max_attempts=1)`` turns retries
    off.

    Attributes:
        max_attempts: How many attempts at most, the first one included.
        base_delay: Seconds of the first backoff ceiling; it doubles per attempt up to
            ``max_delay``, and a random share of it is slept (full jitter).
        max_delay: The largest backoff ceiling, in seconds.
        deadline: No retry starts later than this many seconds after the first attempt.
    """

    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    deadline: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered sleep after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: The failed attempt's number, 1 for the first.
            rng: The random source (the ``random`` module's by default).

        Returns:
            Seconds, between 0 and the attempt's ceiling.
        """
        ceiling = backoff_ceiling(attempt, self.base_delay, self.max_delay)
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
        """Whether to try again after a failed attempt, and when.

        Args:
            idempotent: Whether the call may be repeated after its outcome became
                unknown.
            attempt: The failed attempt's number, 1 for the first.
            outcome: How far the failed attempt got.
            elapsed: Seconds since the first attempt started.
            retry_after: The seconds the server asked to wait, if it did.
            rng: The random source of the backoff.

        Returns:
            Seconds to wait before the next attempt, or ``None`` to stop.
        """
        if outcome not in _RETRY_ALWAYS and not (idempotent and outcome in _RETRY_IDEMPOTENT):
            return None
        if attempt >= self.max_attempts:
            return None
        delay = retry_after if retry_after is not None else self.backoff(attempt, rng)
        if elapsed + delay > self.deadline:
            return None
        return delay
