"""The refusals of a postback's body, each produced over a real socket, have their
span and count (docs/architecture.md#postbacks-and-handlers): ``unsupported_encoding``,
``undecodable``, ``unreadable`` (aiohttp's own decoder fails: the receiver mounted
into an application that decodes bodies), ``too_slow``, ``sender_gone`` and
``internal_error`` (tests/test_otel_receiver.py has the others). Each is refused after
the URL's secret verified, so its span is a child of the URL's ``traceparent``; a
bad secret is a root whatever the sender's headers say.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from _otel import Recording, context_of, leaks, recording
from _receiver_helpers import SECRET, postback, start_receiver, wait_until
from aiohttp import web
from test_otel_receiver import (
    HEADER_TRACE_ID,
    HEADER_TRACEPARENT,
    PARENT_ID,
    ROUTE,
    TRACE_ID,
    TRACEPARENT,
    counted,
    secrets_of,
)

from dokobit_async.events import mint_postback_secret
from dokobit_async.inbox import MemoryInbox, StoredEvent
from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger


@pytest.fixture
def recorded() -> Iterator[Recording]:
    """The library instrumented with in-memory SDK providers for the test."""
    with recording() as recorded:
        yield recorded


class BuggyInbox(MemoryInbox):
    """An inbox that breaks the protocol (``add`` returns a bool): a bug, a 503."""

    async def add(self, **fields: Any) -> StoredEvent | None:
        await super().add(**fields)
        return True  # type: ignore[return-value]


async def decoding_receiver() -> tuple[web.AppRunner, str]:
    """The receiver mounted into an application of the user's, whose server decodes
    bodies itself (aiohttp's default): a body it cannot decode is ``unreadable``."""
    receiver = PostbackReceiver(None, secret=SECRET)
    app = web.Application()
    receiver.setup(app)
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, receiver.postback_url(f"http://127.0.0.1:{runner.addresses[0][1]}")


async def post(url: str, data: Any, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Type": "application/json", **headers}) as a,
    ):
        return a.status


async def dribble(body: bytes) -> AsyncIterator[bytes]:
    """``body`` a byte at a time, slower than the receiver's ``read_timeout``."""
    for byte in body:
        yield bytes([byte])
        await asyncio.sleep(0.05)


def hang_up_mid_body(url: str) -> None:
    """Promise a longer body than is sent, then close the sending side."""
    rest = url.split("//", 1)[1]
    address, path = rest.split("/", 1)
    host, port = address.split(":")
    body = postback("sig-r")
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            sock.recv(1024)


# reason -> the answer's status (for sender_gone, as recorded: nobody is left to read it)
BODY_REFUSALS: dict[str, int] = {
    "unsupported_encoding": 400,
    "undecodable": 400,
    "unreadable": 400,
    "too_slow": 408,
    "sender_gone": 400,
    "internal_error": 503,
}


@pytest.mark.parametrize("reason", sorted(BODY_REFUSALS))
async def test_a_body_refusal_has_its_span_and_count(recorded: Recording, reason: str) -> None:
    status = BODY_REFUSALS[reason]
    if reason == "unreadable":
        runner, url = await decoding_receiver()
    else:
        inbox = BuggyInbox() if reason == "internal_error" else MemoryInbox()
        _, runner, url = await start_receiver(None, inbox=inbox, read_timeout=0.3)
    url = f"{url}?traceparent={TRACEPARENT}"
    garbage = {"Content-Encoding": "gzip"}
    try:
        if reason == "unsupported_encoding":
            assert await post(url, postback("sig-r"), {"Content-Encoding": "x-rot13"}) == status
        elif reason in ("undecodable", "unreadable"):  # ours decodes, or aiohttp's does
            assert await post(url, b"not gzip, not at all", garbage) == status
        elif reason == "too_slow":
            assert await post(url, dribble(postback("sig-r")), {}) == status
        elif reason == "sender_gone":
            await asyncio.to_thread(hang_up_mid_body, url)
            await wait_until(lambda: _true(bool(recorded.spans())))
        else:
            assert await post(url, postback("sig-r"), {}) == status
    finally:
        await runner.cleanup()
    (span,) = recorded.spans()
    assert span.name == f"POST {ROUTE}"
    assert span.parent is not None  # the secret verified: the sender's context
    assert span.parent.span_id == PARENT_ID
    attributes = span.attributes or {}
    assert attributes["dokobit.postback.outcome"] == "refused"
    assert attributes["dokobit.postback.refusal"] == reason
    assert attributes["http.response.status_code"] == status
    assert counted(recorded, "dokobit.postbacks.refused", "dokobit.postback.refusal") == {
        reason: 1
    }
    assert recorded.points("dokobit.postbacks.acknowledged") == []
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url.split("?")[0])) == []


async def test_a_bad_secret_is_a_root_whatever_the_headers_say(recorded: Recording) -> None:
    _, runner, url = await start_receiver(None)
    other = url.rsplit("/", 1)[0] + "/" + mint_postback_secret(b"another-key-0123456789")
    try:
        status = await post(
            f"{other}?traceparent={TRACEPARENT}",
            postback("sig-r"),
            {"traceparent": HEADER_TRACEPARENT},
        )
    finally:
        await runner.cleanup()
    assert status == 401
    (span,) = recorded.spans()
    assert span.parent is None
    assert context_of(span).trace_id not in (TRACE_ID, HEADER_TRACE_ID)
    assert (span.attributes or {})["dokobit.postback.refusal"] == "bad_secret"


async def _true(value: bool) -> bool:
    return value
