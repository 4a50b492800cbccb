"""pytest plugin: ``dokobit_emulator`` and ``dokobit_client`` fixtures.

Registered through the ``pytest11`` entry point named ``dokobit_async``, so installing
dokobit-async is enough for a test suite to use them::

    async def test_signing(dokobit_client, dokobit_emulator):
        created = await dokobit_client.external.create(...)
        await dokobit_emulator.sign(created.token, created.signers[0].token)

Both fixtures are function-scoped and need an asyncio test runner (pytest-asyncio in
auto mode, or ``@pytest.mark.asyncio``). Override ``dokobit_emulator_config`` in your
``conftest.py`` to change the emulator's behaviour for a module or the whole suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

try:  # async fixtures work in pytest-asyncio's strict mode too
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - another async plugin runs the fixtures
    async_fixture = pytest.fixture  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..client import DokobitClient
    from ._emulator.config import EmulatorConfig
    from ._emulator.emulator import Emulator

# The emulator and the client are imported inside the fixtures, not here: pytest
# loads this plugin before coverage measurement starts, and a test run that never
# uses the fixtures should not pay for importing aiohttp.

__all__ = ["dokobit_client", "dokobit_emulator", "dokobit_emulator_config"]


@pytest.fixture
def dokobit_emulator_config() -> EmulatorConfig:
    """The emulator's settings: postback retries scaled to milliseconds."""
    from ._emulator.config import EmulatorConfig

    return EmulatorConfig(time_scale=0.0001)


@async_fixture
async def dokobit_emulator(dokobit_emulator_config: EmulatorConfig) -> AsyncIterator[Emulator]:
    """A running :class:`~dokobit_async.testing.Emulator` on 127.0.0.1."""
    from ._emulator.emulator import Emulator

    async with Emulator(config=dokobit_emulator_config) as emulator:
        yield emulator


@async_fixture
async def dokobit_client(dokobit_emulator: Emulator) -> AsyncIterator[DokobitClient]:
    """A :class:`~dokobit_async.DokobitClient` pointed at ``dokobit_emulator``, with a
    rate limit generous enough never to slow a test down."""
    from ..client import DokobitClient
    from ..ratelimit import RateLimit

    async with DokobitClient(
        dokobit_emulator.access_token,
        base_url=dokobit_emulator.base_url,
        rate_limit=RateLimit(calls=10_000, period=1.0),
    ) as client:
        yield client
