"""Fixtures shared by the test modules."""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from _profiles import REPEATABLE, register
from _redis import RedisServer, running_redis
from aioresponses import aioresponses
from hypothesis import settings
from yarl import URL

# Property tests run the same examples on every run unless a profile is asked for:
# HYPOTHESIS_PROFILE=randomized here, or --hypothesis-profile=randomized, which the
# Hypothesis pytest plugin applies after this file has been imported.
register()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or REPEATABLE)


class _Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that
    aiohttp 3.14 requires (pnuckowski/aioresponses#289); supply a stand-in."""

    def __init__(self, method: str, url: URL, **kwargs: Any):
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """An ``aioresponses`` mock that works with the installed aiohttp."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr("aioresponses.core.ClientResponse", _Response)
    with aioresponses() as mock:
        yield mock


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real ``redis-server`` for the session (skips, saying how to get one, where
    none is installed)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, emptied (``FLUSHALL``) for this test."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item (``item.rep_setup``, ``rep_call``,
    ``rep_teardown``), for fixtures that act on a failure (``_browser.py`` saves
    screenshots)."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report
