"""The pure core: requests as data, body encodings, answers into models or errors.

Postbacks belong here too: :func:`parse_postback` (defined in ``events``, beside the
event classes it builds) turns a postback body into a typed event.

Nothing here touches a socket, a file or the event loop (a test imports this module in
a fresh interpreter and checks that aiohttp was not imported). ``client.py`` turns a
:class:`Request` into HTTP and hands the answer back to :func:`parse_json_response` or
:func:`error_from_response`.
"""

from __future__ import annotations

import enum
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote_plus

import attrs
from cattrs.errors import BaseValidationError

from . import _convert

# redaction lives in ``_redact`` (one function for the client, the receiver and the
# CLI) and URL rules in ``_urls``; their older names stay importable from here
from ._redact import redact, redact_bytes, redact_data
from ._urls import api_url as api_url
from ._urls import file_url_path as file_url_path
from .events import parse_postback
from .exceptions import (
    APIError,
    AuthenticationError,
    DecodeError,
    FieldError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    ValidationError,
)
from .models import SigningFile

T = TypeVar("T")

redact_url = redact_text = redact  # older names of the one redaction function

__all__ = ["Request", "error_from_response", "parse_json_response", "parse_postback"]

FORM = "form"
JSON = "json"
BODY_ENCODINGS = (FORM, JSON)
CONTENT_TYPES = {FORM: "application/x-www-form-urlencoded", JSON: "application/json"}

_EXCERPT_CHARS = 200


# ------------------------------------------------------------------ requests


@attrs.frozen(kw_only=True)
class FilePart:
    """A file inside a request body: encodes as ``{name, content[, digest]}``."""

    file: SigningFile
    with_digest: bool = True


@attrs.frozen(kw_only=True)
class Request:
    """One API call as data: the client sends it, the tests inspect it.

    ``path`` starts with ``/api/``; ``fields`` is the body as nested dicts and lists
    (``None`` values are dropped on encoding); ``idempotent`` says whether the call may
    be repeated after its outcome became unknown; ``returns_file`` marks downloads.
    """

    operation: str
    method: str
    path: str
    fields: Mapping[str, Any] | None = None
    idempotent: bool = False
    returns_file: bool = False

    @property
    def files(self) -> tuple[SigningFile, ...]:
        """The files this request uploads, in body order."""
        return tuple(part.file for part in _walk_parts(self.fields))


def _walk_parts(value: Any) -> Iterator[FilePart]:
    if isinstance(value, FilePart):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_parts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk_parts(item)


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


def check_pdf_files(request: Request, prepared: Mapping[SigningFile, FileSource]) -> None:
    """Refuse ``type="pdf"`` signings whose files are not PDFs (``%PDF-`` magic)."""
    if not request.fields or request.fields.get("type") != "pdf":
        return
    for file in request.files:
        if not prepared[file].head.startswith(b"%PDF-"):
            raise InvalidArgumentError(f"type='pdf' but {file.name!r} is not a PDF file")


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
    """
    data = _expand(request.fields or {}, prepared, encoding)
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


# ------------------------------------------------------------------ answers


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def excerpt(body: bytes, secret: str = "") -> str:
    """A short, printable, redacted start of ``body`` for error messages."""
    # redact before cutting: a cut could split a spelling of the secret and so keep
    # part of it
    text = redact_bytes(body, secret)[: _EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = redact(" ".join(text.split()), secret)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _field_errors(items: Any) -> tuple[FieldError, ...]:
    if not isinstance(items, list):
        return ()
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(
                FieldError(
                    message=str(item.get("message", "")),
                    error_code=_int_or_none(item.get("error_code", item.get("code"))),
                    field=None if item.get("field") is None else str(item.get("field")),
                )
            )
        elif item is not None:
            out.append(FieldError(message=str(item)))
    return tuple(out)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def error_from_response(
    status: int,
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    retry_after: str | None = None,
    secret: str = "",
) -> APIError:
    """The error for an error answer: by HTTP status, or for a 2xx with an error body
    by the envelope's ``code``/``error_code`` when it is an HTTP status.

    The body is redacted before anything is read from it, and every string decoded
    from it again (keys too), so neither the message, the field errors, ``body`` nor
    ``url`` can carry the secret in any spelling, even if the server echoed it.
    """
    body = redact_bytes(body, secret)
    decoded = redact_data(_decode_json(body), secret)
    envelope: Mapping[str, Any] = decoded if isinstance(decoded, Mapping) else {}
    code = _int_or_none(envelope.get("error_code", envelope.get("code")))
    errors = _field_errors(envelope.get("errors"))
    message = envelope.get("message")
    if not isinstance(message, str) or not message:
        message = excerpt(body, secret) if body and not envelope else f"HTTP {status}"
    message = redact(message, secret)
    kind = status if status >= 300 else (code if code and 400 <= code < 600 else 400)
    common: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "errors": errors,
        "method": method,
        "url": redact(url, secret),
        "body": envelope or None,
    }
    if kind == 429:
        return RateLimitedError(message, retry_after=parse_retry_after(retry_after), **common)
    cls: type[APIError]
    if kind == 404 or any(e.field == "[token]" for e in errors):
        cls = NotFoundError
    elif kind in (401, 403):
        cls = AuthenticationError
    elif kind >= 500:
        cls = ServerError
    elif kind == 400:
        cls = ValidationError
    else:
        cls = APIError
    return cls(message, **common)


def parse_json_response(
    status: int, body: bytes, *, method: str = "", url: str = "", secret: str = ""
) -> Mapping[str, Any]:
    """The decoded object of a successful JSON answer, or the matching error.

    A 2xx answer whose ``status`` is ``"error"`` is an error too.
    """
    decoded = _decode_json(body)
    if not isinstance(decoded, Mapping):
        url, short = redact(url, secret), excerpt(body, secret)
        raise DecodeError(
            f"expected a JSON object from {method} {url}, got HTTP {status}: {short!r}",
            status=status,
            excerpt=short,
            url=url,
        )
    if decoded.get("status") == "error":
        raise error_from_response(status, body, method=method, url=url, secret=secret)
    return decoded


def looks_like_error_envelope(head: bytes) -> bool:
    """Whether a download's first bytes look like a JSON object instead of a file."""
    return head.lstrip()[:1] == b"{"


def raise_for_error_envelope(
    status: int, body: bytes, *, method: str = "", url: str = "", secret: str = ""
) -> None:
    """Raise the matching error if a download's answer is an error envelope; any other
    body (JSON or not: a file may start with ``{``) is left to the caller."""
    decoded = _decode_json(body)
    if isinstance(decoded, Mapping) and decoded.get("status") == "error":
        raise error_from_response(status, body, method=method, url=url, secret=secret)


def structure(
    data: Mapping[str, Any], cls: type[T], *, status: int = 200, url: str = "", secret: str = ""
) -> T:
    """Decode ``data`` into ``cls``; a shape we cannot read is a :class:`DecodeError`."""
    try:
        return _convert.structure(data, cls)
    except (TypeError, ValueError, KeyError, AttributeError, BaseValidationError) as exc:
        problem = type(exc).__name__
    short = excerpt(json.dumps(data, default=str).encode(), secret)
    url = redact(url, secret)
    raise DecodeError(
        f"unexpected {cls.__name__} answer from {url or 'the API'} ({problem}): {short!r}",
        status=status,
        excerpt=short,
        url=url,
    )
