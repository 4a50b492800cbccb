"""The receiver's HTTP edges, over raw sockets on 127.0.0.1: Content-Encoding, the
Expect header, a sender that hangs up mid-body, wrong methods and paths.

Each case runs against the receiver's own application (``receiver.app()``, which
reads bodies undecoded and decodes them itself) and, where it applies, against a
receiver mounted into an application whose server decodes bodies (aiohttp's
default). Nothing a sender does may log an error or a traceback.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from _receiver_helpers import SECRET, postback, start_receiver
from aiohttp import web

from dokobit_async._serve import KEEPALIVE_TIMEOUT
from dokobit_async.inbox import MemoryInbox
from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger
from dokobit_async.routing import Router

WAIT = 10.0
LIMIT = 64 * 1024  # max_body_size


class Target:
    """Where a receiver listens: port, postback path, and its inbox."""

    def __init__(self, url: str, inbox: MemoryInbox):
        parts = urlsplit(url)
        assert parts.port is not None
        self.port = parts.port
        self.path = parts.path.encode()
        self.inbox = inbox

    async def stored(self) -> int:
        return len(await self.inbox.list(limit=10_000))


@pytest.fixture(params=["own", "mounted", "mounted-undecoded", "sub-application"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The receiver in its own application, or mounted into a plain one served with
    aiohttp's default (it decodes bodies) or with ``auto_decompress=False``, or its
    own application added as a sub-application of one served with the default (whose
    server settings win); the receiver tells them apart by the mark aiohttp leaves
    on a stream it decodes."""
    inbox = MemoryInbox()
    if request.param == "own":
        _, runner, url = await start_receiver(Router(), inbox=inbox, max_body_size=LIMIT)
    elif request.param == "sub-application":
        receiver = PostbackReceiver(Router(), inbox=inbox, secret=SECRET, max_body_size=LIMIT)
        outer = web.Application(client_max_size=LIMIT)
        outer.add_subapp("/hooks", receiver.app())
        runner = web.AppRunner(outer, access_log_class=RedactingAccessLogger)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = receiver.postback_url(f"http://127.0.0.1:{runner.addresses[0][1]}/hooks")
    else:
        receiver = PostbackReceiver(Router(), inbox=inbox, secret=SECRET, max_body_size=LIMIT)
        app = web.Application()
        receiver.setup(app)
        runner = web.AppRunner(
            app,
            access_log_class=RedactingAccessLogger,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
            auto_decompress=request.param == "mounted",
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = receiver.postback_url(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield Target(url, inbox)
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No record at ERROR or above and none with a traceback, from any logger."""
    with caplog.at_level(logging.DEBUG):
        yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert [f"{r.name}: {r.getMessage()}" for r in bad] == []


Response = tuple[int, dict[str, str], bool]  # status, headers, closed after it


async def send(port: int, raw: bytes, then: bytes | None = None) -> list[Response]:
    """Send ``raw`` on one connection and read its answer (past any 1xx); if the
    connection stays open, send ``then`` on it and read that answer too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers: list[Response] = []
    try:
        writer.write(raw)
        for following in (then, None):
            status, headers = await asyncio.wait_for(_response(reader), WAIT)
            closed = False
            if headers.get("connection", "").lower() == "close":
                closed = await asyncio.wait_for(reader.read(1), WAIT) == b""
            answers.append((status, headers, closed))
            if following is None or closed:
                break
            writer.write(following)
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        if status >= 200:
            await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers


def request(
    path: bytes, body: bytes, *headers: bytes, method: bytes = b"POST", version: bytes = b"1.1"
) -> bytes:
    lines = [method + b" " + path + b" HTTP/" + version, b"Host: 127.0.0.1", *headers]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def encoded(path: bytes, coding: bytes, body: bytes) -> bytes:
    return request(path, body, b"Content-Type: application/json", b"Content-Encoding: " + coding)


def deflated(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(data) + packer.flush()


# ------------------------------------------------------------------ Content-Encoding


@pytest.mark.parametrize(
    ("coding", "pack"),
    [
        (b"gzip", gzip.compress),
        (b"GZIP ", gzip.compress),
        (b"x-gzip", gzip.compress),
        (b"deflate", lambda data: deflated(data, zlib.MAX_WBITS)),
        (b"deflate", lambda data: deflated(data, -zlib.MAX_WBITS)),  # raw, as aiohttp takes it
        (b"identity", lambda data: data),
    ],
)
async def test_a_compressed_postback_is_stored_once_and_the_connection_kept(
    target: Target, coding: bytes, pack: object
) -> None:
    """gzip and deflate bodies are decoded exactly once, whether aiohttp decoded them
    already or left them to the receiver; the connection stays open for the next."""
    assert callable(pack)
    body = pack(postback(f"packed-{coding.decode().strip()}-{target.port}"))
    answers = await send(
        target.port, encoded(target.path, coding, body), request(target.path, postback("next"))
    )
    assert [status for status, _, _ in answers] == [200, 200]
    assert await target.stored() == 2


@pytest.mark.parametrize(
    ("name", "coding", "body"),
    [
        ("not gzip", b"gzip", b"abcdefgh"),
        ("not zlib", b"deflate", b"\x78\x9cnot zlib at all"),
        ("gzip and then more", b"gzip", gzip.compress(postback("t")) + b"{}"),
    ],
)
async def test_a_body_that_does_not_decode_is_a_400_that_closes_the_connection(
    target: Target, name: str, coding: bytes, body: bytes
) -> None:
    """A broken body gets a 400 with ``Connection: close`` and the server closes; no
    "Unhandled exception" from aiohttp, nothing stored."""
    answers = await send(
        target.port, encoded(target.path, coding, body), request(target.path, postback("x"))
    )
    assert answers == [(400, answers[0][1], True)], name
    assert await target.stored() == 0


@pytest.mark.parametrize("coding", [b"rot13", b"gzip, gzip", b"compress", b"\xff"])
async def test_an_unsupported_coding_is_a_400_that_closes_the_connection(
    target: Target, coding: bytes
) -> None:
    """A coding the receiver cannot read is refused, not taken as plain text (aiohttp
    passes unknown codings through undecoded)."""
    answers = await send(target.port, encoded(target.path, coding, postback("rot13")))
    assert answers == [(400, answers[0][1], True)]
    assert await target.stored() == 0


async def test_in_its_own_app_the_receiver_also_refuses_br_zstd_and_cut_gzip() -> None:
    """Served by ``receiver.app()``, codings aiohttp would fail on while parsing the
    headers (``br`` without Brotli) are the receiver's own clean 400s, and a gzip
    body cut short (which aiohttp's decoder lets through) is refused."""
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(Router(), inbox=inbox, max_body_size=LIMIT)
    try:
        own = Target(url, inbox)
        for coding, body in (
            (b"br", b"\x8b\x03\x80{}\x03"),
            (b"zstd", b"\x28\xb5\x2f\xfd\x00"),
            (b"gzip", gzip.compress(postback("cut"))[:-6]),
        ):
            answers = await send(own.port, encoded(own.path, coding, body))
            assert answers == [(400, answers[0][1], True)], coding
        assert await own.stored() == 0
    finally:
        await runner.cleanup()


async def test_a_small_body_that_inflates_past_the_limit_is_413(target: Target) -> None:
    """A gzip bomb is cut at the body limit, however it was decoded."""
    bomb = gzip.compress(b" " * (LIMIT * 40))
    assert len(bomb) < LIMIT
    answers = await send(target.port, encoded(target.path, b"gzip", bomb))
    assert answers[0][0] == 413
    assert await target.stored() == 0


# ------------------------------------------------------------------ Expect


async def test_expect_100_continue_in_any_case_then_200(target: Target) -> None:
    """``100-continue`` (any case) gets ``100 Continue`` and then the answer."""
    raw = request(target.path, postback("cont"), b"Expect: 100-Continue")
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        writer.write(raw)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert (await asyncio.wait_for(_response(reader), WAIT))[0] == 200
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("value", [b"\x80", b"\xff\xfe", b"foo", b"100-continue, x", b""])
async def test_any_other_expectation_is_417_never_500(target: Target, value: bytes) -> None:
    """aiohttp's own handler echoes the value in its 417 and fails on one it cannot
    encode (a 500); the receiver's answers a fixed 417 and closes."""
    raw = request(target.path, postback("exp"), b"Expect: " + value)
    status, _, closed = (await send(target.port, raw))[0]
    if value:
        assert (status, closed) == (417, True)
    else:  # an empty Expect is no expectation
        assert status == 200


async def test_expect_is_ignored_in_http_1_0(target: Target) -> None:
    """RFC 9110: a server ignores an expectation received in HTTP/1.0."""
    raw = request(target.path, postback("old"), b"Expect: \x80", version=b"1.0")
    assert (await send(target.port, raw))[0][0] == 200


async def test_other_paths_and_methods_with_odd_expect_are_4xx() -> None:
    """In ``receiver.app()`` another path is 404 and another method 405, an odd
    Expect included (aiohttp's system routes would use its failing default)."""
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(Router(), inbox=inbox, max_body_size=LIMIT)
    try:
        own = Target(url, inbox)
        for method, path, status in (
            (b"POST", b"/elsewhere", 404),
            (b"GET", b"/", 404),
            (b"GET", own.path, 405),
            (b"DELETE", own.path, 405),
        ):
            plain = await send(own.port, request(path, b"{}", method=method))
            assert plain[0][0] == status, (method, path)
            if method == b"GET" and path == own.path:
                assert plain[0][1]["allow"] == "POST"
            odd = await send(own.port, request(path, b"{}", b"Expect: \x80", method=method))
            assert 400 <= odd[0][0] < 500, (method, path)
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ hang-ups


async def test_a_sender_that_closes_mid_body_is_one_info_line(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection closed before the promised body arrived: one INFO line, no
    error, nothing stored, and the receiver goes on serving."""
    _, writer = await asyncio.open_connection("127.0.0.1", target.port)
    raw = request(target.path, postback("hang-up"))
    writer.write(raw.replace(b"Content-Length: ", b"Content-Length: 9", 1)[:-5])
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def noted() -> None:
        while "closed the connection mid-body" not in caplog.text:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(noted(), WAIT)
    lines = [r for r in caplog.records if "mid-body" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in lines] == [(logging.INFO, None)]
    assert await target.stored() == 0
    assert (await send(target.port, request(target.path, postback("after"))))[0][0] == 200
