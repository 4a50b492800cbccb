"""The dead-letter console (``dokobit-async console``), run as a user runs it: the
command in a subprocess over a real SQLite file (and once over a real Redis), the URL
read from the line it prints, driven in headless Chromium and over plain HTTP.

Every wait is bounded (Playwright's by ``_browser.WAIT_MS``, the command's start and
stop by ``START`` and ``STOP``); none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import attrs
import pytest
from _processes import kill_and_reap
from aiohttp import web
from test_inbox_traceparent import schema_of
from test_redact import spellings
from test_replay import older_file
from yarl import URL

from dokobit_async._console import Console, new_key
from dokobit_async.cli import main
from dokobit_async.inbox import Inbox, InboxState, SQLiteInbox, StoredEvent

if TYPE_CHECKING:
    from _browser import Traffic
    from playwright.async_api import BrowserContext, Locator, Page
    from playwright.async_api._generated import LocatorAssertions

pytest_plugins = ["_browser"]

START = 60.0  # seconds for the command to print its URL
STOP = 30.0  # seconds for it to stop after SIGTERM
TOKEN = "Kq3vW/Zz8pQ+Rt5mJ=Yx2nL%Hb7cX"  # the access token, given to the console's env
SEGMENT = "0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
HOSTILE = '"><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
URL_LINE = re.compile(r"console: (http://127\.0\.0\.1:\d+)/\?key=([A-Za-z0-9_-]{43})\n")
SIGNING = "a" * 40


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's ``expect``, imported when a browser test runs."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


# ------------------------------------------------------------------ the inbox


async def add(
    box: Inbox, id: str, action: str, *, body: str = "{}", token: str = SIGNING, at: float = 0
) -> None:
    stored = await box.add(
        id=id,
        signing_token=token,
        action=action,
        body=body.encode(),
        content_type="application/json",
        received_at=at or time.time(),
        traceparent=HOSTILE[:60],
    )
    assert stored is not None


async def seed(box: Inbox) -> None:
    """A dead event with a hostile body and error (the token and a postback URL's
    secret in it), a done one, a pending one, an unconfirmed one, and an old one."""
    note = f"{TOKEN} {spellings(TOKEN)['percent']} https://x/dokobit/postback/{SEGMENT}"
    hostile_body = json.dumps(
        {"action": HOSTILE, "token": SIGNING, "note": f"{note} https://a/x?access_token={TOKEN}"}
    )
    await add(box, "dead1", HOSTILE, body=hostile_body)
    await box.record_attempt(
        "dead1", failed=True, state="dead", error=f"RuntimeError: {HOSTILE} {TOKEN} {SEGMENT}"
    )
    await add(box, "done1", "signing_completed", token="b" * 40)
    await box.record_attempt("done1", handlers_done=["archive"], state="done")
    await add(box, "pend1", "signer_signed", token="c" * 40)
    await add(box, "unconf1", "signing_created", token="d" * 40)
    await box.set_state("unconf1", "unconfirmed", error="confirmation failed")
    await add(box, "old1", "signing_archived", token="e" * 40, at=time.time() - 10 * 86400)
    await box.record_attempt("old1", handlers_done=["archive"], state="done")


@pytest.fixture
async def sqlite_inbox(tmp_path: Path) -> AsyncIterator[SQLiteInbox]:
    """A seeded SQLite inbox, open in the test (the console opens it too: WAL)."""
    async with SQLiteInbox(tmp_path / "postbacks.db") as box:
        await seed(box)
        yield box


# ------------------------------------------------------------------ the command


@attrs.frozen
class RunningConsole:
    base: str
    """``http://127.0.0.1:PORT`` as the command printed it."""
    key: str
    log: Path
    """The command's stderr."""

    @property
    def url(self) -> str:
        return f"{self.base}/?key={self.key}"


