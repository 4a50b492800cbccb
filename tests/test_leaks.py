"""No error path of the client shows the access token, in any spelling
(``docs/architecture.md#no-secret-in-any-output``).

A loopback server echoes the token it received in every spelling a real server,
proxy or framework might use (raw, ``%2F``, ``%2f``, ``+``-form, as sent in the query,
JSON-escaped ``\\/``) into each kind of failure: error envelopes with field errors,
non-JSON bodies, undecodable answers, transport errors, download error envelopes,
redirects and refused URLs. Nothing of the token may be left in ``str``, ``repr``,
any attribute, ``errors``, ``body``, the chained errors, the formatted traceback, or
the log records of the ``dokobit_async`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from _loopback import loopback
from aiohttp import web

from dokobit_async import (
    APIError,
    DecodeError,
    DokobitClient,
    DokobitError,
    ExternalSigner,
    ForeignURLError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RedirectError,
    RetryPolicy,
    ServerError,
    SigningFile,
    TransportError,
    ValidationError,
)

TOKENS = [
    "Kq3vW/Zz8pQ+Rt5mJ=Yx2nL%Hb7cX",
    "Ab9Dk%2FGh4Jm/Np6Qr+St8Uv==",
    "Wx5Yz Ce3Fg/Ij7Kl+Mn1Op=Qs%7E",
]
PDF = b"%PDF-1.7\n%%EOF"


def fragments(token: str) -> list[str]:
    """Runs of 4+ letters and digits: what any spelling of ``token`` still shows."""
    return re.findall(r"[A-Za-z0-9]{4,}", token)


def echo_of(request_token: str, query_string: str) -> str:
    """The token in every spelling a server might send back."""
    quoted = quote(request_token, safe="")
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)
    return " | ".join(
        [
            request_token,
            quoted,
            lower,
            quote_plus(request_token, safe=""),
            quote(request_token),
            query_string,
            f"https://x.example/api/a.json?{query_string}",
        ]
    )


def envelope(token: str, echo: str, **extra: Any) -> dict[str, Any]:
    """An error envelope with the token in the message, the field errors (message,
    field, and a plain-string error), an extra key named by it, and nested values."""
    return {
        "status": "error",
        "message": f"Bad token {echo}",
        "code": 400,
        "errors": [
            {"message": f"m {echo}", "field": f"[{token}]", "error_code": 1},
            f"plain {echo}",
            {"message": 7, "field": ["x", token]},
        ],
        token: {"nested": [echo, {token: token}]},
        **extra,
    }


def json_body(data: Any, *, escape_slash: bool = False, status: int = 200) -> web.Response:
    text = json.dumps(data)
    if escape_slash:  # as PHP's json_encode writes it
        text = text.replace("/", "\\/")
    return web.Response(text=text, status=status, content_type="application/json")


Answer = Callable[[str, str], web.StreamResponse]


async def _create(dokobit: DokobitClient) -> Any:
    return await dokobit.external.create(
        name="Contract",
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="c.pdf")],
        signers=[ExternalSigner(external_id="s1", email="s1@example.com")],
    )


def _status(dokobit: DokobitClient) -> Awaitable[Any]:
    return dokobit.external.status("SIG1")


def _download(dokobit: DokobitClient) -> Awaitable[Any]:
    return dokobit.external.download("SIG1")


async def _open_file(dokobit: DokobitClient) -> Any:
    async with dokobit.open_file(f"{dokobit.base_url}/api/f.pdf") as download:
        return await download.read()


SCENARIOS: dict[str, tuple[Callable[[DokobitClient], Awaitable[Any]], Answer, type[Exception]]] = {
    "400-envelope": (
        _status,
        lambda t, e: json_body(envelope(t, e), status=400),
        ValidationError,
    ),
    "400-envelope-escaped-slash": (
        _create,
        lambda t, e: json_body(envelope(t, e), escape_slash=True, status=400),
        ValidationError,
    ),
    "200-status-error": (
        _create,
        lambda t, e: json_body(envelope(t, e, code=403), escape_slash=True),
        APIError,
    ),
    "429": (
        _status,
        lambda t, e: web.Response(
            status=429, headers={"Retry-After": "0"}, text=json.dumps(envelope(t, e))
        ),
        RateLimitedError,
    ),
    "500-html": (
        _create,
        lambda t, e: web.Response(status=500, text=f"<pre>{e}</pre>", content_type="text/html"),
        ServerError,
    ),
    "502-read-retried": (
        _status,
        lambda t, e: web.Response(status=502, text=f"Bad gateway {e}"),
        ServerError,
    ),
    "502-write": (
        _create,
        lambda t, e: json_body(envelope(t, e), escape_slash=True, status=502),
        OutcomeUnknownError,
    ),
    "200-not-json": (
        _status,
        lambda t, e: web.Response(text=f"Welcome {e}", content_type="text/html"),
        DecodeError,
    ),
    "200-undecodable": (
        _status,
        lambda t, e: json_body({"status": "ok", "signers": f"{e}", "files": 5}, escape_slash=True),
        DecodeError,
    ),
    "download-200-envelope": (
        _download,
        lambda t, e: json_body(envelope(t, e, code=404), escape_slash=True),
        NotFoundError,
    ),
    "download-404": (
        _open_file,
        lambda t, e: web.Response(status=404, text=json.dumps(envelope(t, e, code=404))),
        NotFoundError,
    ),
    "redirect": (
        _status,
        lambda t, e: web.Response(
            status=302,
            headers={"Location": f"http://evil.example:9/{quote(t)}?access_token={quote(t)}"},
            text=e,
        ),
        RedirectError,
    ),
}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of the library's logger, down to DEBUG."""
    caplog.set_level(logging.DEBUG, logger="dokobit_async")
    return caplog


