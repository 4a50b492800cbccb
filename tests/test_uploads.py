"""Uploads, and what holds while they go fast (``_payload``, ``_bodies``).

Over real sockets (a loopback aiohttp server) and real files:

* the body is, byte for byte, what the one-shot encoding of the whole file gives
  (Dokobit's PHP example shape), for sizes on and around the piece and block
  boundaries, in both encodings and from every source, with an exact
  ``Content-Length`` and no chunked encoding;
* each file is read twice (a first pass and the send), every byte once per pass, in
  blocks, never on the event loop's thread, and the base64 work is off it too;
* memory stays flat (``tracemalloc``; a bound that does not depend on speed);
* a retry sends the same body again, reading the file again;
* a file that changes or vanishes while it is sent fails the call with
  ``InvalidArgumentError``, and the server never receives a complete request;
* a cancelled call leaves no thread reading and no file open, in either pass.

Files are followed by opening them through :class:`Tracked` (``Path.open`` patched for
the one path under test): it logs each read (its thread, its size) and the close.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import random
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from _loopback import loopback
from aiohttp import web

import dokobit_async._payload as payload_module
from dokobit_async import (
    DokobitClient,
    InvalidArgumentError,
    RetryPolicy,
    SigningFile,
    Timeout,
)
from dokobit_async._bodies import (
    PIECE,
    base64_block_growth,
    base64_growth,
    base64_pieces,
    base64_text,
)
from dokobit_async._payload import BLOCK

TOKEN = "upload-test-token"
SIZES = [0, 1, 2, 3, PIECE - 1, PIECE, PIECE + 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 2]


def client_for(base_url: str, **options: Any) -> DokobitClient:
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    return DokobitClient(
        TOKEN, base_url=base_url, rate_limit=None, timeout=Timeout(read=30), **options
    )


async def create(client: DokobitClient, *files: SigningFile) -> str:
    created = await client.external.create(
        name="Agreement", type="asice", files=list(files), signers=[]
    )
    return created.token


async def created(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "token": "S1", "signers": []})


def data_of(size: int) -> bytes:
    """Bytes whose base64 has every character, ``+`` and ``/`` included."""
    return random.Random(size).randbytes(size)


def one_shot(data: bytes, name: str, encoding: str) -> bytes:
    """The body that ``create(name="Agreement", type="asice")`` must send, built from
    the base64 of the whole file at once."""
    content = base64.b64encode(data).decode("ascii")
    digest = hashlib.sha256(data).hexdigest()
    if encoding == "form":
        fields = [("type", "asice"), ("name", "Agreement"), ("files[0][name]", name)]
        fields += [("files[0][content]", content), ("files[0][digest]", digest)]
        return urlencode(fields).encode("ascii")
    file = {"name": name, "content": content, "digest": digest}
    body = {"type": "asice", "name": "Agreement", "files": [file]}
    return json.dumps(body, separators=(",", ":")).encode("ascii")


# ------------------------------------------------------------------ following a file


class Log:
    """What happened to the handles opened on one path, in order."""

    def __init__(self, gate: tuple[int, int] | None) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, int]] = []  # (what, handle, thread or size)
        self.handles: list[Tracked] = []
        self.gate = gate  # (handle, read): that read waits for ``release``
        self.reached, self.release = threading.Event(), threading.Event()

    def add(self, what: str, handle: int, value: int) -> None:
        with self.lock:
            self.events.append((what, handle, value))

    def of(self, handle: int) -> list[tuple[str, int]]:
        return [(what, value) for what, h, value in self.events if h == handle]

    def sizes(self, handle: int) -> list[int]:
        """The size of each read of ``handle`` that found bytes."""
        return [value for what, value in self.of(handle) if what == "done" and value]

    def assert_closed_after_every_read(self) -> None:
        for index, handle in enumerate(self.handles):
            events = [what for what, _ in self.of(index)]
            assert handle.closed
            assert events[-1] == "close", events[-3:]
            assert events.count("read") == events.count("done"), "a read is still running"


class Tracked(io.FileIO):
    """A read-only file that logs its reads and its close to a :class:`Log`."""

    def __init__(self, path: Path, log: Log) -> None:
        super().__init__(path, "rb")
        self.log, self.reads = log, 0
        with log.lock:
            self.index = len(log.handles)
            log.handles.append(self)

    def readinto(self, buffer: Any) -> int | None:
        self.reads += 1
        self.log.add("read", self.index, threading.get_ident())
        if self.log.gate == (self.index, self.reads):
            self.log.reached.set()
            self.log.release.wait(30)
        count = super().readinto(buffer)
        self.log.add("done", self.index, count or 0)
        return count

    def close(self) -> None:
        if not self.closed:
            self.log.add("close", self.index, 0)
        super().close()


@pytest.fixture
def track(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Log]:
    """``track(path, gate=None)``: from now on, ``path`` opens for reading as Tracked."""

    def start(path: Path, gate: tuple[int, int] | None = None) -> Log:
        log, original = Log(gate), Path.open

        def opened(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if self == path and mode == "rb":
                return Tracked(self, log)
            return original(self, mode, *args, **kwargs)

        monkeypatch.setattr(Path, "open", opened)
        return log

    return start


# ------------------------------------------------------------------ the body


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("encoding", ["form", "json"])
@pytest.mark.parametrize("source", ["path", "bytes", "stream"])
async def test_body_is_the_one_shot_encoding_around_piece_and_block_boundaries(
    tmp_path: Path, encoding: str, source: str
) -> None:
    """Files of sizes on and around the 24 KiB pieces and 768 KiB blocks (and 0 to 3
    bytes) arrive as the base64 of the whole file, escaped as ``quote_plus`` does,
    with the digest after it: the exact body, its exact length, not chunked."""
    async with loopback(created) as host, client_for(host.url, body_encoding=encoding) as client:
        for size in SIZES:
            data, path = data_of(size), tmp_path / f"{size}.bin"
            path.write_bytes(data)
            if source == "path":
                file = SigningFile.from_path(path, name="a file&.bin")
            elif source == "bytes":
                file = SigningFile.from_bytes(data, name="a file&.bin")
            else:
                file = SigningFile.from_stream(_chunks(data, 70_001), name="a file&.bin")
            assert await create(client, file) == "S1"
            seen = host.seen[-1]
            headers = {k.lower(): v for k, v in seen.headers}
            assert seen.body == one_shot(data, "a file&.bin", encoding), size
            assert int(headers["content-length"]) == len(seen.body)
            assert "transfer-encoding" not in headers
    assert len(host.seen) == len(SIZES)


def _growth_by_count(text: bytes) -> int:
    return sum(2 * text.count(char) for char in (b"+", b"/", b"="))


@pytest.mark.parametrize(
    "text",
    [b"+" * 100_000, b"/+" * 40_000 + b"==", base64.b64encode(data_of(200_000)), b""],
    ids=["all-plus", "all-marked-padded", "random", "empty"],
)
def test_growth_counts_long_texts_exactly(text: bytes) -> None:
    """The one-scan count (translate, then adler32 sums of spans under 65520 bytes)
    agrees with counting each escaped character, on texts far longer than a span and
    made only of escaped characters (the largest sums)."""
    assert base64_growth(text) == _growth_by_count(text)


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 2])
def test_pieces_join_to_the_text_and_add_up_to_the_growth(size: int) -> None:
    """Encoding a block piece by piece changes nothing: the pieces join to the text of
    the block, and their growths add up to its growth."""
    block = data_of(size) + b"\xfb\xff" * (size % 7)
    for encoding in ("form", "json"):
        assert b"".join(base64_pieces(block, encoding)) == base64_text(block, encoding)
    assert base64_block_growth(block) == _growth_by_count(base64.b64encode(block))


# ------------------------------------------------------------------ the mechanism


async def test_a_file_is_read_twice_in_blocks_off_the_event_loop(
    tmp_path: Path, track: Callable[..., Log], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass and the send each read every byte once, a block at a time, in
    worker threads; the base64 work (sizes, then text) runs there too."""
    size = 2 * BLOCK + 5
    path = tmp_path / "agreement.bin"
    path.write_bytes(data_of(size))
    log = track(path)
    worked: list[int] = []
    for name in ("base64_pieces", "base64_block_growth"):
        original = getattr(payload_module, name)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            worked.append(threading.get_ident())
            return _original(*args, **kwargs)

        monkeypatch.setattr(payload_module, name, spy)
    async with loopback(created) as host, client_for(host.url) as client:
        assert await create(client, SigningFile.from_path(path)) == "S1"
    loop_thread = threading.get_ident()
    assert len(log.handles) == 2  # the first pass, then the send
    for index in (0, 1):
        assert log.sizes(index) == [BLOCK, BLOCK, 5]
    readers = {value for what, _, value in log.events if what == "read"}
    assert loop_thread not in readers
    assert worked
    assert loop_thread not in worked
    log.assert_closed_after_every_read()


