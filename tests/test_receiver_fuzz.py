"""Whatever a sender puts in a request, the receiver answers below 500, stays up, and
stores nothing it did not acknowledge with 200.

One receiver (SQLite inbox) serves the whole module from its own event loop in a
background thread; the tests are synchronous and talk to it over raw sockets, so
that headers, framing and methods can be anything at all."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import pytest
from _profiles import examples
from _receiver_helpers import postback, start_receiver, wait_until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dokobit_async.events import event_key, parse_postback
from dokobit_async.inbox import SQLiteInbox, StoredEvent
from dokobit_async.routing import Router

T = TypeVar("T")
LIMIT = 2048  # the receiver's max_body_size
WAIT = 15.0
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
ACTIONS = ["signing_created", "signer_signed", "signer_declined", "signing_completed",
           "signing_archived", "signing_archive_failed", "document_received", "x"]  # fmt: skip
FIELDS = ["token", "signer", "signer_info", "file", "file_digest", "valid_to"]


def fuzz_settings(count: int) -> settings:
    """``count`` examples, scaled by the Hypothesis profile (``tests/_profiles.py``:
    the same examples on every run by default, no example database)."""
    return settings(
        max_examples=examples(count),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> int | None:
    """Send ``raw`` on a fresh connection; the final status, or None if the server
    closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may stop reading early (413)
            sock.sendall(raw)
        data = b""
        while True:
            found = STATUS.match(data)
            if found and int(found[1]) >= 200:
                return int(found[1])
            if found and b"\r\n\r\n" in data:  # 100 Continue: the real answer follows
                data = data.split(b"\r\n\r\n", 1)[1]
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            data += chunk


def request(
    body: bytes = b"",
    *,
    method: bytes = b"POST",
    target: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    framing: str = "length",
) -> bytes:
    """An HTTP/1.1 request, byte for byte; ``framing`` is ``length`` (a correct
    Content-Length), ``chunked`` (correct chunks) or ``raw`` (none added)."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers or []]
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        pieces = [body[i : i + 700] for i in range(0, len(body), 700)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class FuzzTarget:
    """A receiver on 127.0.0.1 served from its own loop in a daemon thread, and the
    checks every fuzzed request must pass."""

    def __init__(self, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.inbox = SQLiteInbox(db, synchronous="NORMAL")
        self.receiver, self.runner, url = self.run(
            start_receiver(Router(), inbox=self.inbox, max_body_size=LIMIT, read_timeout=0.5)
        )
        parts = urlsplit(url)
        assert parts.port is not None
        self.port, self.target = parts.port, parts.path.encode()
        self.tokens = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the receiver's loop; wait (bounded) for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=WAIT)

    def stored(self) -> list[StoredEvent]:
        return self.run(self.inbox.list(limit=1_000_000))

    def check(self, raw: bytes, body: bytes | None = None) -> int | None:
        """Send ``raw``: the answer is below 500; a 200 stored at most one new event
        (with ``body``, when given), anything else stored nothing."""
        before = self.stored()
        status = exchange(self.port, raw)
        assert status is None or status < 500, f"{status} for {raw[:300]!r}"
        after = self.stored()
        if status != 200:  # (states may move on meanwhile: the dispatcher runs)
            assert [e.id for e in after] == [e.id for e in before], f"{status} stored {raw!r}"
            return status
        assert len(after) - len(before) in (0, 1)
        for new in after[len(before) :]:
            assert new.id == event_key(parse_postback(new.body, new.content_type))
            assert body is None or new.body == body
        return status

    def assert_healthy(self) -> None:
        """A valid postback still gets 200, and every stored event gets dispatched."""
        body = postback(f"health-{next(self.tokens)}")
        assert self.check(request(body, target=self.target), body) == 200
        self.run(wait_until(self._settled, timeout=10))

    async def _stop(self) -> None:
        await self.runner.cleanup()
        # connections aiohttp still lingers on (reading an unread body) end here
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    async def _settled(self) -> bool:
        counts = await self.inbox.counts()
        return counts["pending"] == 0 and counts["dead"] == 0 and counts["unconfirmed"] == 0

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=WAIT)
            self.loop.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    server = FuzzTarget(tmp_path_factory.mktemp("fuzz") / "in.db")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def no_receiver_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The receiver logs no error (its "failed" path) for anything a sender sent."""
    with caplog.at_level(logging.INFO, logger="dokobit_async.receiver"):
        yield
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("dokobit_async") and r.levelno >= logging.ERROR
    ]
    assert errors == []


