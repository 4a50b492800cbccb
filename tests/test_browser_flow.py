"""The internal signing flow in a real browser: ``examples/internal_signing_app.py``
started as a user starts it (``--emulate --port 0``), driven in headless Chromium.

Every wait is bounded (Playwright's waits by ``_browser.WAIT_MS``, the app's start and
stop by ``START`` and ``STOP``); none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import attrs
import pytest
from _processes import kill_and_reap

if TYPE_CHECKING:
    from _browser import Traffic
    from playwright.async_api import Locator, Page
    from playwright.async_api._generated import LocatorAssertions

# the browser, page and traffic fixtures, which skip (saying how to get them) without
# Chromium or Playwright; the tests of the app in plain HTTP run everywhere
pytest_plugins = ["_browser"]

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "internal_signing_app.py"
START = 60.0  # seconds for the app to print its URL
STOP = 30.0  # seconds for the app to stop after SIGTERM
SIGNING_PAGE = re.compile(r"^(http://127\.0\.0\.1:\d+)/sign/([0-9a-f]{40})/([0-9a-f]{40})$")
# the emulator mints "emu_" + 40 hex characters; the app never shows it, so the
# test looks for its shape, and for any access_token parameter that is not masked
TOKEN_SHAPES = (re.compile(r"emu_[0-9a-f]{40}"), re.compile(r"access_token=(?!\*\*\*)[^&\s]"))


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's ``expect``, imported when a browser test runs."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


@attrs.frozen
class RunningApp:
    url: str
    """``http://127.0.0.1:PORT/`` as the app printed it."""
    inbox: Path
    log: Path
    """The app's stderr (its log lines)."""


@contextlib.asynccontextmanager
async def running_app(folder: Path) -> AsyncIterator[RunningApp]:
    """The example app on the emulator, as a user runs it; stopped with SIGTERM at
    the end, which must end it cleanly (exit status 0, "stopped")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    inbox, log = folder / "app" / "postbacks.db", folder / "app.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, str(APP), "--emulate", "--port", "0", "--inbox", str(inbox)),
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=folder,
        )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), START)).decode()
        match = re.fullmatch(r"serving (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, f"unexpected first line {line!r}; log: {log.read_text()}"
        yield RunningApp(url=match[1], inbox=inbox, log=log)
        os.kill(proc.pid, signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stdout.read(), STOP)).decode()
        assert await asyncio.wait_for(proc.wait(), STOP) == 0, log.read_text()
        assert rest == "stopped\n"
    finally:
        await kill_and_reap(proc)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[RunningApp]:
    """The example app, started as a user starts it (see :func:`running_app`)."""
    async with running_app(tmp_path) as running:
        yield running


@contextlib.contextmanager
def inbox_write_locked(path: Path) -> Iterator[None]:
    """Hold the inbox's write lock (as another writer would): while held, no postback
    can be stored, so none can reach a handler. The postbacks that waited are stored
    once it is released: at once within the inbox's 5 s busy timeout, else at the
    emulator's next attempt (the app's emulator retries after 0.3 s and 3.6 s)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.execute("COMMIT")
        connection.close()


async def open_signing_page(page: Page, app: RunningApp) -> tuple[str, str]:
    """From the app's first page to the emulator's signing page; returns its URL and
    the signer's token."""
    await page.goto(app.url)
    await page.get_by_role("button", name="Sign the agreement").click()
    await page.wait_for_url(SIGNING_PAGE)
    match = SIGNING_PAGE.match(page.url)
    assert match is not None
    assert f"{match[1]}/" != app.url  # the emulator, not the app
    return page.url, match[3]


async def sign_and_wait(page: Page, app: RunningApp) -> tuple[str, str]:
    """The whole flow up to "signed"; returns the signing page's URL and the signer."""
    signing_url, signer = await open_signing_page(page, app)
    await page.get_by_role("button", name="Sign", exact=True).click()
    await page.wait_for_url(re.compile(re.escape(app.url) + r"return/"))
    await expect(page.locator("#state")).to_have_text("signed")
    return signing_url, signer


