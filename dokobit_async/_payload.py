"""Streaming bodies, both ways, in bounded memory.

Uploads: a body carries an exact ``Content-Length`` (no chunked encoding), and the
form escaping of a file's base64 makes that length depend on the file's bytes. So
:func:`prepared_files` reads each file once for its SHA-256 digest, its first bytes and
the exact size of its (form-escaped) base64, and :class:`StreamingBody` reads it again
to send it, encoding as it goes; both follow the one rule in ``_bodies``. A stream is
spooled to a temporary file in the first pass (a retry may need it again).

Both passes are C work (hashing, base64, counting, escaping): each block of
:data:`BLOCK` bytes is read *and* processed in a worker thread, in one trip (the first
pass makes one trip in all); the event loop only writes. Memory stays flat: a block,
its text, what the socket holds. A thread cannot be stopped: a file is closed once its
job has returned, and a call ends once its files are closed.

A file that changed between the passes no longer fits the ``Content-Length`` sent:
the second pass checks each block against the first pass's sizes and breaks the body
off before its end; the call fails with ``InvalidArgumentError``. After a change that
keeps both sizes, the digest sent (the first pass's) belies the content: the server can
tell (``docs/wire-notes.md#files``).

Downloads: :func:`write_chunks` writes an async stream of chunks to a path
atomically (temporary file, fsync, rename), to a file object, or into bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import io
import os
import secrets
import tempfile
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import attrs
from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

from ._bodies import PIECE, Segment, base64_block_growth, base64_pieces, base64_size
from .exceptions import DokobitError, InvalidArgumentError
from .models import SigningFile

BLOCK = 32 * PIECE  # raw bytes per read, and per trip to a worker thread (768 KiB)
_HEAD = 16
T = TypeVar("T")


async def _finish(futures: Collection[asyncio.Future[Any]]) -> None:
    """Wait until all of ``futures`` are done (each is a block's work away), even if
    cancelled meanwhile, which is raised after; their failures are retrieved."""
    pending, cancelled = {f for f in futures if not f.done()}, False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    for future in futures:
        if not future.cancelled():
            future.exception()
    if cancelled:
        raise asyncio.CancelledError


class _Worker:
    """Runs one job at a time in a worker thread; :meth:`wait` waits for it (see
    :func:`_finish`), and tells a job that loops to stop by :attr:`stopping`."""

    def __init__(self) -> None:
        self._job: asyncio.Future[Any] | None = None
        self.stopping = threading.Event()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        self._job = asyncio.get_running_loop().run_in_executor(None, function, *args)
        result: T = await asyncio.shield(self._job)
        return result

    async def wait(self) -> None:
        self.stopping.set()
        await _finish([self._job] if self._job else [])


class _Blocks(_Worker):
    """A file's raw bytes block by block, read by jobs in a worker thread: a path is
    opened by the first (an ``open`` can block) and read into one reused buffer."""

    def __init__(self, path: Path | None, data: bytes | None) -> None:
        super().__init__()
        self._path, self._data = path, memoryview(data) if data is not None else None
        self._handle: io.FileIO | None = None
        self._buffer = memoryview(bytearray(BLOCK if data is None else 0))
        self._offset = 0

    def _read(self) -> memoryview:
        if self._data is not None:
            block = self._data[self._offset : self._offset + BLOCK]
            self._offset += len(block)
            return block
        if self._handle is None:
            assert self._path is not None
            self._handle = self._path.open("rb", buffering=0)
        filled = 0
        while filled < BLOCK and (count := self._handle.readinto(self._buffer[filled:])):
            filled += count
        return self._buffer[:filled]

    def next(self, job: Callable[[memoryview], T]) -> tuple[int, T]:
        """(In a job.) The next block's length (0 at the end) and ``job(block)``."""
        block = self._read()
        return len(block), job(block)

    def each(self, job: Callable[[memoryview], object]) -> None:
        """(In a job.) ``job(block)`` for every block, until :attr:`stopping`."""
        while not self.stopping.is_set() and (block := self._read()):
            job(block)

    async def aclose(self) -> None:
        try:
            await self.wait()
        finally:
            if self._handle is not None:
                self._handle.close()


@attrs.define(kw_only=True)
class PreparedFile:
    """A file whose digest and encoded sizes are known, and that can be re-read."""

    name: str
    digest: str
    head: bytes
    size: int
    form_growth: int
    path: Path | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    on_progress: Callable[[int, int], object] | None = attrs.field(default=None, repr=False)
    failure: InvalidArgumentError | None = None  # why its last send broke off, if it did
    # the tasks sending it now (aiohttp writes a body in a task of its own)
    senders: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False, repr=False)

    def encoded_size(self, encoding: str) -> int:
        """Length of the base64 as it goes into a body of ``encoding``."""
        return base64_size(self.size, self.form_growth, encoding)

    async def texts(self, encoding: str) -> AsyncGenerator[bytes, None]:
        """The base64 of the file for a body of ``encoding``, in pieces.

        Raises:
            InvalidArgumentError: The file cannot be read, or no longer has the sizes
                it was prepared with; nothing past them is yielded. It is kept as
                :attr:`failure` too.
        """
        self.failure, sender = None, asyncio.current_task()
        assert sender is not None
        self.senders.add(sender)
        expected, sent, written = self.encoded_size(encoding), 0, 0
        blocks = _Blocks(self.path, self.data)
        encode = functools.partial(base64_pieces, encoding=encoding)
        try:
            while True:
                try:
                    count, pieces = await blocks.run(blocks.next, encode)
                except OSError as exc:
                    raise self._broken(_unreadable(self.path, exc)) from None
                sent, written = sent + count, written + sum(map(len, pieces))
                ended = not count and (sent, written) != (self.size, expected)
                if sent > self.size or written > expected or ended:
                    raise self._broken(
                        f"{self.name!r} changed while it was being sent ({sent:,} bytes "
                        f"read, {self.size:,} prepared); the body was broken off before "
                        "its end, so no request was received in full"
                    )
                if not count:
                    return
                for piece in pieces:
                    yield piece
                pieces.clear()  # written: a block's text is alive only until then
                if self.on_progress is not None:
                    self.on_progress(sent, self.size)
        finally:
            try:
                await blocks.aclose()
            finally:
                self.senders.discard(sender)

    def _broken(self, message: str) -> InvalidArgumentError:
        self.failure = InvalidArgumentError(message)
        return self.failure


