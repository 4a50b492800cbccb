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
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import attrs
from cattrs.errors import BaseValidationError

from . import _convert
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


# ------------------------------------------------------------------ URLs, secrets

_TOKEN_PARAM = re.compile(r"(access_token=)[^&#\s]*", re.IGNORECASE)
_TOKEN_PARAM_BYTES = re.compile(rb"(access_token=)[^&#\s\"]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the value of every ``access_token`` parameter replaced by ``***``."""
    return _TOKEN_PARAM.sub(r"\1***", str(url))


def redact_text(text: str, secret: str) -> str:
    """``text`` with ``secret`` and any ``access_token=`` value masked."""
    if secret:
        text = text.replace(secret, "***")
    return redact_url(text)


def redact_bytes(body: bytes, secret: str) -> bytes:
    """:func:`redact_text` for raw bytes (an answer that echoes the token)."""
    if secret:
        body = body.replace(secret.encode(), b"***")
    return _TOKEN_PARAM_BYTES.sub(rb"\1***", body)


def api_url(base_url: str, path: str) -> str:
    """``{base_url}{path}`` without the token (the client adds it as a parameter)."""
    return base_url.rstrip("/") + path


def file_url_path(base_url: str, url: str) -> str | None:
    """For a file URL under ``base_url`` (same scheme, host and port, and under its
    path), the rest of its path and its query minus any ``access_token``, ready for
    :func:`api_url`; ``None`` for any other URL."""
    base = urlsplit(base_url)
    target = urlsplit(url if "//" in url else api_url(base_url, url))
    same = (target.scheme, target.hostname, target.port or _port(target.scheme)) == (
        base.scheme,
        base.hostname,
        base.port or _port(base.scheme),
    )
    prefix = base.path.rstrip("/")
    path = target.path or "/"
    if not same or target.username or target.password or not path.startswith(prefix + "/"):
        return None
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(target.query, keep_blank_values=True)
            if k.lower() != "access_token"
        ]
    )
    return urlunsplit(("", "", path[len(prefix) :], query, ""))


def _port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


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
    text = body[: _EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = redact_text(" ".join(text.split()), secret)
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

    The body is redacted before anything is read from it, so neither the message, the
    field errors nor ``body`` can carry the secret even if the server echoed it.
    """
    body = redact_bytes(body, secret)
    decoded = _decode_json(body)
    envelope: Mapping[str, Any] = decoded if isinstance(decoded, Mapping) else {}
    code = _int_or_none(envelope.get("error_code", envelope.get("code")))
    errors = _field_errors(envelope.get("errors"))
    message = envelope.get("message")
    if not isinstance(message, str) or not message:
        message = excerpt(body, secret) if body and not envelope else f"HTTP {status}"
    message = redact_text(message, secret)
    kind = status if status >= 300 else (code if code and 400 <= code < 600 else 400)
    common: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "errors": errors,
        "method": method,
        "url": url,
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
        raise DecodeError(
            f"expected a JSON object from {method} {url}, got HTTP {status}: "
            f"{excerpt(body, secret)!r}",
            status=status,
            excerpt=excerpt(body, secret),
            url=url,
        )
    if decoded.get("status") == "error":
        raise error_from_response(status, body, method=method, url=url, secret=secret)
    return decoded


def looks_like_error_envelope(head: bytes) -> bool:
    """Whether a download's first bytes look like a JSON object instead of a file."""
    return head.lstrip()[:1] == b"{"


def structure(
    data: Mapping[str, Any], cls: type[T], *, status: int = 200, url: str = "", secret: str = ""
) -> T:
    """Decode ``data`` into ``cls``; a shape we cannot read is a :class:`DecodeError`."""
    try:
        return _convert.structure(data, cls)
    except (TypeError, ValueError, KeyError, AttributeError, BaseValidationError) as exc:
        problem = type(exc).__name__
    short = excerpt(json.dumps(data, default=str).encode(), secret)
    raise DecodeError(
        f"unexpected {cls.__name__} answer from {url or 'the API'} ({problem}): {short!r}",
        status=status,
        excerpt=short,
        url=url,
    )
