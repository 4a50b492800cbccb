"""One HTTP exchange, what a failed one becomes, and a download's body as a stream.

:func:`send_once` is the client's seam (as gidgethub's ``_request`` is): it sends one
request, follows a download's redirects on the API's origin, and returns the answer
or a :class:`~dokobit_async.retry.Failure`; it never retries and never raises an
aiohttp error. :func:`decipher` reads the answer's body and hands it to ``sansio``.

aiohttp's exceptions embed the full request URL, and the access token travels in its
query string, so none of them reaches the caller or is chained to our errors:
:func:`classify` judges how far a request got (the retry policy's
:class:`~dokobit_async.retry.Outcome`) and which of our errors it is, and
:func:`transport_failure` builds that error with its reason redacted.
:class:`Download` streams an answer's body; a failure midway becomes our own error too.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
import attrs
from yarl import URL

from . import _telemetry, _urls, sansio
from ._answers import failure_from_answer
from ._payload import StreamingBody
from ._redact import printable, redact
from .exceptions import (
    ConnectError,
    ForeignURLError,
    OutcomeUnknownError,
    RequestTimeoutError,
    TransportError,
)
from .ratelimit import Limiter, timed_acquire
from .retry import Failure, Outcome

__all__ = [
    "Download",
    "Timeout",
    "classify",
    "decipher",
    "file_request",
    "no_resend",
    "send_once",
    "transport_failure",
    "with_token",
]

logger = logging.getLogger("dokobit_async")
T = TypeVar("T")

ERROR_BODY_LIMIT = 1024 * 1024
"""How much of an error answer's body is read (and of a download's error envelope)."""

_READ_CHUNK = 64 * 1024
_TARGETS_KEPT = 256  # URLs with the token that one client keeps (a cache, bounded)
# what aiohttp and the socket layer raise for a failed exchange; none may escape
_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@attrs.frozen(kw_only=True)
class Timeout:
    """How long the client waits. There is no total timeout, so a large download is
    never cut off while data keeps flowing.

    Attributes:
        connect: Seconds to get a connection (``None``: no limit).
        read: Seconds of silence allowed between two reads (``None``: no limit).
    """

    connect: float | None = 10.0
    read: float | None = 60.0


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


def transport_failure(
    exc: BaseException, request: sansio.Request, *, url: str, secret: str
) -> Failure:
    """The :class:`Failure` of ``request``, which failed with ``exc``.

    Args:
        exc: The aiohttp (or socket) exception; it is not chained to the error.
        request: The call.
        url: Its URL as shown (:func:`~dokobit_async._urls.shown_url`).
        secret: The access token, masked wherever it appears.

    Returns:
        The failure; its error is an :class:`OutcomeUnknownError` for a write whose
        answer was lost.
    """
    outcome, kind = classify(exc)
    reason = redact(f"{type(exc).__name__}: {exc}", secret)
    url = redact(url, secret)
    message = f"{request.method} {url}: {reason}"
    if outcome is Outcome.LOST and not request.idempotent:
        kind = OutcomeUnknownError
        message = (
            f"{request.method} {url}: the answer was lost ({reason}); the call may or may "
            "not have taken effect, so it was not repeated: check the state before retrying"
        )
    error = kind(message, method=request.method, url=url, reason=reason, request=request)
    return Failure(outcome=outcome, error=error, label=type(exc).__name__)


def no_resend(session: aiohttp.ClientSession) -> None:
    """Stop ``session`` resending a request by itself.

    aiohttp resends an idempotent request once, on its own, when a reused keep-alive
    connection turns out closed; that resend would bypass the rate limit and the retry
    policy. The switch is private (``ClientSession._retry_connection``). If a future
    aiohttp drops it, this warns (a ``RuntimeWarning``, shown once by Python's default
    filter) rather than fail: the loss is one unlimited resend of a ``GET`` (aiohttp
    never resends a ``POST``), too small to refuse every call for, too large to hide.
    """
    if not hasattr(session, "_retry_connection"):
        warnings.warn(
            "aiohttp.ClientSession has no _retry_connection: this aiohttp may resend a GET "
            "on its own, outside dokobit-async's rate limit and retry policy",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    session._retry_connection = False


async def send_once(
    session: aiohttp.ClientSession,
    request: sansio.Request,
    *,
    base_url: str,
    token: str,
    body: StreamingBody | None,
    timeout: aiohttp.ClientTimeout,
    limiter: Limiter | None,
    targets: dict[str, URL] | None = None,
) -> aiohttp.ClientResponse | Failure:
    """Send ``request`` once: its answer (never a redirect, body unread) or a failure.

    aiohttp's own redirect handling is off: it would turn a 301-303 on a write into a
    GET on the other host (whose answer we would then return) and resend a write's
    body on a 307/308. A download follows up to ``MAX_REDIRECTS`` redirects here, only
    on the API's origin, with the token re-added there (each hop passes the limiter);
    every other 3xx fails with :class:`~dokobit_async.exceptions.RedirectError`.

    Each exchange holds a slot of ``limiter`` from before it is sent until its answer's
    head has come back (or it failed, or was cancelled). ``targets`` keeps the URLs
    with the token that were built (see :func:`with_token`).
    """
    url = _urls.api_url(base_url, request.path)
    hops = 0  # redirects followed
    try:
        target = with_token(url, token, targets)
        while hops <= _urls.MAX_REDIRECTS:  # the last pass cannot follow, so it returns
            if limiter is not None:
                if (hooks := _telemetry.client) is not None:  # the wait is measured
                    await timed_acquire(limiter, hooks.rate_limit_waited)
                elif not limiter.try_acquire():
                    await limiter.acquire()
            try:
                response = await session.request(
                    request.method,
                    target,
                    data=body,
                    timeout=timeout,
                    allow_redirects=False,
                    raise_for_status=False,  # a borrowed session may raise by default
                )
            finally:
                # answered, failed or cancelled: the slot is stamped now, after the
                # request reached the server if it ever did
                # (docs/architecture.md#the-rate-limit)
                if limiter is not None:
                    limiter.release()
            if not 300 <= response.status < 400:
                return response
            response.release()
            location = response.headers.get("Location")
            onward = _urls.redirect_path(base_url, url, location) if request.returns_file else None
            follow = onward is not None and hops < _urls.MAX_REDIRECTS
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %d, %s",
                    request.method,
                    redact(url, token),
                    response.status,
                    "following it on the API's origin" if follow else "not following it",
                )
            if onward is None or not follow:
                error = _urls.refused_redirect(
                    request,
                    status=response.status,
                    url=url,
                    location=location,
                    base_url=base_url,
                    exhausted=onward is not None,
                    secret=token,
                )
                return Failure(outcome=Outcome.FINAL, error=error, label=str(response.status))
            url = _urls.api_url(base_url, onward)
            target = with_token(url, token)
            hops += 1
    except _FAILURES as exc:
        shown = _urls.shown_url(base_url, request.path)
        return transport_failure(exc, request, url=shown, secret=token)
    raise AssertionError("unreachable: the last hop returns")  # pragma: no cover


def with_token(url: str, token: str, cache: dict[str, URL] | None = None) -> URL:
    """``url`` with ``token`` as its ``access_token`` parameter, exactly as aiohttp adds
    it from ``params``, built once per URL in ``cache`` (a client's, bounded): polling
    a signing reuses it.

    Raises:
        aiohttp.InvalidUrlClientError: ``url`` is not a URL (as aiohttp raises it).
    """
    if cache is not None and (found := cache.get(url)) is not None:
        return found
    try:
        target = URL(url).extend_query(access_token=token)
    except ValueError:  # aiohttp's own error for it, judged as aiohttp's would be
        raise aiohttp.InvalidUrlClientError(url) from None
    if cache is not None:
        if len(cache) >= _TARGETS_KEPT:
            cache.clear()
        cache[url] = target
    return target


async def decipher(
    response: aiohttp.ClientResponse,
    request: sansio.Request,
    consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    *,
    url: str,
    secret: str,
) -> T | Failure:
    """What an answer to ``request`` says: ``consume``'s result for a 2xx, else a failure.

    ``consume`` reads a 2xx body and deciphers it (``sansio``); an error answer's body
    is read here, up to :data:`ERROR_BODY_LIMIT`, and becomes a failure
    (:func:`~dokobit_async.failure_from_answer`). A read that breaks off is a
    transport failure. The response is released unless ``consume`` returns it open
    (a download); an error raised by ``consume`` propagates.
    """
    try:
        if response.status < 300:
            return await consume(response)
        body = await response.content.read(ERROR_BODY_LIMIT)
    except _FAILURES as exc:
        response.release()
        return transport_failure(exc, request, url=url, secret=secret)
    except BaseException:
        response.release()
        raise
    response.release()
    return failure_from_answer(
        request,
        response.status,
        body,
        retry_after=response.headers.get("Retry-After"),
        url=url,
        secret=secret,
    )


class Download:
    """An open download: iterate it for chunks of bytes (``async for chunk in dl``).

    Attributes:
        content_type: The ``Content-Type`` header, if any.
        content_length: The ``Content-Length`` header, if any.
        filename: The file name of the ``Content-Disposition`` header, if any.
        request: The call that fetched it.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        head: bytes,
        *,
        request: sansio.Request,
        url: str,
        secret: str,
    ):
        self._response = response
        self._head = head
        self._url = url
        self._secret = secret
        self.request = request
        self.content_type: str | None = response.headers.get("Content-Type")
        self.content_length: int | None = response.content_length
        self.filename: str | None = (
            response.content_disposition.filename if response.content_disposition else None
        )

    def __repr__(self) -> str:
        shown = redact(f"{self.request.method} {self._url}", self._secret)
        return f"<Download {shown} {self.content_type or ''}>".replace(" >", ">")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._head:
            yield self._head
        failure: TransportError | None = None
        try:
            async for chunk in self._response.content.iter_chunked(_READ_CHUNK):
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            _, kind = classify(exc)
            url = redact(self._url, self._secret)
            failure = kind(
                f"download broke off: {self.request.method} {url}: {type(exc).__name__}",
                method=self.request.method,
                url=url,
                reason=redact(str(exc), self._secret),
                request=self.request,
            )
        if failure is not None:
            raise failure

    async def read(self) -> bytes:
        """The whole body.

        Raises:
            TransportError: The body broke off midway.
        """
        return b"".join([chunk async for chunk in self])


def file_request(base_url: str, url: str, *, secret: str) -> sansio.Request:
    """The request that downloads a file URL Dokobit handed out, if it is a
    well-formed http(s) URL under ``base_url`` (see ``_urls.file_url_path``).

    Raises:
        ForeignURLError: Any other URL: the access token would go elsewhere.
    """
    path = _urls.file_url_path(base_url, url)
    # a URL that carries the token anywhere but its access_token parameter would
    # keep it in the Request that every error of this call holds
    if path is None or redact(path, secret) != path:
        shown = printable(redact(url, secret) if isinstance(url, str) else repr(url))
        raise ForeignURLError(
            f"refusing to send the access token to '{shown}': only well-formed "
            f"http(s) URLs under {redact(base_url, secret)} are fetched"
        )
    return sansio.Request(
        operation="download_file", method="GET", path=path, idempotent=True, returns_file=True
    )