# text that tends to break things: empty, NUL, lone surrogates (JSON can escape them),
# non-ASCII, very long
ODD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "é€😀", "\u2028", "x" * 3000]),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=12,
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "json",
        ";",
        "",
    ]
)


def with_content_type(content_type: str | None) -> list[tuple[bytes, bytes]]:
    return [] if content_type is None else [(b"Content-Type", content_type.encode())]


@pytest.mark.usefixtures("no_receiver_errors")
def test_random_bytes_of_any_size(target: FuzzTarget) -> None:
    """Random bodies (some over the size limit), any framing, common content types."""

    @fuzz_settings(300)
    @given(
        body=st.binary(max_size=600) | st.binary(min_size=LIMIT - 8, max_size=LIMIT + 600),
        content_type=CONTENT_TYPES,
        framing=st.sampled_from(["length", "chunked", "raw"]),
    )
    def run(body: bytes, content_type: str | None, framing: str) -> None:
        raw = request(
            body, target=target.target, headers=with_content_type(content_type), framing=framing
        )
        status = target.check(raw, None if framing == "raw" else body)
        if len(body) > LIMIT and framing != "raw":
            assert status == 413

    run()
    target.assert_healthy()


@pytest.mark.usefixtures("no_receiver_errors")
def test_random_json_values(target: FuzzTarget) -> None:
    """Any JSON value (NaN, huge numbers, deep nesting included) as the body."""

    @fuzz_settings(300)
    @given(value=JSON_VALUES, content_type=CONTENT_TYPES)
    def run(value: object, content_type: str | None) -> None:
        body = json.dumps(value).encode()
        target.check(
            request(body, target=target.target, headers=with_content_type(content_type)), body
        )

    run()
    for depth in (50, 1000, 1020):  # deeper than the parser recurses
        body = b"[" * depth + b"]" * depth
        assert target.check(request(body, target=target.target)) in (400, 413)
    target.assert_healthy()


@pytest.mark.usefixtures("no_receiver_errors")
def test_postback_shaped_objects_with_wrong_field_types(target: FuzzTarget) -> None:
    """Objects that look like postbacks but whose fields hold anything, as JSON or as
    a form: a 400 for what is not a postback, a 200 only for what is stored."""
    value = st.one_of(ODD_TEXT, st.integers(), JSON_VALUES)  # often of the right type
    fields = st.dictionaries(st.sampled_from(FIELDS), value, max_size=len(FIELDS))

    @fuzz_settings(400)
    @given(
        action=st.one_of(st.sampled_from(ACTIONS), ODD_TEXT, JSON_VALUES),
        fields=fields,
        as_form=st.booleans(),
    )
    def run(action: object, fields: dict[str, object], as_form: bool) -> None:
        payload = {"action": action, **fields}
        if as_form:
            pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in payload.items()]
            body = urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()
            headers = [(b"Content-Type", b"application/x-www-form-urlencoded")]
        else:
            body = json.dumps(payload).encode()
            headers = [(b"Content-Type", b"application/json")]
        target.check(request(body, target=target.target, headers=headers), body)

    run()
    target.assert_healthy()


HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            b"Content-Type",
            b"Content-Encoding",
            b"Expect",
            b"Accept",
            b"User-Agent",
            b"X-Forwarded-For",
            b"Cookie",
            b"Authorization",
            b"Range",
            b"Upgrade",
            b"Trailer",
        ]
    ),
    st.from_regex(rb"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}\Z"),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"gzip", b"deflate", b"br", b"identity", b"100-continue", b"websocket"]),
    st.integers(0, 20_000).map(lambda n: b"application/json; x=" + b"a" * n),
)
FRAMING_HEADERS = {b"content-length", b"transfer-encoding", b"connection", b"host"}


