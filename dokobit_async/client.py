"""``DokobitClient``: the only module that sends HTTP requests.

One ``aiohttp.ClientSession`` (yours, borrowed, or ours, created lazily inside the
running loop), the shared per-token rate limit, retries that never resend a write
whose outcome is unknown, redirects that never carry a call (or the token) to another
host, and errors with the access token redacted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp
import attrs

from . import _actions, _namespaces, _urls, sansio
from ._payload import Dest, StreamingBody, prepared_files, write_chunks
from ._redact import printable, redact
from ._transport import Download, gateway_failure, transport_failure
from .exceptions import (
    ClientClosedError,
    DokobitError,
    ForeignURLError,
    InvalidArgumentError,
    TransportError,
)
from .models import Result
from .ratelimit import RateLimit, SharedLimiter, limiter_for
from .retry import Outcome, RetryPolicy, outcome_of_status

__all__ = ["BETA_URL", "PRODUCTION_URL", "DokobitClient", "Download", "Timeout"]

BETA_URL = "https://beta.dokobit.com"
#: No source names the production REST host; ``app.dokobit.com`` is the portal's own
#: host and the connector's. Pass ``base_url`` if Dokobit gives you another one.
PRODUCTION_URL = "https://app.dokobit.com"

logger = logging.getLogger("dokobit_async")
T = TypeVar("T")

_ENVELOPE_LIMIT = 1024 * 1024  # a download body starting with "{" is parsed up to this
_GATEWAY_STATUSES = (502, 504)  # a proxy answered: it may have passed the request on


@attrs.frozen(kw_only=True)
class Timeout:
    """``connect``: seconds to get a connection; ``read``: seconds of silence allowed
    between two reads. There is no total timeout, so a large download is never cut
    off while data keeps flowing. ``None`` switches one off."""

    connect: float | None = 10.0
    read: float | None = 60.0


class DokobitClient:
    """An asyncio client for the Dokobit Universal API.

    Use it as ``async with DokobitClient(token) as client:`` or call
    :meth:`aclose` when done. Pass ``session=`` to borrow your own
    ``aiohttp.ClientSession`` (it is never closed by the client); otherwise the client
    creates one inside the running loop and owns it. ``rate_limit=None`` switches the
    shared limiter off; ``body_encoding="json"`` sends JSON bodies instead of the
    form encoding of Dokobit's own examples. API calls never follow a redirect (it
    raises :class:`~dokobit_async.exceptions.RedirectError`); downloads follow up to
    three, on the API's own origin only.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = PRODUCTION_URL,
        session: aiohttp.ClientSession | None = None,
        rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 - frozen, shared safely
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, shared safely
        timeout: Timeout = Timeout(),
        body_encoding: str = sansio.FORM,
    ):
        if not isinstance(access_token, str) or not access_token.strip():
            raise InvalidArgumentError("access_token must be a non-empty string")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            shown = redact(base_url, access_token)
            raise InvalidArgumentError(
                f"base_url must be an http(s) URL without a query: {shown!r}"
            )
        if body_encoding not in sansio.BODY_ENCODINGS:
            raise InvalidArgumentError(
                f"body_encoding must be 'form' or 'json': {body_encoding!r}"
            )
        self._token = access_token
        self.base_url = base_url.rstrip("/")
        self.rate_limit = rate_limit
        self.retry = retry
        self.timeout = timeout
        self.body_encoding = body_encoding
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._limiter: SharedLimiter | None = None
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.connect, sock_read=timeout.read
        )
        self._rng = random.Random()
        self.external = _namespaces.ExternalSignings(self, "external")
        self.internal = _namespaces.InternalSignings(self, "internal")
        self.e_delivery = _namespaces.EDelivery(self)
        self.validation = _namespaces.Validation(self)

    def __repr__(self) -> str:
        return (
            f"DokobitClient(base_url={redact(self.base_url, self._token)!r}, access_token='***')"
        )

    async def __aenter__(self) -> DokobitClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if the client created it; borrowed ones stay open."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    # ------------------------------------------------------------ public actions

    seal = _namespaces.json_action(_actions.seal, Result)

    @overload
    async def download_file(self, url: str, dest: None = None) -> bytes: ...
    @overload
    async def download_file(self, url: str, dest: str | os.PathLike[str]) -> Path: ...
    @overload
    async def download_file(self, url: str, dest: IO[bytes]) -> None: ...
    async def download_file(self, url: str, dest: Dest = None) -> bytes | Path | None:
        """Download a file URL from a status response or a postback.

        The access token is added here, and only for the configured API host: a URL
        on any other host, or one that is not a well-formed http(s) URL under the base
        URL, raises :class:`ForeignURLError` and nothing is sent. ``dest`` works as for
        ``external.download``.
        """
        return await self._download(self._file_request(url), dest)

    def open_file(self, url: str) -> AbstractAsyncContextManager[Download]:
        """Like :meth:`download_file`, as ``async with client.open_file(url) as dl``."""
        return self._open(self._file_request(url))

    # ------------------------------------------------------------ internals

    def _file_request(self, url: str) -> sansio.Request:
        path = _urls.file_url_path(self.base_url, url)
        if path is None:
            shown = printable(redact(url, self._token) if isinstance(url, str) else repr(url))
            raise ForeignURLError(
                f"refusing to send the access token to '{shown}': only well-formed "
                f"http(s) URLs under {redact(self.base_url, self._token)} are fetched"
            )
        return sansio.Request(
            operation="download_file", method="GET", path=path, idempotent=True, returns_file=True
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this DokobitClient is closed")
        if self._session is not None and self._session.closed:
            raise ClientClosedError("the aiohttp session given to this DokobitClient is closed")
        if self._session is None:
            session = aiohttp.ClientSession(timeout=self._client_timeout)
            # aiohttp resends an idempotent request by itself, once, when a reused
            # keep-alive connection turns out closed; that resend would bypass the rate
            # limit and the retry policy, so our own session leaves retrying to us
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
        return self._session

    def _get_limiter(self) -> SharedLimiter | None:
        if self.rate_limit is None:
            return None
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter._loop is not loop:
            self._limiter = limiter_for(self._token, self.rate_limit)
        return self._limiter

    def _shown_url(self, request: sansio.Request) -> str:
        """The request's URL as errors show it, ``access_token=***``. Cheap (built for
        every call): whatever builds an error from it redacts it (``sansio``)."""
        return (
            f"{self.base_url}{request.path}{'&' if '?' in request.path else '?'}access_token=***"
        )

    def _masked(self, url: str) -> str:
        sep = "&" if "?" in url else "?"
        return redact(f"{url}{sep}access_token=***", self._token)

    def _shown(self, request: sansio.Request) -> str:
        """``METHOD URL`` for messages and logs, redacted."""
        return redact(f"{request.method} {self._shown_url(request)}", self._token)

    async def _json(self, request: sansio.Request, model: type[T]) -> T:
        """Send ``request`` and decode its JSON answer into ``model``."""

        async def consume(response: aiohttp.ClientResponse) -> T:
            body = await response.read()
            url = self._shown_url(request)
            data = sansio.parse_json_response(
                response.status, body, method=request.method, url=url, secret=self._token
            )
            return sansio.structure(
                data, model, status=response.status, url=url, secret=self._token
            )

        return await self._send(request, consume)

    async def _download(self, request: sansio.Request, dest: Dest) -> bytes | Path | None:
        async with self._open(request) as download:
            return await write_chunks(aiter(download), dest)

    @asynccontextmanager
    async def _open(self, request: sansio.Request) -> AsyncIterator[Download]:
        async def consume(response: aiohttp.ClientResponse) -> Download:
            head = await response.content.readany()
            if "json" in (response.content_type or "") or sansio.looks_like_error_envelope(head):
                while not response.content.at_eof() and len(head) < _ENVELOPE_LIMIT:
                    head += await response.content.readany()
                sansio.raise_for_error_envelope(
                    response.status,
                    head,
                    secret=self._token,
                    method=request.method,
                    url=self._shown_url(request),
                )
            return Download(response, head, self._shown(request), self._token)

        download = await self._send(request, consume)
        try:
            yield download
        finally:
            download._response.release()

    async def _send(
        self,
        request: sansio.Request,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        session = self._get_session()
        if request.fields is None:
            return await self._attempts(session, request, None, consume)
        async with prepared_files(request.files) as prepared:
            sansio.check_pdf_files(request, prepared)
            body = StreamingBody(
                sansio.encode_body(request, self.body_encoding, prepared),
                encoding=self.body_encoding,
                content_type=sansio.CONTENT_TYPES[self.body_encoding],
            )
            return await self._attempts(session, request, body, consume)

    async def _attempts(
        self,
        session: aiohttp.ClientSession,
        request: sansio.Request,
        body: StreamingBody | None,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            attempt += 1
            limiter = self._get_limiter()
            if limiter is not None:
                await limiter.acquire()
            sent_at = loop.time()
            failure: DokobitError
            retry_after: float | None = None
            try:
                response = await self._exchange(session, request, body, limiter)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                outcome, failure = self._failure(request, exc)
                status_text = type(exc).__name__
            else:
                status_text = str(response.status)
                try:
                    if response.status < 300:
                        result = await consume(response)
                        self._log(request, status_text, loop.time() - sent_at, attempt)
                        return result
                    error_body = await response.content.read(_ENVELOPE_LIMIT)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    response.release()
                    outcome, failure = self._failure(request, exc)
                except BaseException:
                    response.release()
                    raise
                else:
                    response.release()
                    outcome = outcome_of_status(response.status)
                    failure = sansio.error_from_response(
                        response.status,
                        error_body,
                        method=request.method,
                        url=self._shown_url(request),
                        retry_after=response.headers.get("Retry-After"),
                        secret=self._token,
                    )
                    retry_after = getattr(failure, "retry_after", None)
                    if response.status in _GATEWAY_STATUSES and not request.idempotent:
                        failure = gateway_failure(failure, shown=self._shown(request))
            self._log(request, status_text, loop.time() - sent_at, attempt)
            delay = self.retry.decide(
                idempotent=request.idempotent,
                attempt=attempt,
                outcome=outcome,
                elapsed=loop.time() - started,
                retry_after=retry_after,
                rng=self._rng,
            )
            if outcome is Outcome.RATE_LIMITED and limiter is not None:
                limiter.pause(
                    retry_after
                    if retry_after is not None
                    else self.retry.backoff(attempt, self._rng)
                )
            if delay is None:
                raise failure
            logger.warning(
                "retrying %s after %.2f s (attempt %d: %s)",
                self._shown(request),
                delay,
                attempt,
                failure,
            )
            if not (outcome is Outcome.RATE_LIMITED and limiter is not None):
                await asyncio.sleep(delay)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: sansio.Request,
        body: StreamingBody | None,
        limiter: SharedLimiter | None,
    ) -> aiohttp.ClientResponse:
        """Send ``request`` once and return its answer, never a redirect.

        aiohttp's own redirect handling is off: it would turn a 301-303 on a write into
        a GET on the other host (whose answer we would then return) and resend a write's
        body on a 307/308. A download follows up to ``MAX_REDIRECTS`` redirects itself,
        only on the API's origin, with the token re-added there; every other 3xx
        raises :class:`RedirectError`.
        """
        url = _urls.api_url(self.base_url, request.path)
        hops = 0
        while True:
            response = await session.request(
                request.method,
                url,
                params={"access_token": self._token},
                data=body,
                timeout=self._client_timeout,
                allow_redirects=False,
                raise_for_status=False,  # a borrowed session may raise by default
            )
            if not 300 <= response.status < 400:
                return response
            response.release()
            location = response.headers.get("Location")
            target = None
            if request.returns_file:
                target = _urls.redirect_path(self.base_url, url, location)
            follow = target is not None and hops < _urls.MAX_REDIRECTS
            logger.debug(
                "%s %s -> %d, %s",
                request.method,
                redact(url, self._token),
                response.status,
                "following it on the API's origin" if follow else "not following it",
            )
            if target is None or not follow:
                raise _urls.refused_redirect(
                    status=response.status,
                    method=request.method,
                    url=self._masked(url),
                    location=location,
                    base_url=self.base_url,
                    download=request.returns_file,
                    exhausted=target is not None,
                    secret=self._token,
                )
            hops += 1
            url = _urls.api_url(self.base_url, target)
            if limiter is not None:
                await limiter.acquire()

    def _failure(
        self, request: sansio.Request, exc: BaseException
    ) -> tuple[Outcome, TransportError]:
        return transport_failure(
            exc, idempotent=request.idempotent, shown=self._shown(request), secret=self._token
        )

    def _log(self, request: sansio.Request, status: str, seconds: float, attempt: int) -> None:
        if not logger.isEnabledFor(logging.DEBUG):  # redacting costs; skip it unseen
            return
        logger.debug(
            "%s %s -> %s in %.1f ms (attempt %d)",
            request.method,
            redact(request.path, self._token),
            status,
            seconds * 1000,
            attempt,
        )