class _Scan:
    """Digest, size, head and base64 form growth of a file, fed block by block (in
    3-byte multiples but the last)."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = self.form_growth = 0
        self.head = b""

    def feed(self, block: memoryview | bytes, spool: IO[bytes] | None = None) -> None:
        if spool is not None:
            spool.write(block)
        self.sha.update(block)
        self.head += bytes(block[: _HEAD - len(self.head)])
        self.size += len(block)
        self.form_growth += base64_block_growth(block)

    def result(self, file: SigningFile, **where: Any) -> PreparedFile:
        return PreparedFile(
            name=file.name,
            digest=self.sha.hexdigest(),
            head=self.head,
            size=self.size,
            form_growth=self.form_growth,
            on_progress=file.on_progress,
            **where,
        )


async def _scan(file: SigningFile) -> PreparedFile:
    """The first pass over a file given by path or as bytes."""
    scan, blocks = _Scan(), _Blocks(file.path, file.data)
    try:
        await blocks.run(blocks.each, scan.feed)
    except OSError as exc:
        raise InvalidArgumentError(_unreadable(file.path, exc)) from None
    finally:
        await blocks.aclose()
    return scan.result(file, path=file.path, data=file.data)


def _unreadable(path: Path | None, exc: OSError) -> str:
    return f"cannot read {path}: {exc.strerror or exc}"


_used_streams: weakref.WeakSet[Any] = weakref.WeakSet()


async def _spool(file: SigningFile, stack: contextlib.AsyncExitStack) -> PreparedFile:
    assert file.stream is not None
    try:
        if file.stream in _used_streams:
            raise InvalidArgumentError(
                f"the stream of {file.name!r} was used already; a stream can be sent once"
            )
        _used_streams.add(file.stream)
    except TypeError:  # not weak-referenceable: cannot tell, so trust the caller
        pass
    fd, name = tempfile.mkstemp(prefix="dokobit-upload-")
    stack.callback(_unlink, Path(name))
    scan, worker, pending = _Scan(), _Worker(), bytearray()
    with os.fdopen(fd, "wb") as out:
        try:
            async for piece in file.stream:
                pending += piece
                if len(pending) >= BLOCK:
                    cut = len(pending) - len(pending) % 3
                    block, pending = bytes(pending[:cut]), pending[cut:]
                    await worker.run(scan.feed, block, out)
            await worker.run(scan.feed, bytes(pending), out)
        finally:
            await worker.wait()
    return scan.result(file, path=Path(name))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.asynccontextmanager
async def prepared_files(
    files: Sequence[SigningFile],
) -> AsyncIterator[Mapping[SigningFile, PreparedFile]]:
    """Prepare ``files`` for upload; spooled temporary files go away on exit.

    The exit waits for every task still sending one of the files (it cancels them: the
    call is over), so that no file is read once the call has ended, even cancelled.
    A body broken off because a file changed or could not be read reaches the
    transport as a lost connection: the call fails with the file's
    :attr:`~PreparedFile.failure` instead, which names the cause.
    """
    async with contextlib.AsyncExitStack() as stack:
        out: dict[SigningFile, PreparedFile] = {}
        try:
            for file in files:
                out[file] = await (_scan(file) if file.stream is None else _spool(file, stack))
            yield out
        except DokobitError:
            failure = next((p.failure for p in out.values() if p.failure), None)
            if failure is None:
                raise
            raise failure from None
        finally:
            senders = {task for p in out.values() for task in p.senders} - {asyncio.current_task()}
            for task in senders:
                task.cancel()
            await _finish(senders)


class StreamingBody(payload.Payload):
    """A request body of bytes segments and base64 file contents, with a known size.

    It can be written any number of times (a retry re-reads the files).
    """

    def __init__(self, segments: Sequence[Segment], *, encoding: str, content_type: str):
        super().__init__(segments, content_type=content_type)
        self._segments = list(segments)
        self._body_encoding = encoding  # not _encoding: aiohttp.Payload keeps its charset there
        self._size = sum(
            len(s) if isinstance(s, bytes) else s.source.encoded_size(encoding)
            for s in self._segments
        )

    async def _iter(self) -> AsyncGenerator[bytes, None]:
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            source: PreparedFile = segment.source
            async with contextlib.aclosing(source.texts(self._body_encoding)) as texts:
                async for piece in texts:
                    yield piece

    async def write(self, writer: AbstractStreamWriter) -> None:
        # closed here, not later by the garbage collector: the file closes with the body
        async with contextlib.aclosing(self._iter()) as chunks:
            async for chunk in chunks:
                await writer.write(chunk)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self.write(writer)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streaming body is not decoded in memory; use as_bytes()")

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """The whole body (for tests and small bodies)."""
        async with contextlib.aclosing(self._iter()) as chunks:
            return b"".join([chunk async for chunk in chunks])


# ------------------------------------------------------------------ downloads

Dest = str | os.PathLike[str] | IO[bytes] | None


async def write_chunks(chunks: AsyncIterator[bytes], dest: Dest) -> bytes | Path | None:
    """Write ``chunks`` to ``dest``: a path (atomically), a binary file object (its
    ``write`` may be sync or async), or ``None`` to return the bytes."""
    if dest is None:
        return b"".join([chunk async for chunk in chunks])
    if isinstance(dest, (str, os.PathLike)):
        return await _write_path(Path(dest), chunks)
    write: Callable[[bytes], Any] = dest.write
    async for chunk in chunks:
        result = write(chunk)
        if inspect.isawaitable(result):
            await result
    return None


async def _write_path(path: Path, chunks: AsyncIterator[bytes]) -> Path:
    temp = _temp_beside(path)
    try:
        with temp.open("wb") as out:
            async for chunk in chunks:
                # small sequential writes land in the page cache; fsync goes to a thread
                out.write(chunk)
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
        await asyncio.to_thread(os.replace, temp, path)
    except BaseException:
        _unlink(temp)
        raise
    return path


def _temp_beside(path: Path) -> Path:
    """A new, empty file next to ``path``, created with the usual mode (0666 less the
    umask, like any new file; ``mkstemp`` would make it 0600)."""
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"cannot create a temporary file beside {path}")
