"""The Hypothesis profiles (``tests/_profiles.py``): the default run draws the same
examples every time, and ``randomized`` draws new ones, ten times as many, chosen by
the environment or by pytest's option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_emulator_errors
import test_events
import test_receiver_fuzz
from _profiles import BASE_EXAMPLES, RANDOMIZED, RANDOMIZED_FACTOR, REPEATABLE
from hypothesis import settings

TESTS = Path(__file__).parent
ROOT = TESTS.parent
WAIT = 120.0  # seconds: the bound on each child process

# Draws 50 (scaled) integers through the suite's conftest and prints them as JSON.
DRAW = """
import json, sys
sys.path.insert(0, sys.argv[1])
import conftest  # registers and loads the profiles, as pytest does
from _profiles import examples
from hypothesis import given, settings, strategies as st

drawn = []

@settings(max_examples=examples(50))
@given(st.integers())
def draw(n):
    drawn.append(n)

draw()
print(json.dumps({"profile": settings.get_current_profile_name(), "drawn": drawn}))
"""


def draw(profile: str | None) -> tuple[str, list[int]]:
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    if profile is not None:
        env["HYPOTHESIS_PROFILE"] = profile
    done = subprocess.run(
        [sys.executable, "-c", DRAW, str(TESTS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=WAIT,
        check=True,
    )
    result = json.loads(done.stdout)
    return result["profile"], result["drawn"]


def test_the_default_profile_draws_the_same_examples_every_run() -> None:
    """Two runs without a profile draw the same examples, as many as asked."""
    first, second = draw(None), draw(None)
    assert first[0] == REPEATABLE
    assert first == second
    assert len(first[1]) == 50
    assert draw("") == first  # an empty variable is no profile


def test_the_randomized_profile_draws_new_and_more_examples() -> None:
    """``HYPOTHESIS_PROFILE=randomized`` multiplies the count, and each run differs."""
    first, second = draw(RANDOMIZED), draw(RANDOMIZED)
    assert first[0] == second[0] == RANDOMIZED
    assert len(first[1]) == len(second[1]) == 50 * RANDOMIZED_FACTOR
    assert first[1] != second[1]


def _settings_of(test: object) -> settings:
    found = getattr(test, "_hypothesis_internal_use_settings", None)
    assert isinstance(found, settings), test
    return found


@pytest.mark.parametrize(
    "effective",
    [
        _settings_of(test_events.test_arbitrary_bytes_parse_or_raise_invalid_postback),
        _settings_of(test_events.test_arbitrary_json_parses_or_raises_invalid_postback),
        _settings_of(test_events.test_arbitrary_form_bodies_parse_or_raise_invalid_postback),
        _settings_of(test_events.test_verify_never_raises_on_arbitrary_text),
        _settings_of(test_emulator_errors.test_random_requests_never_500),
        test_receiver_fuzz.fuzz_settings(300),
    ],
    ids=["events-bytes", "events-json", "events-form", "events-verify", "emulator", "fuzz"],
)
def test_every_property_test_follows_the_profile(effective: settings) -> None:
    """No property test overrides the profile's randomness or database: in this run
    (the repeatable profile unless one was asked for) each one is derandomized and
    writes no example database."""
    profile = settings.get_profile(settings.get_current_profile_name())
    assert effective.derandomize is profile.derandomize
    assert effective.database is None
    assert effective.print_blob is True
    if settings.get_current_profile_name() == REPEATABLE:
        assert effective.derandomize is True


def test_pytest_option_selects_the_profile_and_scales_the_counts() -> None:
    """``--hypothesis-profile=randomized`` (the Hypothesis pytest plugin) reaches the
    suite's own counts: a test of 500 examples runs 5000."""
    counts = {}
    for option in ([], [f"--hypothesis-profile={RANDOMIZED}"]):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=",
             "-q", "--hypothesis-show-statistics", *option,
             "tests/test_events.py::test_verify_never_raises_on_arbitrary_text"],
            capture_output=True, text=True, cwd=ROOT, timeout=WAIT,
            env={k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        counts[bool(option)] = done.stdout
    assert f"settings.max_examples={5 * BASE_EXAMPLES}\n" in counts[False]
    assert f"settings.max_examples={50 * BASE_EXAMPLES}\n" in counts[True]
