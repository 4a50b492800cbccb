"""API calls never trust another host's answers (``docs/architecture.md#a-call``).

A JSON action never follows a redirect: every 3xx is a :class:`RedirectError`. A
download follows at most three, and only to the API's own origin, with the access
token re-added there and nowhere else. Each case runs against two loopback hosts: the
API, which answers the redirect, and "the other host", which records all it receives.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from _loopback import Host, loopback, self_signed
from aiohttp import web

from dokobit_async import (
    APIError,
    DokobitClient,
    ExternalSigner,
    RedirectError,
    RetryPolicy,
    SigningFile,
)
from dokobit_async._urls import origin_of, redirect_path

TOKEN = "Rd7Kq/Wz8pQ+Ab3Cd=Ef%9Gh"
PDF = b"%PDF-1.7\n" + b"personal-data-of-the-signer " * 8 + b"\n%%EOF"
EMAIL = "jane.doe.private@example.com"
CODES = [301, 302, 303, 307, 308]
SIGNED = b"%PDF-1.7 signed file bytes %%EOF"

Action = Callable[[DokobitClient], Awaitable[Any]]


async def _create(dokobit: DokobitClient) -> Any:
    return await dokobit.external.create(
        name="Contract",
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="c.pdf")],
        signers=[ExternalSigner(external_id="s1", email=EMAIL)],
    )


async def _open_download(dokobit: DokobitClient) -> bytes:
    async with dokobit.external.open_download("SIG1") as download:
        return await download.read()


ACTIONS: dict[str, Action] = {
    "status": lambda d: d.external.status("SIG1"),
    "create": _create,
    "download": lambda d: d.external.download("SIG1"),
    "open_download": _open_download,
    "download_file": lambda d: d.download_file(f"{d.base_url}/api/files/f.pdf?x=1"),
    "report": lambda d: d.validation.report("VAL1", "report-pdf"),
}
DOWNLOADS = ["download", "open_download", "download_file", "report"]


def redirect(status: int, location: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location}, text="moved")

    return handler


@pytest.fixture(params=["own", "borrowed"])
def session_kind(request: pytest.FixtureRequest) -> str:
    """The client's own session, or one borrowed from the caller."""
    return str(request.param)


@pytest.fixture
async def make_client(session_kind: str) -> AsyncIterator[Callable[[str], DokobitClient]]:
    """A client for a base URL: with its own session, or a borrowed one."""
    sessions: list[aiohttp.ClientSession] = []

    def make(base_url: str) -> DokobitClient:
        session = None
        if session_kind == "borrowed":
            session = aiohttp.ClientSession()
            sessions.append(session)
        return DokobitClient(
            TOKEN,
            base_url=base_url,
            session=session,
            rate_limit=None,
            retry=RetryPolicy(base_delay=0, max_delay=0),
        )

    yield make
    for session in sessions:
        await session.close()


def token_spellings() -> list[str]:
    """The token as any host could receive it: raw, percent-encoded, the query form."""
    quoted = quote(TOKEN, safe="")
    return [TOKEN, quoted, quoted.lower(), quote(TOKEN), "Rd7Kq", "Wz8pQ"]