@contextlib.asynccontextmanager
async def running_console(
    folder: Path, inbox: str, *extra: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[RunningConsole]:
    """``dokobit-async console --inbox INBOX --port 0``, the access token (and ``env``)
    in its environment; stopped with SIGTERM at the end, which must end it with
    status 0."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    environ |= {"DOKOBIT_ACCESS_TOKEN": TOKEN, **(env or {})}
    log = folder / f"console-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "dokobit_async", "console", "--inbox", inbox, "--port", "0"]
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *command, *extra, stdout=subprocess.PIPE, stderr=stderr, env=environ, cwd=folder
        )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), START)).decode()
        match = URL_LINE.fullmatch(line)
        assert match, f"unexpected first line {line!r}; log: {log.read_text()}"
        yield RunningConsole(base=match[1], key=match[2], log=log)
        os.kill(proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), STOP) == 0, log.read_text()
    finally:
        await kill_and_reap(proc)


@pytest.fixture
async def console(tmp_path: Path, sqlite_inbox: SQLiteInbox) -> AsyncIterator[RunningConsole]:
    async with running_console(tmp_path, str(sqlite_inbox.path)) as running:
        yield running


def http() -> aiohttp.ClientSession:
    """A client that keeps the console's cookie (on an IP host), follows nothing."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def logged_in(session: aiohttp.ClientSession, running: RunningConsole) -> None:
    async with session.get(running.url, allow_redirects=False) as answer:
        assert answer.status == 303
        assert answer.headers["Location"] == "/"


async def csrf_of(session: aiohttp.ClientSession, running: RunningConsole, id: str) -> str:
    async with session.get(f"{running.base}/event", params={"id": id}) as answer:
        page = await answer.text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match[1]


HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def assert_secure(headers: Mapping[str, str]) -> None:
    """The console's security headers (written here independently of the code)."""
    for name, value in HEADERS.items():
        assert headers.get(name) == value, name
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    assert "unsafe-inline" not in csp


# ------------------------------------------------------------------ plain HTTP


async def test_nothing_is_served_without_the_key(
    console: RunningConsole, sqlite_inbox: SQLiteInbox
) -> None:
    """No key: 401; a wrong key or a forged cookie: 403; nothing of the inbox in
    either, and no write (a POST with a forged cookie leaves the dead event dead)."""
    async with http() as session:
        for path in ("/", "/event?id=dead1", "/?state=dead"):
            async with session.get(console.base + path, allow_redirects=False) as answer:
                assert answer.status == 401
                assert_secure(answer.headers)
                assert "dead1" not in await answer.text()
        async with session.post(
            f"{console.base}/event/retry", data={"id": "dead1"}, headers=_own(console)
        ) as answer:
            assert answer.status == 401
        wrong = "x" * len(console.key)
        async with session.get(f"{console.base}/?key={wrong}", allow_redirects=False) as answer:
            assert answer.status == 403
            assert "Set-Cookie" not in answer.headers
        cookie = (await _set_cookie(console)).split("=", 1)[0]  # the name is no secret
        forged = {cookie: "abc.def"}
        async with session.get(console.base + "/", cookies=forged) as answer:
            assert answer.status == 403
            assert "dead1" not in await answer.text()
        data = {"id": "dead1", "csrf": "x"}
        async with session.post(
            f"{console.base}/event/retry", data=data, cookies=forged, headers=_own(console)
        ) as answer:
            assert answer.status == 403
    assert await state_of(sqlite_inbox, "dead1") == "dead"


async def _set_cookie(running: RunningConsole) -> str:
    async with http() as session, session.get(running.url, allow_redirects=False) as answer:
        return answer.headers["Set-Cookie"]


def _own(running: RunningConsole) -> dict[str, str]:
    return {"Origin": running.base}


async def test_the_key_opens_a_strict_httponly_session_and_leaves_the_url(
    console: RunningConsole,
) -> None:
    """The key in the query sets an HttpOnly, SameSite=Strict session cookie that
    lasts 12 hours at most (cookies are not scoped by port: it must not outlive the
    day's work), and redirects to the same page without the key."""
    async with http() as session:
        async with session.get(console.url + "&state=dead", allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/?state=dead"
            cookie = answer.headers["Set-Cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert console.key not in cookie
            (morsel,) = SimpleCookie(cookie).values()
            assert 0 < int(morsel["max-age"]) <= 12 * 3600
            assert_secure(answer.headers)
        async with session.get(f"{console.base}/?state=dead") as answer:
            assert answer.status == 200
            assert_secure(answer.headers)
            assert "dead1" in await answer.text()
        async with session.get(f"{console.base}/?since=not-a-date") as answer:
            assert answer.status == 400


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/",
        "//evil.example",
        "///evil.example/x",
        "/\\evil.example/",
        "/%2F/evil.example",
    ],
)
async def test_the_key_never_redirects_off_site(console: RunningConsole, path: str) -> None:
    """A link to the console's address with a path that a browser reads as another
    host and the right key: the redirect that drops the key goes to a path with one
    leading slash. (A browser, by the WHATWG URL rules, drops tabs and newlines and
    reads any run of two or more ``/`` and ``\\`` at the start of a reference as the
    start of a host: ``//evil.example/``, ``/\\evil.example/``, ``////evil.example/``.)
    The session is set all the same."""
    async with http() as session:
        asked = URL(f"{console.base}{path}?key={console.key}&state=dead", encoded=True)
        async with session.get(asked, allow_redirects=False) as answer:
            assert answer.status == 303
            location = answer.headers["Location"]
        assert re.fullmatch(r"/(?![/\\])[^\t\n\r]*", location), location
        assert URL(location).query.get("state") == "dead"
        assert console.key not in location
        async with session.get(f"{console.base}/?state=dead") as answer:
            assert answer.status == 200


async def test_a_post_without_the_form_token_is_refused(
    console: RunningConsole, sqlite_inbox: SQLiteInbox
) -> None:
    """With the session cookie and the console's own Origin, but no or a wrong CSRF
    token: 403 and the event stays dead; with the page's token it moves (control)."""
    async with http() as session:
        await logged_in(session, console)
        for data in ({"id": "dead1"}, {"id": "dead1", "csrf": "A" * 43}):
            async with session.post(
                f"{console.base}/event/retry", data=data, headers=_own(console)
            ) as answer:
                assert answer.status == 403
        assert await state_of(sqlite_inbox, "dead1") == "dead"
        token = await csrf_of(session, console, "dead1")
        async with session.post(
            f"{console.base}/event/retry",
            data={"id": "dead1", "csrf": token},
            headers=_own(console),
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
    assert await state_of(sqlite_inbox, "dead1") == "pending"


async def test_a_post_from_another_origin_is_refused(
    console: RunningConsole, sqlite_inbox: SQLiteInbox
) -> None:
    """The session cookie and a valid CSRF token, but the Origin (or, without one, the
    Referer) of another page, or ``null``, or neither: 403, the event stays dead."""
    other = "http://127.0.0.1:1"
    async with http() as session:
        await logged_in(session, console)
        token = await csrf_of(session, console, "dead1")
        for headers in (
            {"Origin": other},
            {"Origin": "null"},
            {"Referer": f"{other}/page"},
            {"Referer": "/relative"},
            {},
        ):
            async with session.post(
                f"{console.base}/event/retry", data={"id": "dead1", "csrf": token}, headers=headers
            ) as answer:
                assert answer.status == 403, headers
    assert await state_of(sqlite_inbox, "dead1") == "dead"


async def test_the_key_is_never_logged(tmp_path: Path, sqlite_inbox: SQLiteInbox) -> None:
    """With ``-v`` (the access log on), requests carrying the key in the query and
    the Referer leave no trace of it in stderr."""
    async with (
        running_console(tmp_path, str(sqlite_inbox.path), "-v") as running,
        http() as session,
    ):
        headers = {"Referer": running.url}
        async with session.get(running.url, headers=headers) as answer:
            assert answer.status == 200
        async with session.get(f"{running.base}/event?key={running.key}&id=x") as answer:
            assert answer.status == 404
    log = running.log.read_text()
    assert "GET /?key=***" in log  # the access log ran, masked
    assert not any(spelled in log for spelled in spellings(running.key).values())


async def state_of(box: Inbox, id: str) -> str:
    stored = await box.get(id)
    assert stored is not None
    return stored.state


# ------------------------------------------------------------------ in the browser


async def open_console(page: Page, running: RunningConsole) -> None:
    """Open the printed URL: the console sets its cookie and drops the key."""
    await page.goto(running.url)
    assert page.url == f"{running.base}/"
    await expect(page.locator("#counts")).to_be_visible()


async def browse_and_repair(
    browser: BrowserContext, page: Page, running: RunningConsole, box: Inbox
) -> None:
    """List, filter, open, retry a dead event, replay a done one: the flow of the
    SQLite and the Redis test."""
    await open_console(page, running)
    cookies = await browser.cookies()
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"]
    assert cookies[0]["sameSite"] == "Strict"
    assert running.key not in cookies[0]["value"]
    counts = {s: page.locator(f'#counts td[data-state="{s}"]') for s in ("dead", "done")}
    await expect(counts["dead"]).to_have_text("1")
    await expect(counts["done"]).to_have_text("2")
    await expect(page.locator("tr.event")).to_have_count(5)
    # by arrival (seq), newest first
    await expect(page.locator("tr.event").first).to_have_attribute("data-id", "old1")
    await expect(page.locator("tr.event").last).to_have_attribute("data-id", "dead1")

    # filters: a state from the nav, then action, signing and time through the form
    await page.get_by_role("link", name="done", exact=True).first.click()
    await expect(page.locator("tr.event")).to_have_count(2)
    await page.locator('input[name="action"]').fill("COMPLETED")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr.event")).to_have_count(1)
    await expect(page.locator("tr.event")).to_have_attribute("data-id", "done1")
    await page.locator('select[name="state"]').select_option("")
    await page.locator('input[name="action"]').fill("")
    await page.locator('input[name="token"]').fill("ccc")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr.event")).to_have_attribute("data-id", "pend1")
    await expect(page.locator("tr.event")).to_have_count(1)
    await page.locator('input[name="token"]').fill("")
    week_ago = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 7 * 86400))
    await page.locator('input[name="until"]').fill(week_ago)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr.event")).to_have_attribute("data-id", "old1")
    await expect(page.locator("tr.event")).to_have_count(1)
    await expect(page.locator("#scope")).to_contain_text("filters by action, signing and time")

    # open the dead event, retry it: pending in the inbox
    await page.goto(f"{running.base}/?state=dead")
    await page.locator('tr.event[data-id="dead1"] a').click()
    await expect(page.locator("#f-state")).to_have_text("dead")
    await expect(page.locator("#f-failed-attempts")).to_have_text("1")
    await expect(page.get_by_role("button", name="Replay")).to_have_count(0)
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#message")).to_contain_text("pending again")
    await expect(page.locator("#f-state")).to_have_text("pending")
    assert await state_of(box, "dead1") == "pending"

    # open the done event, replay it: pending, replayed once
    await page.goto(f"{running.base}/event?id=done1")
    await expect(page.locator("#f-handlers-done")).to_have_text("archive")
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator("#message")).to_contain_text("Replayed")
    replayed = await box.get("done1")
    assert replayed is not None
    assert replayed.state == "pending"
    assert replayed.replays == 1
    await expect(page.locator("#f-replays")).to_have_text("1")