async def _discard(request: web.Request) -> web.Response:
    async for _ in request.content.iter_chunked(64 * 1024):
        pass
    return await created(request)


@contextlib.asynccontextmanager
async def _server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application(client_max_size=2**34)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def _traced() -> Iterator[list[int]]:
    """The peak of traced memory above its level at the start, in bytes."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        peak: list[int] = []
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()


async def test_memory_stays_flat_whatever_the_size(tmp_path: Path) -> None:
    """The extra memory of an upload (client and server in this process, the server
    discarding) stays under 4 MiB, and a file four times larger needs no more of it:
    a block, its text and what the socket holds."""
    peaks = {}
    async with _server(_discard) as base, client_for(base) as client:
        small = tmp_path / "small.bin"
        small.write_bytes(data_of(1000))
        await create(client, SigningFile.from_path(small))  # connection, code paths
        for blocks in (4, 16):
            path = tmp_path / f"{blocks}.bin"
            path.write_bytes(data_of(blocks * BLOCK))
            with _traced() as peak:
                await create(client, SigningFile.from_path(path))
            peaks[blocks] = peak[0]
    assert max(peaks.values()) < 4 * 2**20, peaks
    assert peaks[16] - peaks[4] < 2**20 // 2, peaks


async def test_a_retry_sends_the_same_body_again(
    tmp_path: Path, track: Callable[..., Log]
) -> None:
    """A 429 (the API refused the call) is retried even for a write: the file is read
    a third time, and the second body is the first one, with the same length."""
    size = BLOCK + 7
    path = tmp_path / "agreement.bin"
    path.write_bytes(data_of(size))
    log = track(path)
    answers = [web.json_response({"status": "error"}, status=429, headers={"Retry-After": "0"})]

    async def handler(request: web.Request) -> web.StreamResponse:
        return answers.pop() if answers else await created(request)

    retry = RetryPolicy(max_attempts=2, base_delay=0.01)
    async with loopback(handler) as host, client_for(host.url, retry=retry) as client:
        assert await create(client, SigningFile.from_path(path)) == "S1"
    first, second = host.seen
    assert first.body == second.body == one_shot(data_of(size), "agreement.bin", "form")
    assert len(log.handles) == 3
    assert log.sizes(1) == log.sizes(2) == [BLOCK, 7]
    log.assert_closed_after_every_read()


# ------------------------------------------------------------------ a file that changes


def _grow(path: Path) -> None:
    with path.open("ab") as out:
        out.write(b"appended")


def _shrink(path: Path) -> None:
    with path.open("r+b") as out:
        out.truncate(2 * BLOCK)


def _escape_more(path: Path) -> None:
    """Same size; the last block's base64 becomes all ``/`` (each escaped as %2F)."""
    with path.open("r+b") as out:
        out.seek(-BLOCK, 2)
        out.write(b"\xff" * BLOCK)


