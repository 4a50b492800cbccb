"""``DispatchPolicy``: how the receiver runs handlers. Pure, no I/O."""

from __future__ import annotations

import random
from typing import Any

import attrs

from .exceptions import InvalidArgumentError
from .retry import backoff_ceiling

__all__ = ["DispatchPolicy"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise InvalidArgumentError(f"{attribute.name} must be positive, not {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not value >= 0:
        raise InvalidArgumentError(f"{attribute.name} must be 0 or more, not {value!r}")


@attrs.frozen(kw_only=True)
class DispatchPolicy:
    """How the receiver runs handlers: how many at once, how often a failure is
    retried and how far apart, how confirmation against the API is retried, and how
    long it waits for a pipeline consumer and for running handlers at shutdown.

    Attributes:
        concurrency: Events whose handlers run at a time, across signings (the
            events of one signing are always handled one at a time, in order). An
            event whose handlers are done no longer counts while its outcome waits
            for a commit.
        max_attempts: Attempts at an event whose handlers fail, the first one
            included; then it is dead-lettered with its last error.
        base_delay: Seconds before the second attempt; the delay doubles with each
            attempt, up to ``max_delay``, and a random share of it is waited (full
            jitter), so that failing events do not retry in step.
        max_delay: The longest delay between two attempts, in seconds.
        confirm_attempts: Status reads that may contradict a postback before its
            event is set aside as ``unconfirmed`` (the API can lag the postback).
        confirm_delay: Seconds before the second read; it doubles with each read.
        ack_timeout: Seconds a pipeline consumer has to acknowledge a delivery
            before it counts as failed (``None``: no limit).
        shutdown_timeout: Seconds running handlers get to finish at shutdown; the
            rest stay pending in the inbox for the next start.
        high_water: Back-pressure: while more events than this are ready to run and
            not yet started (dispatch is behind its own answers), the receiver holds
            the answer to each new postback (already stored) until an event finishes,
            for at most ``max_ack_hold`` seconds; a sender that waits for its answers
            is slowed to the dispatch rate, so the backlog stays bounded. Never while
            dispatch finishes nothing (a hung handler): answers then go out at once.
            ``None``: never hold.
        max_ack_hold: The longest a held answer waits, in seconds (0: never hold);
            keep it well below the sender's timeout.
    """

    concurrency: int = attrs.field(default=16, validator=_positive)
    max_attempts: int = attrs.field(default=8, validator=_positive)
    base_delay: float = attrs.field(default=2.0, validator=_not_negative)
    max_delay: float = attrs.field(default=600.0, validator=_not_negative)
    confirm_attempts: int = attrs.field(default=4, validator=_positive)
    confirm_delay: float = attrs.field(default=2.0, validator=_not_negative)
    ack_timeout: float | None = attrs.field(default=300.0, validator=_positive)
    shutdown_timeout: float = attrs.field(default=10.0, validator=_not_negative)
    high_water: int | None = attrs.field(default=256, validator=_positive)
    max_ack_hold: float = attrs.field(default=1.0, validator=_not_negative)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The delay after failed attempt number ``attempt`` (1-based), jittered."""
        return rng.uniform(0.0, backoff_ceiling(attempt, self.base_delay, self.max_delay))
