"""What a test needs from the machine (a ``redis-server``, a browser): skip without it,
with a reason that says how to get it, unless the run requires it.

``.ci/run`` installs every component and sets ``DOKOBIT_TESTS_REQUIRE`` to their names,
so that on CI a missing one fails the run instead of quietly skipping its tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "DOKOBIT_TESTS_REQUIRE"


def required(component: str) -> bool:
    """Whether this run must have ``component`` (named in ``DOKOBIT_TESTS_REQUIRE``)."""
    return component in os.environ.get(REQUIRE_ENV, "").replace(",", " ").split()


def unavailable(component: str, how_to_get_it: str) -> NoReturn:
    """Skip the calling test for want of ``component``, or fail it if the run
    requires it."""
    if required(component):
        pytest.fail(f"{component} is required by {REQUIRE_ENV} but missing: {how_to_get_it}")
    pytest.skip(how_to_get_it)
