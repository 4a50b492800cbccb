"""Errors of the right type, and inputs refused before sending
(``docs/architecture.md#a-call``), over a loopback host that records every request it gets.

* a malformed file URL is a ``ForeignURLError`` (never a bare ``ValueError``);
* a token of ``.``, ``..``, empty or blank is refused before anything is sent (it
  would turn ``/api/signing-external/../status.json`` into ``/api/status.json``);
* a write answered 502 or 504 by a gateway is an ``OutcomeUnknownError``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _loopback import loopback
from _receiver_helpers import start_receiver
from aiohttp import web

from dokobit_async import (
    DokobitClient,
    ExternalSigner,
    ForeignURLError,
    InternalSigner,
    InvalidArgumentError,
    OutcomeUnknownError,
    RetryPolicy,
    ServerError,
    SigningFile,
    TransportError,
)
from dokobit_async.events import is_valid_token, parse_postback
from dokobit_async.exceptions import InvalidPostbackError
from dokobit_async.inbox import MemoryInbox
from dokobit_async.routing import Router

TOKEN = "refusals-access-token"
PDF = b"%PDF-1.7\n%%EOF"


def client_for(base_url: str) -> DokobitClient:
    return DokobitClient(
        TOKEN, base_url=base_url, rate_limit=None, retry=RetryPolicy(base_delay=0, max_delay=0)
    )


# ------------------------------------------------------------------ malformed file URLs

MALFORMED = [
    "{base}:99999/api/f.pdf",
    "{base}:abc/api/f.pdf",
    "{scheme}:{host}/api/f.pdf",
    "{scheme}:/api/f.pdf",
    "javascript:alert(1)",
    "data:application/pdf;base64,JVBERi0=",
    "http://[::1/api/f.pdf",
    "{base}/api/f.pdf\r\nX-Injected: 1",
    "{base}/api/ f.pdf",
    "{base}\\@evil.example/api/f.pdf",
    "{base}/api/../../etc/passwd",
    "{base}/api/%2e%2e/%2E%2E/x",
    "api/f.pdf",
    "",
]


async def _open_file(dokobit: DokobitClient, url: str) -> bytes:
    async with dokobit.open_file(url) as download:
        return await download.read()


FETCHES: dict[str, Callable[[DokobitClient, str], Awaitable[Any]]] = {
    "download_file": lambda c, url: c.download_file(url),
    "open_file": _open_file,
}


@pytest.mark.parametrize("template", MALFORMED)
@pytest.mark.parametrize("how", ["download_file", "open_file"])
async def test_malformed_file_url_is_a_foreign_url_error(template: str, how: str) -> None:
    """A file URL that is not a well-formed http(s) URL under the API's base is
    refused as ``ForeignURLError`` (an ``InvalidArgumentError``), and nothing is sent."""
    async with loopback() as api, client_for(api.url) as dokobit:
        scheme, host = api.url.split("://")
        url = template.format(base=api.url, scheme=scheme, host=host)
        with pytest.raises(ForeignURLError) as caught:
            await FETCHES[how](dokobit, url)

    assert api.seen == []
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "template",
    ["{base}/api/files/{token}/signed.pdf", "{base}/api/file.pdf?note={token}"],
)
async def test_a_file_url_that_carries_the_token_elsewhere_is_refused(template: str) -> None:
    """A file URL with the access token anywhere but its ``access_token`` parameter
    is refused before sending: the call's ``Request``, which every error holds,
    never carries the token."""
    async with loopback() as api, client_for(api.url) as dokobit:
        with pytest.raises(ForeignURLError) as caught:
            await dokobit.download_file(template.format(base=api.url, token=TOKEN))
    assert api.seen == []
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.request)


async def test_a_well_formed_file_url_still_downloads() -> None:
    """The stricter check keeps the normal case working: absolute and relative URLs
    under the base, with an ``access_token`` in the URL replaced by ours."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"%PDF-file " + request.path.encode(), content_type="a/b")

    async with loopback(handler) as api, client_for(api.url) as dokobit:
        first = await dokobit.download_file(f"{api.url}/api/f.pdf?x=1&access_token=other")
        second = await dokobit.download_file("/api/g.pdf")

    assert (first, second) == (b"%PDF-file /api/f.pdf", b"%PDF-file /api/g.pdf")
    assert [s.target.split("?")[0] for s in api.seen] == ["/api/f.pdf", "/api/g.pdf"]
    assert all(s.target.count("access_token=") == 1 for s in api.seen)


# ------------------------------------------------------------------ dot tokens

BAD_TOKENS = [".", "..", "", "   ", " .. ", "\t.\n"]

CALLS: dict[str, Callable[[DokobitClient, str], Awaitable[Any]]] = {
    "external.status": lambda c, t: c.external.status(t),
    "internal.status": lambda c, t: c.internal.status(t),
    "external.download": lambda c, t: c.external.download(t),
    "internal.delete": lambda c, t: c.internal.delete(t),
    "external.update": lambda c, t: c.external.update(t, hard_deadline=True),
    "external.add_signers": lambda c, t: c.external.add_signers(
        t, [ExternalSigner(external_id="s", email="a@b.c")]
    ),
    "internal.add_signers": lambda c, t: c.internal.add_signers(
        t, [InternalSigner(external_id="s")]
    ),
    "remove_signers": lambda c, t: c.external.remove_signers(t, ["P1"]),
    "remove_signers-signer": lambda c, t: c.external.remove_signers("SIG1", [t]),
    "remind": lambda c, t: c.external.remind(t, "P1"),
    "remind-signer": lambda c, t: c.external.remind("SIG1", t),
    "seal": lambda c, t: c.seal(t),
    "validation.report": lambda c, t: c.validation.report(t, "report-pdf"),
}