async def test_list_filter_open_retry_and_replay_over_sqlite(
    browser: BrowserContext, page: Page, console: RunningConsole, sqlite_inbox: SQLiteInbox
) -> None:
    """The whole flow; the pages' one inline style is allowed by the CSP (no
    violation reported), and their margins show it applied."""
    reported: list[str] = []
    page.on("console", lambda message: reported.append(message.text))
    await browse_and_repair(browser, page, console, sqlite_inbox)
    assert await page.evaluate("getComputedStyle(document.body).marginTop") != "8px"
    assert not [text for text in reported if "Content Security Policy" in text]


async def test_list_filter_open_retry_and_replay_over_redis(
    browser: BrowserContext, page: Page, tmp_path: Path, redis_url: str
) -> None:
    """The whole flow in Chromium over a real Redis server's inbox: the same pages,
    filters, retry of the dead event and replay of the done one as over SQLite."""
    from dokobit_async.redis import RedisInbox

    async with RedisInbox(redis_url) as box:
        await seed(box)
        async with running_console(tmp_path, redis_url) as running:
            await browse_and_repair(browser, page, running, box)


async def test_a_hostile_body_is_shown_as_text_with_no_secret(
    page: Page, traffic: Traffic, console: RunningConsole
) -> None:
    """The body, the action, the error and the traceparent carry markup and the
    access token (and a postback URL's secret): the page shows the markup as text
    (no element made of it, no script run) and nothing of the secrets, in any
    spelling, in any response the browser loaded."""
    await open_console(page, console)
    await expect(page.locator("tr.event").first).to_be_visible()
    await page.goto(f"{console.base}/event?id=dead1")
    await expect(page.locator("#body")).to_contain_text("<script>window.pwned=2</script>")
    await expect(page.locator("#f-action")).to_have_text(HOSTILE)
    await expect(page.locator("#f-last-error")).to_contain_text('"><img src=x')
    await expect(page.locator("#f-traceparent")).to_contain_text('"><img')
    await expect(page.locator("#f-signing-token")).to_have_text(SIGNING)
    assert await page.locator("img").count() == 0
    assert await page.locator("body script").count() == 0
    assert await page.evaluate("typeof window.pwned") == "undefined"
    await expect(page.locator("#body")).to_contain_text("access_token=***")
    await page.goto(f"{console.base}/?state=dead")  # the list shows the action and error
    await expect(page.locator("tr.event")).to_have_count(1)
    assert await page.locator("img").count() == 0
    await traffic.settle()
    seen = "\n".join(traffic.texts())
    assert "dead1" in seen  # the scan saw the pages
    for name, spelled in spellings(TOKEN).items():
        assert spelled not in seen, name
    assert SEGMENT not in seen
    assert console.key not in seen.replace(console.url, "")  # only the URL we opened


