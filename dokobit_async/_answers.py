"""Answers into models or errors: the pure half of the client's call path.

The client sends a :class:`~dokobit_async.sansio.Request` once and hands the answer
here: a JSON answer becomes its model (:func:`decipher_json`), an error answer a
``Failure`` (:func:`failure_from_answer`) for the retry policy to judge. Every error
built here carries the call as ``request``, and every string it shows is redacted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from cattrs.errors import BaseValidationError

from . import _convert
from ._redact import redact, redact_bytes, redact_data
from ._request import Request
from .exceptions import (
    APIError,
    AuthenticationError,
    DecodeError,
    DokobitError,
    FieldError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    ValidationError,
)
from .retry import Failure, outcome_of_status

__all__ = [
    "decipher_json",
    "error_from_response",
    "excerpt",
    "failure_from_answer",
    "looks_like_error_envelope",
    "parse_json_response",
    "parse_retry_after",
    "raise_for_error_envelope",
    "structure",
]

T = TypeVar("T")

_EXCERPT_CHARS = 200
_GATEWAY_STATUSES = (502, 504)  # a proxy answered: it may have passed the request on


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
    request: Request | None = None,
) -> APIError:
    """The error for an error answer.

    Its class follows the HTTP status, or for a 2xx with an error body the envelope's
    ``code``/``error_code`` when that is an HTTP status. The body is redacted before
    anything is read from it, and every string decoded from it again (keys too), so
    neither the message, the field errors, ``body`` nor ``url`` can carry the secret
    in any spelling, even if the server echoed it.

    Args:
        status: The HTTP status.
        body: The answer's body (or its start).
        method: The request's method (by default ``request.method``).
        url: The request's URL as shown, ``access_token=***`` (redacted here again).
        retry_after: The ``Retry-After`` header, if any.
        secret: The access token, masked wherever it appears.
        request: The call, set as the error's ``request``.

    Returns:
        An :class:`APIError` of the matching subclass.
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
        "method": method or (request.method if request is not None else ""),
        "url": redact(url, secret),
        "body": envelope or None,
        "request": request,
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
    status: int,
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    secret: str = "",
    request: Request | None = None,
) -> Mapping[str, Any]:
    """The decoded object of a successful JSON answer.

    Args:
        status: The HTTP status (a 2xx).
        body: The whole body.
        method, url, secret, request: As for :func:`error_from_response`.

    Returns:
        The decoded JSON object.

    Raises:
        DecodeError: The body is not a JSON object.
        APIError: The object's ``status`` is ``"error"`` (a subclass, as
            :func:`error_from_response` picks it).
    """
    decoded = _decode_json(body)
    if not isinstance(decoded, Mapping):
        url, short = redact(url, secret), excerpt(body, secret)
        method = method or (request.method if request is not None else "")
        raise DecodeError(
            f"expected a JSON object from {method} {url}, got HTTP {status}: {short!r}",
            status=status,
            excerpt=short,
            url=url,
            request=request,
        )
    if decoded.get("status") == "error":
        raise error_from_response(
            status, body, method=method, url=url, secret=secret, request=request
        )
    return decoded


def looks_like_error_envelope(head: bytes) -> bool:
    """Whether a download's first bytes look like a JSON object instead of a file."""
    return head.lstrip()[:1] == b"{"


def raise_for_error_envelope(
    status: int,
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    secret: str = "",
    request: Request | None = None,
) -> None:
    """Raise the matching error if a download's answer is an error envelope; any other
    body (JSON or not: a file may start with ``{``) is left to the caller.

    Raises:
        APIError: The body is the API's error envelope (``request`` set).
    """
    decoded = _decode_json(body)
    if isinstance(decoded, Mapping) and decoded.get("status") == "error":
        raise error_from_response(
            status, body, method=method, url=url, secret=secret, request=request
        )


def structure(
    data: Mapping[str, Any],
    cls: type[T],
    *,
    status: int = 200,
    url: str = "",
    secret: str = "",
    request: Request | None = None,
) -> T:
    """Decode ``data`` into ``cls``.

    Raises:
        DecodeError: ``data`` has a shape that ``cls`` cannot read (``request`` set).
    """
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
        request=request,
    )


# ------------------------------------------------------------------ deciphering


def decipher_json(
    request: Request, status: int, body: bytes, model: type[T], *, url: str, secret: str
) -> T:
    """A 2xx JSON answer to ``request`` as ``model``.

    Args:
        request: The call.
        status: The HTTP status (a 2xx).
        body: The whole body.
        model: The attrs class to decode into.
        url, secret: As for :func:`error_from_response`.

    Returns:
        The decoded model.

    Raises:
        DecodeError: The body is not the JSON object ``model`` reads.
        APIError: The body is the API's error envelope.
    """
    data = _decode_json(body)
    # (a JSON object decodes to a dict: the exact type test spares the ABC check)
    if not (type(data) is dict or isinstance(data, Mapping)) or data.get("status") == "error":
        data = parse_json_response(status, body, url=url, secret=secret, request=request)  # raises
    return structure(data, model, status=status, url=url, secret=secret, request=request)


def failure_from_answer(
    request: Request, status: int, body: bytes, *, retry_after: str | None, url: str, secret: str
) -> Failure:
    """An error answer (4xx, 5xx) to ``request`` as a ``Failure`` (``retry.Failure``, internal).

    A write answered 502 or 504 (by a gateway, which may have passed it on) fails
    with an :class:`OutcomeUnknownError` whose ``__cause__`` is the error built from
    the answer: the API may have got the call, or not.

    Args:
        request: The call.
        status: The HTTP status.
        body: The answer's body (or its start).
        retry_after, url, secret: As for :func:`error_from_response`.

    Returns:
        The failure, its outcome given by the status.
    """
    error = error_from_response(
        status, body, url=url, retry_after=retry_after, secret=secret, request=request
    )
    seconds = error.retry_after if isinstance(error, RateLimitedError) else None
    failure: DokobitError = error
    if status in _GATEWAY_STATUSES and not request.idempotent:
        reason = f"HTTP {status}"
        reason += "" if error.message == reason else f": {error.message}"
        failure = OutcomeUnknownError(
            f"{request.method} {error.url}: a gateway answered {reason}; the call may or may "
            "not have taken effect, so it was not repeated: check the state before retrying",
            method=request.method,
            url=error.url,
            reason=reason,
            status=status,
            request=request,
        )
        failure.__cause__ = error
    return Failure(
        outcome=outcome_of_status(status), error=failure, retry_after=seconds, label=str(status)
    )