@pytest.mark.parametrize("change", [_grow, _shrink, _escape_more])
async def test_a_file_that_changes_while_sent_fails_the_call(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    """The file changes after its first block went out (its sizes no longer fit the
    ``Content-Length``): the body is broken off before its end, so the server never
    receives a complete request, and the call fails with InvalidArgumentError naming
    the file (not a lost answer, not a silently cut body, not a wait for a timeout)."""
    path = tmp_path / "agreement.bin"
    path.write_bytes(data_of(3 * BLOCK))
    changed: list[int] = []

    def on_progress(sent: int, total: int) -> None:
        if not changed:
            changed.append(sent)
            change(path)

    file = SigningFile.from_path(path, on_progress=on_progress)
    async with loopback(created) as host, client_for(host.url) as client:
        with pytest.raises(InvalidArgumentError, match=r"'agreement\.bin' changed") as caught:
            await create(client, file)
    assert changed == [BLOCK]
    assert host.seen == []
    assert caught.value.request is not None
    assert caught.value.request.operation == "external.create"


async def test_a_file_gone_before_its_turn_fails_the_call(tmp_path: Path) -> None:
    """The second file of a signing is deleted while the first one is sent: its send
    cannot open it, and the call fails with InvalidArgumentError saying so."""
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(data_of(2 * BLOCK))
    second.write_bytes(data_of(10))

    def on_progress(sent: int, total: int) -> None:
        second.unlink(missing_ok=True)

    files = [SigningFile.from_path(first, on_progress=on_progress), SigningFile.from_path(second)]
    async with loopback(created) as host, client_for(host.url) as client:
        with pytest.raises(InvalidArgumentError, match=f"cannot read {second}"):
            await create(client, *files)
    assert host.seen == []


# ------------------------------------------------------------------ cancellation


async def _cancel_at_gate(task: asyncio.Task[Any], log: Log) -> None:
    """Cancel ``task`` while a read of the file waits at the gate, then let the read
    go on: the task's cancellation runs first (its wake-up was scheduled first)."""
    assert await asyncio.to_thread(log.reached.wait, 30)
    task.cancel()
    asyncio.get_running_loop().call_soon(log.release.set)
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("blocks", "gate", "reads"),
    [(8, (0, 1), [[BLOCK]]), (4, (1, 2), [[BLOCK] * 4, [BLOCK, BLOCK]])],
    ids=["in the first pass", "while sending"],
)
async def test_a_cancelled_call_leaves_no_thread_reading(
    tmp_path: Path,
    track: Callable[..., Log],
    blocks: int,
    gate: tuple[int, int],
    reads: list[list[int]],
) -> None:
    """Cancelled while a read of the file is under way, in the first pass (its first
    block of eight) or in the send (its second block, in aiohttp's own writing task),
    the call ends once that read has returned and the file is closed: nothing is read
    after, no file stays open, and the first pass stops early rather than finish."""
    path = tmp_path / "agreement.bin"
    path.write_bytes(data_of(blocks * BLOCK))
    log = track(path, gate=gate)
    async with loopback(created) as host, client_for(host.url) as client:
        task = asyncio.create_task(create(client, SigningFile.from_path(path)))
        await _cancel_at_gate(task, log)
    assert [log.sizes(index) for index in range(len(log.handles))] == reads
    log.assert_closed_after_every_read()
    assert host.seen == []