async def test_every_postback_secret_it_can_know_of_is_masked(tmp_path: Path) -> None:
    """A rotation under way: two secrets in ``$DOKOBIT_POSTBACK_SECRET`` (a comma and
    a space between them) and two lines of ``INBOX.secret`` (with a comment and a
    blank line, as ``listen`` reads it): an event's page masks each of the four on its
    own, in every spelling, where a body carries them."""
    in_env = ["env-secret-new-0123456789", "env-secret-old-0123456789"]
    in_file = ["file-secret-new-0123456789", "file-secret-old-0123456789"]
    path = tmp_path / "postbacks.db"
    kept = Path(f"{path}.secret")
    kept.write_text(f"# rotating: new first\n{in_file[0]}\n\n{in_file[1]}\n")
    kept.chmod(0o600)
    shown = [spelled for secret in in_env + in_file for spelled in spellings(secret).values()]
    async with SQLiteInbox(path) as box:
        await add(box, "rot1", "signer_signed", body=json.dumps({"notes": shown}))
    variable = {"DOKOBIT_POSTBACK_SECRET": ", ".join(in_env)}
    async with running_console(tmp_path, str(path), env=variable) as running, http() as session:
        await logged_in(session, running)
        async with session.get(f"{running.base}/event", params={"id": "rot1"}) as answer:
            assert answer.status == 200
            page = await answer.text()
    assert '<pre id="body">' in page
    assert "***" in page
    for secret in in_env + in_file:
        for name, spelled in spellings(secret).items():
            assert spelled not in page, (secret[:8], name)