@pytest.mark.usefixtures("no_receiver_errors")
def test_odd_and_huge_headers(target: FuzzTarget) -> None:
    """Random header names and values (binary, huge, odd Content-Type and
    Content-Encoding), on valid and invalid bodies."""

    @fuzz_settings(300)
    @given(
        headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
        valid=st.booleans(),
    )
    # found by a random run: a non-ASCII Expect value got a 500
    @example(headers=[(b"Expect", b"\x80")], valid=True)
    @example(headers=[(b"Expect", b"\x80")], valid=False)
    def run(headers: list[tuple[bytes, bytes]], valid: bool) -> None:
        headers = [(n, v) for n, v in headers if n.strip().lower() not in FRAMING_HEADERS]
        body = postback(f"hdr-{next(target.tokens)}") if valid else b"\x00{not a postback"
        target.check(request(body, target=target.target, headers=headers))

    run()
    target.assert_healthy()


@pytest.mark.usefixtures("no_receiver_errors")
def test_wrong_methods_and_urls_with_bad_macs(target: FuzzTarget) -> None:
    """Other methods get 405 (or 400), URLs not minted by the receiver 401/404; a
    valid postback sent that way is not stored."""
    prefix = target.target.rsplit(b"/", 1)[0]
    segment = st.one_of(
        st.from_regex(rb"\A[0-9a-f]{32}\.[0-9a-f]{32}\Z"),  # right shape, wrong MAC
        st.binary(max_size=80).map(lambda b: "".join(f"%{c:02X}" for c in b).encode()),
        st.from_regex(rb"\A[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,80}\Z"),
        st.sampled_from([b"..", b"../../etc/passwd", b"%00", b"%2F", b"a" * 9000]),
    )
    url = st.one_of(
        st.builds(lambda s: prefix + b"/" + s, segment),
        st.builds(lambda q: target.target + b"?" + q, segment),
        st.sampled_from([b"/", b"*", b"//", prefix, prefix + b"/", b"http://evil/" + prefix]),
    )
    method = st.one_of(
        st.just(b"POST"),
        st.sampled_from([b"GET", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"TRACE"]),
        st.from_regex(rb"\A[A-Z]{1,12}\Z"),
    )

    @fuzz_settings(300)
    @given(method=method, url=url)
    def run(method: bytes, url: bytes) -> None:
        body = postback(f"url-{next(target.tokens)}")
        status = target.check(request(body, method=method, target=url), body)
        if method != b"POST" or url.split(b"?")[0] != target.target:  # a query is harmless
            assert status != 200
        if method == b"POST" and url.startswith(prefix + b"/") and b"?" not in url:
            assert status in (400, 401, 404)

    run()
    good = postback(f"method-{next(target.tokens)}")
    for verb in (b"GET", b"PUT", b"DELETE", b"PATCH"):
        assert target.check(request(good, method=verb, target=target.target)) == 405
    target.assert_healthy()