def assert_nothing_reached(other: Host) -> None:
    """Not one request, hence no body and no token, arrived at the other host."""
    assert other.seen == []


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_redirect_to_another_host_is_an_error_and_sends_nothing_there(
    make_client: Callable[[str], DokobitClient], action: str, code: int
) -> None:
    """Every 30x to another host, for a read, a write and each kind of download:
    ``RedirectError`` naming the status and the other origin (never its path or
    query), nothing returned, and 0 requests (so 0 bodies, 0 tokens) at that host."""
    async with loopback() as other, loopback() as api:
        api.handler = redirect(code, f"{other.url}/steal/{TOKEN}?grab=me&access_token=x")
        async with make_client(api.url) as dokobit:
            with pytest.raises(RedirectError) as caught:
                await ACTIONS[action](dokobit)

    assert_nothing_reached(other)
    assert len(api.seen) == 1
    error = caught.value
    assert isinstance(error, APIError)
    assert error.status == code
    assert error.location_origin == other.url
    assert error.method == api.seen[0].method
    assert error.url.startswith(api.url)
    assert error.url.endswith("access_token=***")
    shown = f"{error} {error!r} {error.url} {error.location_origin}"
    assert str(code) in shown
    assert other.url in shown
    for leak in ["steal", "grab", *token_spellings()]:
        assert leak not in shown


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("action", ["status", "create"])
async def test_json_actions_do_not_follow_even_a_same_origin_redirect(
    make_client: Callable[[str], DokobitClient], action: str, code: int
) -> None:
    """A JSON action gets its answer from the URL it called, or fails: a redirect on
    the API's own host is not followed either (its answer could be anything)."""
    async with loopback() as api:
        api.handler = redirect(code, "/api/elsewhere.json")
        async with make_client(api.url) as dokobit:
            with pytest.raises(RedirectError) as caught:
                await ACTIONS[action](dokobit)

    assert [seen.target.split("?")[0] for seen in api.seen] == [api.seen[0].target.split("?")[0]]
    assert caught.value.location_origin == api.url


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("action", DOWNLOADS)
async def test_download_follows_a_same_origin_redirect_with_the_token(
    make_client: Callable[[str], DokobitClient], action: str, code: int
) -> None:
    """A download redirected within the API's origin is followed (a GET, the access
    token re-added once, any ``access_token`` in the Location dropped) and returns
    the file."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/api/files/moved.pdf":
            return web.Response(body=SIGNED, content_type="application/pdf")
        return web.Response(
            status=code,
            headers={"Location": "/api/files/moved.pdf?v=2&access_token=planted"},
        )

    async with loopback(handler) as api, make_client(api.url) as dokobit:
        result = await ACTIONS[action](dokobit)

    assert result == SIGNED
    assert len(api.seen) == 2
    hop = api.seen[1]
    assert hop.method == "GET"
    assert hop.body == b""
    assert hop.target.startswith("/api/files/moved.pdf?")
    assert parse_qs(urlsplit(hop.target).query) == {"v": ["2"], "access_token": [TOKEN]}


async def test_download_stops_after_three_redirects(
    make_client: Callable[[str], DokobitClient],
) -> None:
    """A redirect loop on the API's own origin ends after three hops (four requests)
    in a ``RedirectError``; nothing is written."""

    async def handler(request: web.Request) -> web.StreamResponse:
        hop = int(request.query.get("hop", "0"))
        return web.Response(status=302, headers={"Location": f"/api/loop?hop={hop + 1}"})

    async with loopback(handler) as api, make_client(api.url) as dokobit:
        with pytest.raises(RedirectError) as caught:
            await dokobit.external.download("SIG1")

    assert len(api.seen) == 4
    assert caught.value.status == 302
    assert "redirect" in str(caught.value)


@pytest.mark.parametrize("code", CODES)
async def test_download_redirect_out_of_the_base_path_is_refused(
    make_client: Callable[[str], DokobitClient], code: int
) -> None:
    """Same host, but outside the base URL's path: refused like another host."""
    async with loopback() as api:
        api.handler = redirect(code, "/other-app/file.pdf")
        async with make_client(f"{api.url}/dokobit") as dokobit:
            with pytest.raises(RedirectError):
                await dokobit.external.download("SIG1")

    assert len(api.seen) == 1