async def test_a_form_on_another_origin_cannot_write(
    page: Page, console: RunningConsole, sqlite_inbox: SQLiteInbox
) -> None:
    """A page on another port of 127.0.0.1 (same site: the Strict cookie goes along)
    posts the console's own form, with a valid CSRF token even: refused (403) by the
    origin check, and the event stays dead."""
    await open_console(page, console)
    await page.goto(f"{console.base}/event?id=dead1")
    token = await page.locator('input[name="csrf"]').get_attribute("value")
    assert token
    form = (
        f'<form method="post" action="{console.base}/event/retry">'
        f'<input name="id" value="dead1"><input name="csrf" value="{token}">'
        "<button>go</button></form>"
    )

    async def hostile(request: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hostile)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        await page.goto(f"http://127.0.0.1:{port}/")
        async with page.expect_response(f"{console.base}/event/retry") as posted:
            await page.get_by_role("button", name="go").click()
        answer = await posted.value
        assert answer.status == 403
        sent = await answer.request.all_headers()
        assert "dokobit_console_" in sent.get("cookie", "")  # refused for its origin only
    finally:
        await runner.cleanup()
    assert await state_of(sqlite_inbox, "dead1") == "dead"


def test_an_inbox_that_is_not_there_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite would create an empty file: the console refuses instead (exit 2)."""
    missing = tmp_path / "nowhere.db"
    assert main(["console", "--inbox", str(missing), "--port", "0"]) == 2
    assert "no inbox at" in capsys.readouterr().err
    assert not missing.exists()


async def test_an_inbox_of_an_older_schema_is_refused_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    """A file of schema 2 (an older listener may serve it): the console exits 1 with
    one line that says to upgrade the listener first, before it serves anything, and
    the file keeps its version and columns (test_replay_cli.py: ``inbox``)."""
    path = older_file(tmp_path / "v2.db", 2)
    before = schema_of(path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    command = [sys.executable, "-m", "dokobit_async", "console", "--inbox", str(path)]
    proc = await asyncio.create_subprocess_exec(
        *command, "--port", "0", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), START)
    finally:
        await kill_and_reap(proc)
    assert (proc.returncode, out) == (1, b"")
    (line,) = err.decode().splitlines()
    assert "schema version 2, older than" in line
    assert "upgrade and restart the listener that serves it first" in line
    assert schema_of(path) == before


class CountingInbox(SQLiteInbox):
    """An SQLite inbox that records each ``list()`` call's limit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.limits: list[int] = []

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100, after_seq: int = 0
    ) -> list[StoredEvent]:
        self.limits.append(limit)
        return await super().list(state=state, limit=limit, after_seq=after_seq)


async def test_the_list_reads_a_bounded_number_of_rows(tmp_path: Path) -> None:
    """Filters the inbox lacks are applied over at most ``scan_limit`` rows, read
    ``page_size`` at a time, and the page says how many it looked at: 12 events,
    a limit of 5 in pages of 2: three reads (2, 2, 1) whatever the filter."""
    async with CountingInbox(tmp_path / "postbacks.db") as box:
        for number in range(12):
            await add(box, f"e{number:02}", "signer_signed")
        key = new_key()
        app = Console(box, key, scan_limit=5, page_size=2, shown_limit=3).app()
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with http() as session:
                async with session.get(f"{base}/?key={key}&action=signer") as answer:
                    page = await answer.text()
                assert box.limits == [2, 2, 1]
                assert "Looked at 5 events" in page
                assert "5 matched; the newest 3 are shown" in page
                assert re.findall(r'data-id="(e\d\d)"', page) == ["e04", "e03", "e02"]
                box.limits.clear()
                async with session.get(f"{base}/?action=nothing-matches") as answer:
                    assert "No events match." in await answer.text()
                assert box.limits == [2, 2, 1]
        finally:
            await runner.cleanup()