def client_for(token: str, base_url: str) -> DokobitClient:
    return DokobitClient(
        token,
        base_url=base_url,
        rate_limit=None,
        retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0),
    )


def everything_shown(exc: BaseException, logs: pytest.LogCaptureFixture) -> str:
    """All a user or a log could see of ``exc``: the formatted traceback, ``str`` and
    ``repr`` of it and of every chained error, every attribute, the field errors, the
    body serialized, and the log records."""
    texts = ["".join(traceback.format_exception(exc)), logs.text]
    texts += [record.getMessage() for record in logs.records]
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        texts += [str(item), repr(item), repr(item.args)]
        for value in vars(item).values():
            texts += [str(value), repr(value)]
        body = getattr(item, "body", None)
        if body is not None:
            texts += [json.dumps(body, default=repr), json.dumps(body, ensure_ascii=False)]
        for error in getattr(item, "errors", ()):
            texts += [str(error.message), str(error.field), repr(error)]
        todo += [item.__cause__, item.__context__]
    return "\n".join(texts)


def assert_nothing_of(token: str, shown: str) -> None:
    for piece in fragments(token):
        assert piece not in shown


@pytest.mark.parametrize("token", TOKENS, ids=["plain-pct", "pct2F", "space"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_no_error_path_shows_the_token(
    logs: pytest.LogCaptureFixture, scenario: str, token: str
) -> None:
    """Each failure, with the token echoed back in every spelling: nothing of it is
    left anywhere, while the masked echo (``***``) shows that it was there."""
    action, answer, expected = SCENARIOS[scenario]
    received: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        got = request.query["access_token"]
        received.append(got)
        return answer(got, echo_of(got, request.query_string))

    async with loopback(handler) as api, client_for(token, api.url) as dokobit:
        with pytest.raises(DokobitError) as caught:
            await action(dokobit)

    assert received
    assert set(received) == {token}
    assert isinstance(caught.value, expected)
    shown = everything_shown(caught.value, logs)
    assert "***" in shown
    assert_nothing_of(token, shown)


# ------------------------------------------------------------------ transport errors


@contextlib.asynccontextmanager
async def raw_server(reply: Callable[[bytes], bytes]) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that reads a request head and writes ``reply(head)``
    verbatim (not necessarily HTTP), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(reply(head))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def _bad_status_line(head: bytes) -> bytes:
    target = head.split(b" ")[1]
    return b"HTTP/1.1 abc " + target + b"\r\n\r\n"


def _truncated(head: bytes) -> bytes:
    target = head.split(b" ")[1]
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 100000\r\n"
        b"X-Echo: " + target + b"\r\n\r\n%PDF-" + target
    )


@pytest.mark.parametrize("token", TOKENS, ids=["plain-pct", "pct2F", "space"])
@pytest.mark.parametrize(
    ("reply", "action"),
    [(_bad_status_line, _status), (_bad_status_line, _download), (_truncated, _download)],
    ids=["bad-status-line-read", "bad-status-line-download", "truncated-download"],
)
async def test_transport_errors_do_not_show_the_token(
    logs: pytest.LogCaptureFixture,
    token: str,
    reply: Callable[[bytes], bytes],
    action: Callable[[DokobitClient], Awaitable[Any]],
) -> None:
    """aiohttp's own error text carries the full URL (token included, as sent) and
    what the server wrote; our ``TransportError`` shows neither."""
    async with raw_server(reply) as base, client_for(token, base) as dokobit:
        with pytest.raises(TransportError) as caught:
            await action(dokobit)

    shown = everything_shown(caught.value, logs)
    assert "access_token=***" in shown
    assert_nothing_of(token, shown)


@pytest.mark.parametrize("token", TOKENS, ids=["plain-pct", "pct2F", "space"])
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/{q}/f.pdf?access_token={q}&again={p}",
        "https://beta.dokobit.com:{q}/f.pdf",
        "javascript:alert('{t}')",
        "https:beta.dokobit.com/{t}",
    ],
    ids=["foreign", "bad-port", "javascript", "no-slashes"],
)
async def test_refused_file_urls_do_not_show_the_token(
    logs: pytest.LogCaptureFixture, token: str, url: str
) -> None:
    """A file URL that is refused (foreign or malformed) is shown redacted."""
    url = url.format(t=token, q=quote(token, safe=""), p=quote_plus(token))
    async with DokobitClient(token, base_url="https://beta.dokobit.com") as dokobit:
        with pytest.raises(ForeignURLError) as caught:
            await dokobit.download_file(url)

    assert_nothing_of(token, everything_shown(caught.value, logs))
