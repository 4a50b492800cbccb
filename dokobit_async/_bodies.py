"""Request bodies as bytes: the form and JSON encodings, and base64 file content.

Pure, no I/O (``sansio`` re-exports these names). :func:`encode_body` turns a
request's fields into bytes segments with :class:`Base64Content` placeholders between
them; ``_payload`` streams the base64 of each file into its placeholder. The rule for
that base64 has one home, here: :func:`base64_text` writes it, and
:func:`base64_growth` with :func:`base64_size` give its exact length beforehand (the
``Content-Length``), both from the same table of form escapes. Both take a file in
pieces whose lengths are multiples of 3 (all but the last): the texts of the pieces,
joined, are the text of the whole file, and their growths add up to its growth.

A request without fields (``delete``) still goes out with a body when its method has
one: an empty form, ``Content-Length: 0`` (:func:`content_type`).
"""

from __future__ import annotations

import base64
import enum
import json
import re
import secrets
import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote_plus

import attrs

from .exceptions import InvalidArgumentError
from .models import SigningFile

if TYPE_CHECKING:
    from ._request import Request

__all__ = [
    "BODY_ENCODINGS",
    "CONTENT_TYPES",
    "FORM",
    "JSON",
    "PIECE",
    "Base64Content",
    "FilePart",
    "FileSource",
    "Segment",
    "base64_block_growth",
    "base64_growth",
    "base64_pieces",
    "base64_size",
    "base64_text",
    "check_pdf_files",
    "content_type",
    "encode_body",
    "file_parts",
]

FORM = "form"
JSON = "json"
BODY_ENCODINGS = (FORM, JSON)
CONTENT_TYPES = {FORM: "application/x-www-form-urlencoded", JSON: "application/json"}

# quote_plus, which escapes every other form value, keeps base64's letters and digits
# and escapes exactly these three of its characters (a test holds the two together)
_FORM_ESCAPES = ((b"+", b"%2B"), (b"/", b"%2F"), (b"=", b"%3D"))
_PAD = b"="  # base64's padding: only at the end of a text, so never counted by a scan
_GROWTH = 2  # each escape turns one character into three
# base64_growth's scan: a table marks each escaped character (but the padding) with 1,
# and adler32 adds the marks up (the low half of an adler32 is 1 + the sum, modulo
# 65521: exact for fewer than 65520 bytes); one translate and adler32 cost less than
# two bytes.count scans, each as slow as the base64 encoding (benchmarks/upload_bench.py)
_MARKS = bytes(bytes([c]) in {char for char, _ in _FORM_ESCAPES} - {_PAD} for c in range(256))
_SPAN = 1 << 15
PIECE = 3 * 8 * 1024
"""Raw bytes per base64 call when a block of a file is encoded: 24 KiB in, 32 KiB of
text out, which stays in the CPU cache (a text of a larger block at once costs half as
much again: ``benchmarks/upload_bench.py``)."""


@attrs.frozen(kw_only=True)
class FilePart:
    """A file inside a request body: encodes as ``{name, content[, digest]}``."""

    file: SigningFile
    with_digest: bool = True


def file_parts(value: Any) -> Iterator[FilePart]:
    """The file parts inside ``value`` (a request's fields), in body order."""
    if isinstance(value, FilePart):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from file_parts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from file_parts(item)


