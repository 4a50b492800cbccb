"""The Hypothesis profiles of the test suite, and the example counts that follow them.

``repeatable`` (the default) runs the same examples on every run: derandomized, no
example database, today's example counts. ``randomized`` draws new examples on each
run, ten times as many, and on a failure prints the falsifying example and its
``@reproduce_failure`` blob. Select it with ``HYPOTHESIS_PROFILE=randomized`` or
pytest's ``--hypothesis-profile=randomized``. Pin each example it finds with
``@example`` so that the repeatable run keeps it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings

__all__ = ["BASE_EXAMPLES", "RANDOMIZED", "REPEATABLE", "examples", "register"]

REPEATABLE = "repeatable"
RANDOMIZED = "randomized"
BASE_EXAMPLES = 100  # the repeatable profile's max_examples, the unit of examples()
RANDOMIZED_FACTOR = 10


def register() -> None:
    """Register both profiles with Hypothesis."""
    common: dict[str, Any] = {
        "deadline": None,  # the property tests include loopback servers; time varies
        "database": None,  # no .hypothesis/ directory written into the checkout
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    }
    settings.register_profile(REPEATABLE, max_examples=BASE_EXAMPLES, derandomize=True, **common)
    settings.register_profile(
        RANDOMIZED,
        max_examples=BASE_EXAMPLES * RANDOMIZED_FACTOR,
        derandomize=False,
        **common,
    )


def examples(count: int) -> int:
    """``count`` examples under the repeatable profile, scaled by the loaded profile
    (``count * 10`` under ``randomized``). Use it in a test's own ``settings`` in
    place of a fixed ``max_examples``; it is read when the test module is imported,
    after the profile has been loaded."""
    current = settings.default
    assert current is not None
    return max(1, count * current.max_examples // BASE_EXAMPLES)
