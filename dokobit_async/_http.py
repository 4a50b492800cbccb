"""The receiver's HTTP details that aiohttp does not settle for it: reading a body
(its size limit and its ``Content-Encoding``), the ``Expect`` header, and answering
before closing a connection whose framing cannot be trusted any more.

The receiver serves its own application with ``auto_decompress=False`` and decodes
``gzip`` and ``deflate`` bodies here, so that every encoding problem, including one
aiohttp would fail on while parsing the headers (``br`` without Brotli), reaches the
handler and gets a one-line 400. Mounted into an application whose server decodes
bodies itself, the receiver takes what aiohttp decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestPayloadError

from ._redact import printable, redact

if TYPE_CHECKING:
    from ._telemetry import PostbackSpan

__all__ = [
    "RAW_BODIES",
    "BadBodyError",
    "RedactingAccessLogger",
    "answer",
    "answer_and_close",
    "check_access_logger",
    "expect_continue",
    "read_body",
    "received_body",
    "refuse",
    "sender_gone",
    "unsupported_coding",
]

logger = logging.getLogger("dokobit_async.receiver")

RAW_BODIES = web.AppKey("dokobit_async.raw_bodies", bool)
"""Set in an application whose server runs with ``auto_decompress=False``."""

_READ_CHUNK = 64 * 1024
_OURS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_AIOHTTP_DECODES = frozenset({"gzip", "deflate", "br", "zstd"})
_MISSING = object()


class BadBodyError(Exception):
    """The body does not decode as its ``Content-Encoding`` says."""


def answer(status: int, text: str) -> web.Response:
    """A plain-text answer of one line."""
    return web.Response(status=status, text=text + "\n")


def refuse(span: PostbackSpan | None, reason: str, status: int, text: str) -> web.Response:
    """A refusal (:func:`answer`), told to the postback's span, if there is one, as
    ``reason`` (a short code, never the sender's text)."""
    if span is not None:
        span.refused(reason, status)
    return answer(status, text)


def sender_gone(request: web.BaseRequest) -> bool:
    """Whether the sender of ``request`` hung up (its connection is closed or closing)."""
    return request.transport is None or request.transport.is_closing()


def _coding(request: web.BaseRequest) -> str:
    return request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()


def _decoded_by_aiohttp(request: web.Request, coding: str) -> bool:
    # aiohttp (>= 3.13) sets this on a body stream that it decompresses, and nothing
    # public says whether it does: trust it where it exists (``receiver.app()`` may
    # be mounted as a sub-application, whose server does decode). Without it, go by
    # how the application was made, else assume aiohttp's default
    # (auto_decompress=True). Pinned by tests/test_receiver_http.py.
    marker = getattr(request.content, "total_compressed_bytes", _MISSING)
    if marker is not _MISSING:
        return marker is not None
    if request.config_dict.get(RAW_BODIES, False):  # pragma: no cover - aiohttp < 3.13
        return False
    return coding in _AIOHTTP_DECODES  # pragma: no cover - aiohttp < 3.13


def unsupported_coding(request: web.Request) -> str | None:
    """The request's ``Content-Encoding`` if it is one the body cannot be read in."""
    coding = _coding(request)
    if coding in ("", "identity") or coding in _OURS or _decoded_by_aiohttp(request, coding):
        return None
    return coding


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request's body, decoded; ``None`` when it (or what it decodes to) is
    larger than ``limit`` bytes. Raises :class:`BadBodyError` for a body that does not
    decode, and what aiohttp raises for broken framing or a lost connection."""
    coding = _coding(request)
    inflater = None
    if coding in _OURS and not _decoded_by_aiohttp(request, coding):
        inflater = _Inflater(coding, limit)
    chunks: list[bytes] = []
    size = received = 0
    while chunk := await request.content.read(_READ_CHUNK):
        received += len(chunk)
        if inflater is not None:
            chunk = inflater.feed(chunk)
        size += len(chunk)
        if size > limit or received > limit:
            return None
        chunks.append(chunk)
    if inflater is not None:
        inflater.finish()
    return b"".join(chunks)


class _Inflater:
    """gzip or zlib (also raw deflate, as aiohttp accepts it), never more than
    ``limit + 1`` bytes of output: a small body that inflates hugely is cut short."""

    def __init__(self, coding: str, limit: int):
        self.coding = coding
        self.limit = limit
        self.produced = 0
        self.decoder: zlib._Decompress | None = None

    def feed(self, data: bytes) -> bytes:
        if self.decoder is None:
            wbits = _OURS[self.coding]
            if self.coding == "deflate" and data[0] & 0x0F != 8:  # no zlib header
                wbits = -zlib.MAX_WBITS
            self.decoder = zlib.decompressobj(wbits)
        if self.decoder.eof:
            raise BadBodyError(f"data after the end of the {self.coding} stream")
        try:
            out = self.decoder.decompress(data, self.limit + 1 - self.produced)
        except zlib.error:
            raise BadBodyError(f"the body is not valid {self.coding}") from None
        self.produced += len(out)
        if self.decoder.unused_data:
            raise BadBodyError(f"data after the end of the {self.coding} stream")
        return out

    def finish(self) -> None:
        if self.decoder is None or not self.decoder.eof:
            raise BadBodyError(f"the {self.coding} stream is incomplete")


async def received_body(
    request: web.Request, limit: int, timeout: float, span: PostbackSpan | None
) -> bytes | web.Response:
    """The postback's body, decoded, or the refusal to answer with (told to ``span``):
    an unsupported ``Content-Encoding`` or a body that does not decode (400, closing
    the connection), larger than ``limit`` bytes (413), slower than ``timeout``
    seconds (408), broken framing (400), a sender that hung up mid-body."""
    coding = unsupported_coding(request)
    if coding is not None:
        logger.info("postback refused: unsupported Content-Encoding %s", printable(coding, 40))
        response = refuse(span, "unsupported_encoding", 400, "unsupported Content-Encoding")
        response.force_close()  # the body that follows is not ours to interpret
        return response
    if (request.content_length or 0) > limit:
        return refuse(span, "too_large", 413, f"body larger than {limit} bytes")
    try:
        if request.content.is_eof():  # all of it is here (the usual): no timer needed
            body = await read_body(request, limit)
        else:
            body = await asyncio.wait_for(read_body(request, limit), timeout=timeout)
    except asyncio.TimeoutError:
        return refuse(span, "too_slow", 408, "the body did not arrive in time")
    except BadBodyError as exc:
        logger.info("postback refused: %s", printable(exc))
        response = refuse(span, "undecodable", 400, f"the body could not be read: {exc}")
        response.force_close()
        return response
    except RequestPayloadError:  # aiohttp could not decode or frame it
        logger.info("postback refused: the body could not be read (encoding or framing)")
        if span is not None:
            span.refused("unreadable", 400)
        return await answer_and_close(request, 400, "the body could not be read")
    except OSError:  # e.g. ConnectionResetError: nobody is left to answer
        logger.info("postback not received: the sender closed the connection mid-body")
        return refuse(
            span, "sender_gone", 400, "the connection closed before the body was complete"
        )
    if body is None:
        return refuse(span, "too_large", 413, f"body larger than {limit} bytes")
    return body


async def answer_and_close(request: web.Request, status: int, text: str) -> web.Response:
    """Send the answer now, then close the connection.

    For a body whose stream holds an error (aiohttp failed to decode or to frame
    it): after a handler returns, aiohttp reads what is left of the body and would
    meet that error again, log it as an "Unhandled exception" with its traceback and
    drop the answer's connection anyway."""
    response = answer(status, text)
    response.force_close()
    with contextlib.suppress(OSError):
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()
    return response


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """The receiver's ``Expect`` handling: ``100-continue`` (any case) gets
    ``100 Continue``; any other expectation a 417 that closes the connection (the
    sender may or may not send the body). aiohttp's default handler echoes the value
    in its 417 and fails with a 500 on one that is not text (``Expect: \\x80``).
    Ignored in HTTP/1.0, as RFC 9110 asks."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").strip().lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer itself has not begun (as aiohttp does)
        return None
    shown = printable(request.headers[hdrs.EXPECT], 40)
    logger.info("postback refused: unsupported Expect %s", shown)
    response = answer(417, "only the expectation 100-continue is supported")
    response.force_close()
    return response


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger, with the postback URL's secret segment (and any
    ``access_token``) masked. Pass it as ``access_log_class`` to ``web.run_app`` or
    ``web.AppRunner``: the default logger writes the full request line."""

    def _format_line(self, request: Any, response: Any, time: float) -> Any:
        return [
            (key, redact(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


def check_access_logger() -> None:
    """Refuse to serve when :class:`RedactingAccessLogger` cannot mask the secret."""
    # aiohttp has no public hook for the values it logs; if a release renames the one
    # RedactingAccessLogger overrides, refuse to start rather than log the postback
    # secret (tests/test_client_seam.py pins it too)
    if not callable(getattr(AccessLogger, "_format_line", None)):
        raise RuntimeError(
            "this aiohttp's AccessLogger has no _format_line: RedactingAccessLogger "
            "cannot mask the postback secret; upgrade dokobit-async"
        )