@pytest.mark.parametrize("token", BAD_TOKENS)
@pytest.mark.parametrize("call", list(CALLS))
async def test_dot_or_blank_token_is_refused_before_sending(call: str, token: str) -> None:
    """``status("..")`` would call ``GET /api/status.json``: every action that puts a
    token in a path (or names a signer) refuses it, and no request leaves."""
    async with loopback() as api, client_for(api.url) as dokobit:
        with pytest.raises(InvalidArgumentError):
            await CALLS[call](dokobit, token)

    assert api.seen == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("SIG1", True),
        ("a.b", True),
        ("...", True),
        (".a", True),
        ("a/..", True),  # quoted to a%2F.. : one segment, not a dot segment
        ("%2e%2e", True),  # quoted to %252e%252e
        (".", False),
        ("..", False),
        ("", False),
        ("  ", False),
        (" .. ", False),
        (None, False),
        (12, False),
    ],
)
def test_is_valid_token(value: Any, valid: bool) -> None:
    """The pure predicate the receiver shares: a non-blank string that is not a dot
    segment."""
    assert is_valid_token(value) is valid


@pytest.mark.parametrize("token", [".", "..", " .. ", "   "])
async def test_a_postback_whose_token_is_a_dot_segment_is_refused(token: str) -> None:
    """The receiver treats such a token as invalid input: 400 with a one-line reason,
    nothing stored, nothing dispatched (a handler would pass it to ``status()``)."""
    body = json.dumps({"action": "signing_completed", "token": token}).encode()
    with pytest.raises(InvalidPostbackError, match="token"):
        parse_postback(body, "application/json")
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(Router(), inbox=inbox)
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=body) as answer:
            assert answer.status == 400
            assert "token" in await answer.text()
        assert await inbox.counts() == dict.fromkeys(["dead", "done", "pending", "unconfirmed"], 0)
    finally:
        await runner.cleanup()


async def test_tokens_that_look_like_paths_stay_one_segment() -> None:
    """Tokens with ``/``, ``%2e`` or dots around other text are sent as one quoted
    segment: the request stays under ``/api/signing-external/``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async with loopback(handler) as api, client_for(api.url) as dokobit:
        for token in ["a/..", "%2e%2e", "...", "../x"]:
            await dokobit.external.delete(token)

    targets = [s.target.split("?")[0] for s in api.seen]
    assert targets == [
        "/api/signing-external/a%2F../delete.json",
        "/api/signing-external/%252e%252e/delete.json",
        "/api/signing-external/.../delete.json",
        "/api/signing-external/..%2Fx/delete.json",
    ]


# ------------------------------------------------------------------ 502/504 on writes


async def _create(dokobit: DokobitClient) -> Any:
    return await dokobit.external.create(
        name="Contract", type="pdf", files=[SigningFile.from_bytes(PDF, name="c.pdf")]
    )


WRITES: dict[str, Callable[[DokobitClient], Awaitable[Any]]] = {
    "create": _create,
    "add_signers": lambda c: c.external.add_signers(
        "SIG1", [ExternalSigner(external_id="s", email="a@b.c")]
    ),
    "remind": lambda c: c.external.remind("SIG1", "P1"),
    "seal": lambda c: c.seal("SIG1"),
}


def answering(status: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=f"<h1>{status} from the gateway</h1>")

    return handler


@pytest.mark.parametrize("status", [502, 504])
@pytest.mark.parametrize("write", list(WRITES))
async def test_gateway_502_or_504_on_a_write_is_outcome_unknown(write: str, status: int) -> None:
    """A gateway may have passed the write on before failing: the outcome is unknown,
    as for a dropped connection. One request, never repeated; ``status`` is kept."""
    async with loopback(answering(status)) as api, client_for(api.url) as dokobit:
        with pytest.raises(OutcomeUnknownError) as caught:
            await WRITES[write](dokobit)

    assert len(api.seen) == 1
    error = caught.value
    assert isinstance(error, TransportError)
    assert error.status == status
    assert error.method == "POST"
    assert error.url.endswith("access_token=***")
    assert str(status) in str(error)
    assert "check the state" in str(error)
    assert isinstance(error.__cause__, ServerError)
    assert error.__cause__.status == status


@pytest.mark.parametrize("status", [500, 503])
async def test_500_or_503_on_a_write_stays_a_server_error(status: int) -> None:
    """The API itself answered (500) or refused to start (503): a ``ServerError``."""
    async with loopback(answering(status)) as api, client_for(api.url) as dokobit:
        with pytest.raises(ServerError) as caught:
            await _create(dokobit)

    assert len(api.seen) == 1
    assert caught.value.status == status


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_502_or_504_on_a_read_is_retried_then_a_server_error(status: int) -> None:
    """Reads are safe to repeat: retried, and a ``ServerError`` when retries run out."""
    async with loopback(answering(status)) as api:
        dokobit = DokobitClient(
            TOKEN,
            base_url=api.url,
            rate_limit=None,
            retry=RetryPolicy(max_attempts=3, base_delay=0, max_delay=0),
        )
        async with dokobit:
            with pytest.raises(ServerError):
                await dokobit.external.status("SIG1")

    assert len(api.seen) == 3
