"""What a failed HTTP exchange becomes, and a download's body as a stream.

aiohttp's exceptions embed the full request URL, and the access token travels in its
query string, so none of them reaches the caller or is chained to our errors:
:func:`classify` judges how far a request got (the retry policy's
:class:`~dokobit_async.retry.Outcome`) and which of our errors it is, and
:func:`transport_failure` builds that error with its reason redacted.
:func:`gateway_failure` makes a write that a gateway answered 502/504 an
:class:`~dokobit_async.exceptions.OutcomeUnknownError`. :class:`Download` streams an
answer's body; a failure midway becomes our own error too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from ._redact import redact
from .exceptions import (
    APIError,
    ConnectError,
    DokobitError,
    OutcomeUnknownError,
    RequestTimeoutError,
    TransportError,
)
from .retry import Outcome

__all__ = ["Download", "classify", "gateway_failure", "transport_failure"]

_READ_CHUNK = 64 * 1024


def classify(exc: BaseException) -> tuple[Outcome, type[TransportError]]:
    """How far a failed request got, judged by the aiohttp exception."""
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.InvalidURL)):
        return Outcome.FINAL, ConnectError
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Outcome.NOT_SENT, ConnectError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Outcome.NOT_SENT, RequestTimeoutError
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return Outcome.LOST, RequestTimeoutError
    return Outcome.LOST, TransportError


class Download:
    """An open download: iterate it for chunks of bytes (``async for chunk in dl``).

    ``content_type``, ``content_length`` and ``filename`` come from the headers.
    """

    def __init__(self, response: aiohttp.ClientResponse, head: bytes, describe: str, secret: str):
        self._response = response
        self._head = head
        self._describe = describe
        self._secret = secret
        self.content_type: str | None = response.headers.get("Content-Type")
        self.content_length: int | None = response.content_length
        self.filename: str | None = (
            response.content_disposition.filename if response.content_disposition else None
        )

    def __repr__(self) -> str:
        return f"<Download {self._describe} {self.content_type or ''}>".replace(" >", ">")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._head:
            yield self._head
        failure: DokobitError | None = None
        try:
            async for chunk in self._response.content.iter_chunked(_READ_CHUNK):
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _, kind = classify(exc)
            failure = kind(
                f"download broke off: {self._describe}: {type(exc).__name__}",
                reason=redact(str(exc), self._secret),
            )
        if failure is not None:
            raise failure

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self])


def transport_failure(
    exc: BaseException, *, idempotent: bool, shown: str, secret: str
) -> tuple[Outcome, TransportError]:
    """The outcome of a request that failed with ``exc``, and the error to raise:
    :class:`OutcomeUnknownError` for a write whose answer was lost. ``shown`` is the
    request as errors show it (``METHOD url``, token masked)."""
    outcome, kind = classify(exc)
    reason = redact(f"{type(exc).__name__}: {exc}", secret)
    method, url = shown.split(" ", 1)
    if outcome is Outcome.LOST and not idempotent:
        return outcome, OutcomeUnknownError(
            f"{shown}: the answer was lost ({reason}); the call may or may not have "
            "taken effect, so it was not repeated: check the state before retrying",
            method=method,
            url=url,
            reason=reason,
        )
    return outcome, kind(f"{shown}: {reason}", method=method, url=url, reason=reason)


def gateway_failure(error: DokobitError, *, shown: str) -> DokobitError:
    """A write answered 502/504 by a gateway, which may have passed it on: the API
    may have got it, or not. ``error`` (ours, redacted) stays as the ``__cause__``, so
    its body and error code are at hand."""
    if not isinstance(error, APIError):
        return error
    method, url = shown.split(" ", 1)
    reason = f"HTTP {error.status}"
    if error.message != reason:
        reason += f": {error.message}"
    failure = OutcomeUnknownError(
        f"{shown}: a gateway answered {reason}; the call may or may not have taken "
        "effect, so it was not repeated: check the state before retrying",
        method=method,
        url=url,
        reason=reason,
        status=error.status,
    )
    failure.__cause__ = error
    return failure