async def test_redirect_without_location_is_an_error(
    make_client: Callable[[str], DokobitClient],
) -> None:
    """A 3xx without a usable Location is a ``RedirectError`` too, never a success."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, text="{}")

    async with loopback(handler) as api, make_client(api.url) as dokobit:
        with pytest.raises(RedirectError) as caught:
            await dokobit.external.download("SIG1")

    assert caught.value.location_origin == ""
    assert len(api.seen) == 1


# ------------------------------------------------------------------ over TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return self_signed(Path(tmp_path_factory.mktemp("tls")))


async def test_https_download_follows_same_origin_and_never_downgrades(
    tls: tuple[Any, Any],
) -> None:
    """Over https (the real API): a same-origin redirect is followed; a redirect to
    http on the same host is a scheme downgrade and is refused before connecting."""
    server_ctx, client_ctx = tls

    async with loopback() as plain, loopback(ssl_context=server_ctx) as api:
        port = api.url.rsplit(":", 1)[1]

        async def handler(request: web.Request) -> web.StreamResponse:
            if request.path == "/api/files/moved.pdf":
                return web.Response(body=SIGNED, content_type="application/pdf")
            if request.path.endswith("/download"):
                return web.Response(status=302, headers={"Location": "/api/files/moved.pdf"})
            return web.Response(status=301, headers={"Location": f"{plain.url}/api/x?port={port}"})

        api.handler = handler
        connector = aiohttp.TCPConnector(ssl=client_ctx)
        async with aiohttp.ClientSession(connector=connector) as session:
            dokobit = DokobitClient(TOKEN, base_url=api.url, session=session, rate_limit=None)
            assert await dokobit.external.download("SIG1") == SIGNED
            with pytest.raises(RedirectError) as caught:
                await dokobit.validation.report("VAL1", "report-xml")

    assert len(api.seen) == 3
    assert caught.value.location_origin == plain.url
    assert plain.seen == []


# ------------------------------------------------------------------ the pure rules


@pytest.mark.parametrize(
    ("base", "current", "location", "path"),
    [
        ("https://h", "https://h/api/a", "/api/b?x=1", "/api/b?x=1"),
        ("https://h", "https://h/api/a", "b", "/api/b"),
        ("https://h", "https://h/api/a", "https://h/api/b", "/api/b"),
        ("https://h", "https://h/api/a", "https://h:443/api/b", "/api/b"),
        ("https://h", "https://h/api/a", "/api/b?access_token=old", "/api/b"),
        ("https://h", "https://h/api/a", "http://h/api/b", None),
        ("https://h", "https://h/api/a", "https://h:8443/api/b", None),
        ("https://h", "https://h/api/a", "https://evil/api/b", None),
        ("https://h", "https://h/api/a", "//evil/api/b", None),
        ("https://h", "https://h/api/a", "https://u:p@h/api/b", None),
        ("https://h/pre", "https://h/pre/api/a", "/other/b", None),
        ("https://h/pre", "https://h/pre/api/a", "/pre/api/../../etc/passwd", None),
        ("https://h/pre", "https://h/pre/api/a", "../../x", None),
        ("https://h", "https://h/api/a", "https://h:bad/api/b", None),
        ("https://h", "https://h/api/a", "javascript:alert(1)", None),
        ("https://h", "https://h/api/a", "", None),
        ("https://h", "https://h/api/a", None, None),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/a", "/api/b", "/api/b"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/a", "http://127.0.0.1/b", None),
    ],
)
def test_redirect_path_allows_only_the_api_origin(
    base: str, current: str, location: str | None, path: str | None
) -> None:
    """Only a Location on the base URL's own scheme, host, port and path is followed:
    an https API never follows to http; an http base (the emulator) stays on itself."""
    assert redirect_path(base, current, location) == path


@pytest.mark.parametrize(
    ("location", "origin"),
    [
        ("https://Evil.Example/steal?access_token=x", "https://evil.example"),
        ("http://127.0.0.1:9/x", "http://127.0.0.1:9"),
        ("https://user:pw@evil.example:8443/p", "https://evil.example:8443"),
        ("http://[::1]:81/p", "http://[::1]:81"),
        ("/relative/only", ""),
        ("https://evil:bad/x", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_origin_of_keeps_scheme_host_and_port_only(location: str | None, origin: str) -> None:
    """What a ``RedirectError`` shows of a Location: never user info, path or query."""
    assert origin_of(location) == origin