async def test_signing_in_the_browser_shows_waiting_then_signed_and_serves_the_signed_pdf(
    page: Page, app: RunningApp
) -> None:
    """Sign the agreement → the emulator's signing page → Sign → back on the app's
    return page, which says "waiting" while the postback cannot have reached the
    handler (the inbox is write-locked, so it cannot even be stored), then "signed"
    once it has; its link downloads the PDF the handler fetched: the app's agreement
    plus the emulator's signature of this signer."""
    _, signer = await open_signing_page(page, app)
    with inbox_write_locked(app.inbox):
        await page.get_by_role("button", name="Sign", exact=True).click()
        await page.wait_for_url(re.compile(re.escape(app.url) + r"return/"))
        # held past the inbox's 5 s busy timeout on a slow machine, the store fails
        # (503) and the app's emulator sends the postback again 0.3 s and 3.6 s later
        await expect(page.locator("#state")).to_have_text("waiting", timeout=8_000)
        assert await page.locator("#download").count() == 0
    await expect(page.locator("#state")).to_have_text("signed")

    async with page.expect_download() as started:
        await page.locator("#download").click()
    download = await started.value
    assert download.suggested_filename == "signed-agreement.pdf"
    signed = Path(await download.path()).read_bytes()
    original = await (await page.request.get(f"{app.url}agreement.pdf")).body()
    assert original.startswith(b"%PDF-")
    assert signed.startswith(original)  # the emulator signs by an incremental update
    assert signed.count(b"%%EOF") == original.count(b"%%EOF") + 1
    assert b"(signature by " + signer.encode() in signed
    assert b"/Producer (dokobit-async emulator)" in signed


async def test_declining_in_the_browser_shows_declined_and_offers_no_download(
    page: Page, app: RunningApp
) -> None:
    """Decline on the signing page → back on the app's return page, which shows
    "declined" once the postback has reached the handler, with no download link;
    the download URL of that signing answers 404."""
    await open_signing_page(page, app)
    await page.get_by_role("button", name="Decline").click()
    await page.wait_for_url(re.compile(re.escape(app.url) + r"return/"))
    await expect(page.locator("#state")).to_have_text("declined")
    assert await page.locator("#download").count() == 0
    ref = page.url.split("/return/", 1)[1].split("?", 1)[0]
    answer = await page.request.get(f"{app.url}signed/{ref}")
    assert answer.status == 404


async def test_opening_the_signing_url_again_after_signing_says_already_signed(
    page: Page, app: RunningApp
) -> None:
    """After the flow, the signing URL opened again says the document is already
    signed and has no Sign (or any) button."""
    signing_url, _ = await sign_and_wait(page, app)
    await page.goto(signing_url)
    await expect(page.locator("#result")).to_have_text("You have already signed this document.")
    assert await page.get_by_role("button").count() == 0


async def test_no_access_token_in_anything_the_browser_loaded(
    page: Page, traffic: Traffic, app: RunningApp
) -> None:
    """Through signing, downloading, reopening the signing page and a decline in a
    second signing, no URL, header or body the browser loaded carries the access
    token (or any unmasked ``access_token`` parameter), nor does the app's log."""
    signing_url, _ = await sign_and_wait(page, app)
    async with page.expect_download():
        await page.locator("#download").click()
    await page.goto(signing_url)
    await open_signing_page(page, app)
    await page.get_by_role("button", name="Decline").click()
    await expect(page.locator("#state")).to_have_text("declined")
    await traffic.settle()

    bodies = [r for r in traffic.responses if r.body]
    assert len(traffic.requests) >= 8
    assert any(b"id='state'>signed" in (r.body or b"") for r in bodies)  # it saw the pages
    seen = [*traffic.texts(), app.log.read_text()]
    for shape in TOKEN_SHAPES:
        leaks = [text[:200] for text in seen if shape.search(text)]
        assert not leaks, leaks


STATE = re.compile(r"<p id='state'>(\w+)</p>")


async def flow_in_http(session: aiohttp.ClientSession, app: RunningApp, action: str) -> str:
    """The flow without a browser: POST the form and follow to the signing page, press
    ``action`` and follow back, then ask for news and reload as the page's script does
    until the page is no longer "waiting" (bounded by the caller). Returns the return
    page's URL."""
    async with session.post(f"{app.url}sign") as signing_page:
        assert SIGNING_PAGE.match(str(signing_page.url)), signing_page.url
    async with session.post(signing_page.url, data={"action": action}) as back:
        assert str(back.url).startswith(f"{app.url}return/")
        html = await back.text()
    while (state := STATE.search(html)) is not None and state[1] == "waiting":
        async with session.get(back.url, params={"wait": "1"}) as news:
            assert news.status == 200
        async with session.get(back.url) as reloaded:
            html = await reloaded.text()
    assert state is not None, html
    return f"{back.url}#{state[1]}"