def raw_cases() -> list[tuple[str, bytes]]:
    """Hand-written framing errors, each sent as-is (no framing added)."""
    valid = postback("framing-valid")

    def head(*lines: bytes) -> bytes:
        return b"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + b"".join(
            line + b"\r\n" for line in lines
        )

    def encoded(coding: bytes) -> bytes:
        return head(b"Content-Encoding: " + coding, b"Content-Length: 5") + b"\r\nabcde"

    chunked = head(b"Transfer-Encoding: chunked") + b"\r\n"
    return [
        ("chunk size not hex", chunked + b"zz\r\n" + valid + b"\r\n0\r\n\r\n"),
        ("chunk longer than its size", chunked + b"3\r\n" + valid + b"\r\n0\r\n\r\n"),
        ("chunk size overflow", chunked + b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n"),
        ("chunked over the limit", chunked + b"%x\r\n" % (LIMIT + 1) + b"{" * (LIMIT + 1)),
        ("chunked with bad trailer", chunked + b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n"),
        ("Content-Length shorter", head(b"Content-Length: 5") + b"\r\n" + valid),
        ("Content-Length longer", head(b"Content-Length: 500") + b"\r\n" + valid),
        ("Content-Length negative", head(b"Content-Length: -1") + b"\r\n" + valid),
        ("Content-Length not a number", head(b"Content-Length: 1e3") + b"\r\n" + valid),
        ("Content-Length twice", head(b"Content-Length: 2", b"Content-Length: 3") + b"\r\n{}"),
        ("Content-Length huge", head(b"Content-Length: " + b"9" * 30) + b"\r\n" + valid),
        ("Content-Length over the limit", head(b"Content-Length: %d" % (LIMIT + 1)) + b"\r\n"),
        ("both framings", head(b"Content-Length: 2", b"Transfer-Encoding: chunked") + b"\r\n{}"),
        ("unknown transfer coding", head(b"Transfer-Encoding: rot13") + b"\r\n" + valid),
        ("gzip that is not gzip", encoded(b"gzip")),
        ("deflate that is not deflate", encoded(b"deflate")),
        ("brotli that is not brotli", encoded(b"br")),
        ("header line too long", head(b"X-Long: " + b"a" * 70_000) + b"\r\n"),
        ("header without colon", head(b"NoColonHere") + b"\r\n"),
        ("obsolete line folding", head(b"X-A: a", b" folded") + b"\r\n"),
        ("NUL in a header", head(b"X-A: a\x00b") + b"\r\n"),
        ("bare LF line ends", b"POST {target} HTTP/1.1\nContent-Length: 2\n\n{}"),
        ("HTTP/0.9 request line", b"POST {target}\r\n\r\n"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ]  # fmt: skip


@pytest.mark.usefixtures("no_receiver_errors")
@pytest.mark.parametrize("raw", [pytest.param(raw, id=name) for name, raw in raw_cases()])
def test_broken_framing_and_encoding(target: FuzzTarget, raw: bytes) -> None:
    """Broken chunked encoding, wrong Content-Length, undecodable Content-Encoding,
    malformed header lines: a 4xx (or a closed connection), nothing stored."""
    status = target.check(raw.replace(b"{target}", target.target))
    assert status is None or 400 <= status < 500, status
    target.assert_healthy()


@pytest.mark.usefixtures("no_receiver_errors")
def test_a_sender_that_hangs_up_mid_body_causes_no_error(
    target: FuzzTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection closed before the promised body arrived is the sender's doing: one
    INFO line, no error, nothing stored."""
    body = postback("hang-up")
    raw = request(body, target=target.target, framing="raw")
    raw = raw.replace(b"\r\n\r\n", b"\r\nContent-Length: 500\r\n\r\n", 1)
    before = target.stored()
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            sock.recv(1024)

    async def noticed() -> bool:
        return any("closed the connection mid-body" in r.getMessage() for r in caplog.records)

    target.run(wait_until(noticed, timeout=5))
    assert [e.id for e in target.stored()] == [e.id for e in before]
    target.assert_healthy()


@pytest.mark.usefixtures("no_receiver_errors")
def test_lone_surrogates_in_a_json_postback_are_refused_not_a_5xx(target: FuzzTarget) -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``), which no UTF-8 store can
    hold: the sender gets a 4xx (or the event is stored), never a 5xx."""
    for body in (
        b'{"action": "signing_created", "token": "\\ud800"}',
        b'{"action": "x\\udfff"}',
        b'{"action": "signer_signed", "token": "T", "signer": "\\udc00"}',
    ):
        target.check(request(body, target=target.target), body)
    target.assert_healthy()


def test_one_malformed_postback_does_not_fail_the_others_in_its_commit(
    target: FuzzTarget,
) -> None:
    """Postbacks that arrive together share one commit; a bad one among them must not
    turn the good ones into errors."""
    bad = b'{"action": "signing_created", "token": "\\ud800 poison"}'
    goods = [postback(f"batch-{next(target.tokens)}") for _ in range(60)]
    bodies = [*goods[:30], bad, *goods[30:]]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        statuses = list(
            pool.map(lambda b: exchange(target.port, request(b, target=target.target)), bodies)
        )
    good_statuses = statuses[:30] + statuses[31:]
    assert good_statuses == [200] * len(goods), statuses
    stored = {event.body for event in target.stored()}
    assert set(goods) <= stored
    target.assert_healthy()
