"""Pure retry decisions: which outcomes are retried, for which calls, how long."""

from __future__ import annotations

import random

import pytest

from dokobit_async import DispatchPolicy
from dokobit_async.retry import Outcome, RetryPolicy, outcome_of_status

POLICY = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=3.0, deadline=20.0)


@pytest.mark.parametrize(
    ("outcome", "idempotent", "retried"),
    [
        (Outcome.NOT_SENT, False, True),
        (Outcome.NOT_SENT, True, True),
        (Outcome.RATE_LIMITED, False, True),
        (Outcome.RATE_LIMITED, True, True),
        (Outcome.LOST, True, True),
        (Outcome.LOST, False, False),
        (Outcome.UNAVAILABLE, True, True),
        (Outcome.UNAVAILABLE, False, False),
        (Outcome.FINAL, True, False),
        (Outcome.FINAL, False, False),
    ],
)
def test_which_outcomes_are_retried(outcome: Outcome, idempotent: bool, retried: bool) -> None:
    """Writes are retried only when the API certainly did nothing (not sent, 429)."""
    delay = POLICY.decide(idempotent=idempotent, attempt=1, outcome=outcome, elapsed=0.0)
    assert (delay is not None) is retried


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (429, Outcome.RATE_LIMITED),
        (502, Outcome.UNAVAILABLE),
        (503, Outcome.UNAVAILABLE),
        (504, Outcome.UNAVAILABLE),
        (500, Outcome.UNAVAILABLE),
        (400, Outcome.FINAL),
        (404, Outcome.FINAL),
    ],
)
def test_http_statuses_map_to_outcomes(status: int, outcome: Outcome) -> None:
    """5xx may be retried (for idempotent calls only, see above); 4xx never."""
    assert outcome_of_status(status) is outcome


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    """Attempt n sleeps uniformly in [0, min(cap, base * 2**(n-1))]."""
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 3.0), (6, 3.0)]:
        samples = [POLICY.backoff(attempt, rng) for _ in range(2000)]
        assert min(samples) >= 0.0
        assert max(samples) <= ceiling
        assert max(samples) > 0.9 * ceiling  # the whole range is used


def test_backoff_of_any_attempt_number_stays_under_the_cap() -> None:
    """A policy with many attempts never overflows: attempt 2,000 (2**1999 would raise
    ``OverflowError``) still sleeps at most the cap, as the receiver's handler and
    recording backoffs, which share the same ceiling."""
    many = RetryPolicy(max_attempts=5000, base_delay=1.0, max_delay=3.0)
    rng = random.Random(2)
    assert 0.0 <= many.backoff(2000, rng) <= 3.0
    assert 0.0 <= DispatchPolicy(max_delay=3.0).backoff(2000, rng) <= 3.0


def test_attempts_and_deadline_bound_the_retries() -> None:
    """No retry after ``max_attempts``, nor one that would end past the deadline."""
    assert POLICY.decide(idempotent=True, attempt=4, outcome=Outcome.LOST, elapsed=0) is None
    assert (
        POLICY.decide(
            idempotent=True, attempt=1, outcome=Outcome.RATE_LIMITED, elapsed=15.0, retry_after=6.0
        )
        is None
    )
    assert (
        POLICY.decide(
            idempotent=True, attempt=1, outcome=Outcome.RATE_LIMITED, elapsed=10.0, retry_after=6.0
        )
        == 6.0
    )


def test_retry_after_is_honoured_over_the_backoff() -> None:
    """A server-given Retry-After replaces the jittered backoff, even above the cap."""
    delay = POLICY.decide(
        idempotent=False, attempt=1, outcome=Outcome.RATE_LIMITED, elapsed=0.0, retry_after=7.5
    )
    assert delay == 7.5


def test_one_attempt_turns_retries_off() -> None:
    """``RetryPolicy(max_attempts=1)`` never retries."""
    policy = RetryPolicy(max_attempts=1)
    assert policy.decide(idempotent=True, attempt=1, outcome=Outcome.NOT_SENT, elapsed=0) is None