async def test_the_app_in_plain_http_signs_and_serves_the_signed_pdf(app: RunningApp) -> None:
    """Without a browser too: the flow ends on "signed" and its link serves, as an
    attachment, the agreement plus the emulator's signature."""
    async with aiohttp.ClientSession() as session:
        ended = await asyncio.wait_for(flow_in_http(session, app, "sign"), 30)
        assert ended.endswith("#signed")
        ref = ended.split("/return/", 1)[1].split("#", 1)[0]
        async with session.get(f"{app.url}signed/{ref}") as answer:
            assert answer.status == 200
            assert answer.headers["Content-Disposition"] == (
                "attachment; filename=signed-agreement.pdf"
            )
            signed = await answer.read()
        async with session.get(f"{app.url}agreement.pdf") as answer:
            original = await answer.read()
    assert signed.startswith(original)
    assert signed.count(b"%%EOF") == original.count(b"%%EOF") + 1


async def test_the_app_in_plain_http_declines_and_refuses_unknown_references(
    app: RunningApp,
) -> None:
    """A decline ends on "declined" and its download is a 404 page; a return page or
    a download of a reference the app never made is a 404 page."""
    async with aiohttp.ClientSession() as session:
        ended = await asyncio.wait_for(flow_in_http(session, app, "decline"), 30)
        assert ended.endswith("#declined")
        ref = ended.split("/return/", 1)[1].split("#", 1)[0]
        for path in (f"signed/{ref}", "return/nope", "signed/nope"):
            async with session.get(f"{app.url}{path}") as answer:
                assert answer.status == 404, path
                assert answer.content_type == "text/html"


async def test_a_sigterm_as_soon_as_the_app_serves_ends_it_cleanly(tmp_path: Path) -> None:
    """SIGTERM the moment the URL line is out (a process manager may send it at any
    time): the app stops cleanly, with status 0 and "stopped", not killed by the
    signal."""
    async with running_app(tmp_path) as running:
        assert running.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "give --emulate, or set DOKOBIT_BASE_URL and DOKOBIT_ACCESS_TOKEN"),
        (
            [],
            {"DOKOBIT_BASE_URL": "https://beta.dokobit.com", "DOKOBIT_ACCESS_TOKEN": "t" * 40},
            "give --public-url (where Dokobit reaches you)",
        ),
    ],
)
def test_the_app_refuses_to_start_half_configured(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Against the real API the app needs the token, the base URL and where Dokobit
    reaches it; missing any, it stops at once with a usage error (and never shows
    the token)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    result = subprocess.run(
        [sys.executable, str(APP), *args],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "t" * 40 not in result.stdout + result.stderr


def test_a_failing_browser_test_leaves_a_screenshot_and_the_html(tmp_path: Path) -> None:
    """The fixture's failure hook, run for real in a child pytest: a failing test's
    tab is saved as PNG and HTML in the artifacts directory that its report names;
    a passing test saves nothing."""
    from _browser import chromium_executable

    chromium_executable()  # skips, saying how to get it, where there is none
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            pytest_plugins = ["_browser"]

            async def test_fails(page):
                await page.set_content("<h1>artifact probe</h1>")
                assert 1 == 2, "deliberate"

            async def test_passes(page):
                await page.set_content("<h1>no artifact</h1>")
            """
        )
    )
    artifacts = tmp_path / "artifacts"
    env = {
        **os.environ,
        "DOKOBIT_TEST_ARTIFACTS": str(artifacts),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", str(probe), "-p", "conftest"),
            *("-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "--rootdir", str(tmp_path)),
            *("-c", os.devnull, "-o", "asyncio_default_fixture_loop_scope=function"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    (folder,) = artifacts.iterdir()
    assert "test_fails" in folder.name
    assert f"saved in {folder}: tab0.png, tab0.html" in output
    assert (folder / "tab0.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "artifact probe" in (folder / "tab0.html").read_text()
