"""Headless Chromium for tests: Debian's ``chromium`` driven by Playwright's async API.

A test module turns these fixtures on with ``pytest_plugins = ["_browser"]``:

- ``browser``: a fresh Chromium (a new ``--user-data-dir`` in ``tmp_path``), as a
  Playwright ``BrowserContext``; every wait in it is bounded (15 s by default).
- ``page``: its first tab.
- ``traffic``: everything the browser loaded (:class:`Traffic`), for checks such as
  "no secret in any page".

The browser is found at ``$DOKOBIT_CHROMIUM``, else ``/usr/bin/chromium``, and is
never downloaded: ``playwright install`` fetches one from a host that is not
reachable here. Without the browser or Playwright the tests skip and say how to get
them. When a test fails, a screenshot and the HTML of each open tab are saved in
``$DOKOBIT_TEST_ARTIFACTS/<test>/`` (default ``.pytest-artifacts/`` at the root of the
repository), and the failure report names that directory. The report comes from the
``pytest_runtest_makereport`` hook in ``conftest.py``, which keeps each phase's
report on the test item as ``rep_setup``, ``rep_call`` and ``rep_teardown``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import pytest_asyncio
from _chromium import CHROMIUM_FLAGS, chromium_path
from _required import unavailable

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Response

WAIT_MS = 15_000
"""The default bound of every Playwright wait (navigation, locator, expect)."""


def chromium_executable() -> str:
    """Debian's Chromium (``$DOKOBIT_CHROMIUM`` or ``/usr/bin/chromium``), or a skip
    that says how to get it and Playwright."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable(
            "chromium",
            "Playwright for Python is not installed: pip install playwright "
            "(and apt-get install chromium; never `playwright install`)",
        )
    path = chromium_path()
    found = shutil.which(path)
    if found is None:
        unavailable(
            "chromium",
            f"no Chromium at {path}: apt-get install chromium (Debian's package; never "
            "`playwright install`), or point DOKOBIT_CHROMIUM at a Chromium binary",
        )
    return found


def artifacts_dir(item: pytest.Item) -> Path:
    """Where the screenshots of a failed ``item`` go."""
    root = os.environ.get("DOKOBIT_TEST_ARTIFACTS")
    base = Path(root) if root else item.config.rootpath / ".pytest-artifacts"
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[:150]


def failed_report(item: pytest.Item) -> pytest.TestReport | None:
    """The report of the phase that failed (set up or call), if one did."""
    for when in ("setup", "call"):
        report = getattr(item, f"rep_{when}", None)
        if isinstance(report, pytest.TestReport) and report.failed:
            return report
    return None


async def save_artifacts(context: BrowserContext, folder: Path) -> list[Path]:
    """A full-page screenshot and the HTML of every open tab of ``context``."""
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for number, tab in enumerate(context.pages):
        shot, html = folder / f"tab{number}.png", folder / f"tab{number}.html"
        try:
            await tab.screenshot(path=shot, full_page=True, timeout=5_000)
            html.write_text(f"<!-- {tab.url} -->\n{await tab.content()}", encoding="utf-8")
        except Exception as exc:  # a crashed tab: say so, keep what there is
            (folder / f"tab{number}.error.txt").write_text(repr(exc), encoding="utf-8")
        saved += [p for p in (shot, html) if p.exists()]
    return saved


@pytest_asyncio.fixture
async def browser(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium; on failure its tabs are saved (see the module)."""
    executable = chromium_executable()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=WAIT_MS)

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            accept_downloads=True,
        )
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        try:
            yield context
        finally:
            report = failed_report(request.node)
            if report is not None:
                folder = artifacts_dir(request.node)
                saved = await save_artifacts(context, folder)
                names = ", ".join(p.name for p in saved) or "nothing could be saved"
                report.sections.append(("browser artifacts", f"saved in {folder}: {names}"))
            await context.close()


@pytest_asyncio.fixture
async def page(browser: BrowserContext) -> Page:
    """The browser's first tab."""
    return browser.pages[0] if browser.pages else await browser.new_page()


@attrs.define
class Loaded:
    """One response the browser received."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes | None
    """``None`` where Chromium keeps no body (a redirect, a download)."""


@attrs.define
class Traffic:
    """Every request URL and response (headers, body) of one browser context."""

    requests: list[str] = attrs.field(factory=list)
    responses: list[Loaded] = attrs.field(factory=list)
    _reading: list[asyncio.Task[None]] = attrs.field(factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.requests.append(request.url))
        # (a lambda: Playwright sets attributes on a bound method's object, which
        # this slotted class has no room for)
        context.on("response", lambda response: self._reading.append(self._start(response)))

    def _start(self, response: Response) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._read(response))

    async def _read(self, response: Response) -> None:
        headers = await response.all_headers()
        try:
            body: bytes | None = await response.body()
        except Exception:  # Chromium keeps no body for redirects and downloads
            body = None
        self.responses.append(Loaded(response.url, response.status, headers, body))

    async def settle(self) -> None:
        """Wait until every response seen so far has been read."""
        await asyncio.gather(*self._reading)

    def texts(self) -> Iterator[str]:
        """Every URL, header and body seen, as text (bodies decoded leniently)."""
        yield from self.requests
        for loaded in self.responses:
            yield loaded.url
            yield from (f"{k}: {v}" for k, v in loaded.headers.items())
            if loaded.body is not None:
                yield loaded.body.decode("utf-8", "replace")


@pytest.fixture
def traffic(browser: BrowserContext) -> Traffic:
    """Records what ``browser`` loads from now on."""
    recorded = Traffic()
    recorded.attach(browser)
    return recorded