class FileSource(Protocol):
    """A file prepared for upload: its digest is known and it can be re-read."""

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the raw bytes."""

    @property
    def head(self) -> bytes:
        """The first bytes of the file (for type sniffing)."""


@attrs.frozen
class Base64Content:
    """A placeholder in an encoded body: the base64 of ``source`` goes here."""

    source: Any


Segment = bytes | Base64Content


def base64_text(chunk: bytes | memoryview, encoding: str) -> bytes:
    """The base64 of ``chunk`` as it goes into a body of ``encoding``.

    Args:
        chunk: Raw bytes; a multiple of 3 long unless it is a file's last chunk, so
            that the texts of a file's chunks, joined, are the text of the file.
        encoding: ``"form"`` (escaped as ``quote_plus`` escapes it) or ``"json"``.

    Returns:
        The text, as ASCII bytes.
    """
    text = base64.b64encode(chunk)
    if encoding == FORM:
        for char, escaped in _FORM_ESCAPES:
            text = text.replace(char, escaped)  # a character absent costs one memchr
    return text


def base64_growth(text: bytes) -> int:
    """How many bytes the form escaping adds to the (unescaped) base64 ``text``.

    ``text`` is what ``b64encode`` returns, so its padding is at its end and is
    counted there; the other escaped characters are counted in one scan.
    """
    padding = len(text) - len(text.rstrip(_PAD))
    marks = memoryview(text.translate(_MARKS))
    found = sum(
        (zlib.adler32(marks[i : i + _SPAN]) & 0xFFFF) - 1 for i in range(0, len(marks), _SPAN)
    )
    return (found + padding) * _GROWTH


def base64_pieces(block: bytes | memoryview, encoding: str) -> list[bytes]:
    """:func:`base64_text` of ``block``, in pieces of :data:`PIECE` raw bytes; joined,
    they are the text of the block."""
    return [base64_text(block[i : i + PIECE], encoding) for i in range(0, len(block), PIECE)]


def base64_block_growth(block: bytes | memoryview) -> int:
    """:func:`base64_growth` of the base64 of the raw ``block``, piece by piece."""
    return sum(
        base64_growth(base64.b64encode(block[i : i + PIECE])) for i in range(0, len(block), PIECE)
    )


def base64_size(size: int, growth: int, encoding: str) -> int:
    """The length of a file's base64 text in a body of ``encoding``.

    Args:
        size: The file's length in bytes.
        growth: The sum of :func:`base64_growth` over the base64 of its chunks.
        encoding: ``"form"`` or ``"json"``.

    Returns:
        What :func:`base64_text` yields for the whole file, in bytes.
    """
    return 4 * ((size + 2) // 3) + (growth if encoding == FORM else 0)


def content_type(request: Request, encoding: str) -> str:
    """The ``Content-Type`` of ``request``'s body in ``encoding``.

    A request without fields is an empty form whatever the encoding, as Dokobit's
    PHP example sends a bodiless ``POST`` (an empty body is not JSON).
    """
    return CONTENT_TYPES[encoding if request.fields is not None else FORM]


def check_pdf_files(request: Request, prepared: Mapping[SigningFile, FileSource]) -> None:
    """Refuse a ``type="pdf"`` signing whose files are not PDFs (``%PDF-`` magic).

    Raises:
        InvalidArgumentError: A file is not a PDF; its ``request`` is ``request``.
    """
    if not request.fields or request.fields.get("type") != "pdf":
        return
    for file in request.files:
        if not prepared[file].head.startswith(b"%PDF-"):
            error = InvalidArgumentError(f"type='pdf' but {file.name!r} is not a PDF file")
            error.request = request
            raise error


def _scalar(value: Any, encoding: str) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return value if encoding == JSON else ("1" if value else "0")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if encoding == FORM and isinstance(value, (int, float)):
        return str(value)
    return value


def _expand(value: Any, prepared: Mapping[SigningFile, FileSource], encoding: str) -> Any:
    """Resolve file parts and scalars; drop ``None`` values."""
    if isinstance(value, FilePart):
        out: dict[str, Any] = {"name": value.file.name, "content": None}
        out["content"] = Base64Content(prepared[value.file])
        if value.with_digest:
            out["digest"] = prepared[value.file].digest
        return out
    if isinstance(value, Mapping):
        return {k: _expand(v, prepared, encoding) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_expand(v, prepared, encoding) for v in value if v is not None]
    return _scalar(value, encoding)


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """PHP ``http_build_query`` names: ``files[0][name]``, ``signers[1][email]``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(f"{prefix}[{key}]" if prefix else str(key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(f"{prefix}[{index}]", item)
    else:
        yield prefix, value


def encode_body(
    request: Request, encoding: str, prepared: Mapping[SigningFile, FileSource]
) -> list[Segment]:
    """The body of ``request`` as bytes segments with base64 placeholders between them.

    Form bodies use PHP bracket names with booleans as ``1``/``0``; JSON bodies nest.
    A request without fields has an empty body (no segments).
    """
    if request.fields is None:
        return []
    data = _expand(request.fields, prepared, encoding)
    segments: list[Segment] = []
    if encoding == FORM:
        text: list[str] = []
        for index, (name, value) in enumerate(_flatten("", data)):
            text.append(("&" if index else "") + quote_plus(name) + "=")
            if isinstance(value, Base64Content):
                segments.extend(("".join(text).encode("ascii"), value))
                text = []
            else:
                text.append(quote_plus(str(value)))
        segments.append("".join(text).encode("ascii"))
    else:
        contents: list[Base64Content] = []
        nonce = secrets.token_hex(8)

        def marker(obj: Any) -> str:
            if isinstance(obj, Base64Content):
                contents.append(obj)
                return f"{nonce}:{len(contents) - 1}"
            raise TypeError(f"cannot encode {type(obj).__name__} as JSON")

        dumped = json.dumps(data, default=marker, separators=(",", ":"))
        # a random nonce: no text the caller sends can collide with a placeholder
        for index, piece in enumerate(re.split(f'"{nonce}:\\d+"', dumped)):
            if index:
                segments.extend((b'"', contents[index - 1], b'"'))
            segments.append(piece.encode("utf-8"))
    return [s for s in segments if not isinstance(s, bytes) or s]
