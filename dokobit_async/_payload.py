"""Streaming bodies, both ways, in bounded memory.

Uploads: :func:`prepared_files` reads each file once to learn its SHA-256 digest, its
first bytes and the exact size of its base64 (and of the form-escaped base64), so that
:class:`StreamingBody` can send a precomputed ``Content-Length`` and then encode the
file chunk by chunk. Chunks are a multiple of 3 bytes, so the base64 of the chunks,
joined, is the base64 of the file. Both the sizes and the text follow the one rule in
``_bodies`` (:func:`~dokobit_async._bodies.base64_text`). A stream is spooled to a
temporary file in the same pass (it can be read only once, and a retry may need it
again).

Downloads: :func:`write_chunks` writes an async stream of chunks to a path
atomically (temporary file, fsync, rename), to a file object, or into bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import os
import secrets
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

from ._bodies import Segment, base64_growth, base64_size, base64_text
from .exceptions import InvalidArgumentError
from .models import SigningFile

CHUNK = 3 * 64 * 1024  # 192 KiB raw -> 256 KiB of base64 per write
_HEAD = 16


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

    def encoded_size(self, encoding: str) -> int:
        """Length of the base64 as it goes into a body of ``encoding``."""
        return base64_size(self.size, self.form_growth, encoding)

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        """The raw bytes in chunks of ``size`` (a multiple of 3)."""
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), size):
                yield bytes(view[start : start + size])
            return
        assert self.path is not None
        with self.path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, size):
                yield chunk


class _Digest:
    """Digest, size, head and base64 form growth of a file, fed in 3-byte-aligned
    chunks."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.form_growth = 0

    def feed(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        if len(self.head) < _HEAD:
            self.head += chunk[: _HEAD - len(self.head)]
        self.size += len(chunk)
        self.form_growth += base64_growth(base64.b64encode(chunk))

    def result(self, file: SigningFile, **where: Any) -> PreparedFile:
        return PreparedFile(
            on_progress=file.on_progress,
            name=file.name,
            digest=self.sha.hexdigest(),
            head=self.head,
            size=self.size,
            form_growth=self.form_growth,
            **where,
        )


def _scan_path(path: Path) -> _Digest:
    digest = _Digest()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.feed(chunk)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest


def _scan_bytes(data: bytes) -> _Digest:
    digest = _Digest()
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        digest.feed(bytes(view[start : start + CHUNK]))
    return digest


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
    digest = _Digest()
    pending = b""
    with os.fdopen(fd, "wb") as out:
        async for piece in file.stream:
            pending += piece
            cut = len(pending) - len(pending) % 3
            if cut:
                chunk, pending = pending[:cut], pending[cut:]
                digest.feed(chunk)
                await asyncio.to_thread(out.write, chunk)
        if pending:
            digest.feed(pending)
            out.write(pending)
    return digest.result(file, path=Path(name))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.asynccontextmanager
async def prepared_files(
    files: Sequence[SigningFile],
) -> AsyncIterator[Mapping[SigningFile, PreparedFile]]:
    """Prepare ``files`` for upload; spooled temporary files go away on exit."""
    async with contextlib.AsyncExitStack() as stack:
        out: dict[SigningFile, PreparedFile] = {}
        for file in files:
            if file.path is not None:
                scanned = await asyncio.to_thread(_scan_path, file.path)
                out[file] = scanned.result(file, path=file.path)
            elif file.data is not None:
                scanned = await asyncio.to_thread(_scan_bytes, file.data)
                out[file] = scanned.result(file, data=file.data)
            else:
                out[file] = await _spool(file, stack)
        yield out


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

    async def _iter(self) -> AsyncIterator[bytes]:
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            source: PreparedFile = segment.source
            sent = 0
            async for chunk in source.chunks():
                sent += len(chunk)
                yield base64_text(chunk, self._body_encoding)
                if source.on_progress is not None:
                    source.on_progress(sent, source.size)

    async def write(self, writer: AbstractStreamWriter) -> None:
        async for chunk in self._iter():
            await writer.write(chunk)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self.write(writer)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streaming body is not decoded in memory; use as_bytes()")

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """The whole body (for tests and small bodies)."""
        return b"".join([chunk async for chunk in self._iter()])


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
