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
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from . import _actions, _namespaces, _telemetry, _urls, sansio
from ._answers import decipher_json, looks_like_error_envelope, raise_for_error_envelope
from ._binding import json_action
from ._bodies import BODY_ENCODINGS, FORM, check_pdf_files, content_type, encode_body
from ._payload import Dest, StreamingBody, prepared_files, write_chunks
from ._redact import redact
from ._request import with_traceparent
from ._retrying import log_attempt, retry_delay
from ._tracker import Tracker, tracked
from ._transport import (
    ERROR_BODY_LIMIT,
    Download,
    Timeout,
    decipher,
    file_request,
    no_resend,
    send_once,
)
from .exceptions import ClientClosedError, DokobitError, InvalidArgumentError
from .models import CreatedSigning, Result
from .ratelimit import Limiter, RateLimit
from .retry import Failure, RetryPolicy

__all__ = ["BETA_URL", "PRODUCTION_URL", "DokobitClient", "Download", "Timeout"]

BETA_URL = "https://beta.dokobit.com"
#: No source names the production REST host; ``app.dokobit.com`` is the portal's own
#: host and the connector's. Pass ``base_url`` if Dokobit gives you another one.
PRODUCTION_URL = "https://app.dokobit.com"

logger = logging.getLogger("dokobit_async")
T = TypeVar("T")

_BODILESS_METHODS = ("GET", "HEAD")  # any other method sends a body, if only an empty form


class DokobitClient:
    """An asyncio client for the Dokobit Universal API.

    Use it as ``async with DokobitClient(token) as client:`` or call :meth:`aclose`
    when done. API calls never follow a redirect (it raises
    :class:`~dokobit_async.exceptions.RedirectError`); downloads follow up to three,
    on the API's own origin only. Every error raised for a call carries it as
    ``error.request``.

    Args:
        access_token: The API access token; it is never shown (``access_token=***``).
        base_url: The API's origin, and any path prefix; no query.
        session: An ``aiohttp.ClientSession`` to borrow (used as it is, never closed
            by the client); by default the client creates one inside the running
            loop and owns it.
        rate_limit: The limit shared by every client of this token in the loop (or
            through Redis: ``RedisRateLimit``); ``None`` switches it off.
        retry: When a failed call is tried again (writes are never resent blindly).
        timeout: Connect and read timeouts.
        body_encoding: ``"form"`` (as Dokobit's own examples send) or ``"json"``.
        tracker: Tracks every signing this client creates, for the reconciler
            (``dokobit_async.reconcile``); a tracking failure is logged, never
            fails the create.

    Raises:
        InvalidArgumentError: An empty token, a base URL that is not http(s) or has
            a query, an unknown body encoding.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = PRODUCTION_URL,
        session: aiohttp.ClientSession | None = None,
        rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 - frozen, shared safely
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, shared safely
        timeout: Timeout = Timeout(),  # noqa: B008 - frozen
        body_encoding: str = FORM,
        tracker: Tracker | None = None,
    ):
        if not isinstance(access_token, str) or not access_token.strip():
            raise InvalidArgumentError("access_token must be a non-empty string")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            shown = redact(base_url, access_token)
            raise InvalidArgumentError(
                f"base_url must be an http(s) URL without a query: {shown!r}"
            )
        if body_encoding not in BODY_ENCODINGS:
            raise InvalidArgumentError(
                f"body_encoding must be 'form' or 'json': {body_encoding!r}"
            )
        self._token = access_token
        self.base_url = base_url.rstrip("/")
        self.rate_limit = rate_limit
        self.retry = retry
        self.timeout = timeout
        self.body_encoding = body_encoding
        self.tracker = tracker
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._limiter: Limiter | None = None
        self._targets: dict[str, URL] = {}  # request URLs with the token, built once
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
        """Close the session if the client created it; a borrowed one stays open.

        The client cannot be used afterwards (:class:`ClientClosedError`).
        """
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    # ------------------------------------------------------------ public actions

    seal = json_action(_actions.seal, Result)

    @overload
    async def download_file(self, url: str, dest: None = None) -> bytes: ...
    @overload
    async def download_file(self, url: str, dest: str | os.PathLike[str]) -> Path: ...
    @overload
    async def download_file(self, url: str, dest: IO[bytes]) -> None: ...
    async def download_file(self, url: str, dest: Dest = None) -> bytes | Path | None:
        """Download a file URL that Dokobit handed out (a status answer's or a postback's).

        The access token is added here, and only for the API's own origin.

        Args:
            url: ``SigningStatus.files[i].url`` or a postback's ``file``: a
                well-formed http(s) URL under the client's ``base_url``.
            dest: Where the file goes: a path (written to a temporary file beside
                it, then renamed into place), a binary file object, or ``None``, the
                default, to get the bytes.

        Returns:
            bytes | Path | None: The bytes when ``dest`` is ``None``, the path
            written when it is a path, ``None`` for a file object.

        Raises:
            ForeignURLError: ``url`` is on another host, or is not a well-formed
                http(s) URL under the base URL (an ``InvalidArgumentError``);
                nothing is sent.
            NotFoundError: No such file (an error answer in place of the file:
                nothing is written).
            RedirectError: A redirect off the API's own origin, or a fourth one.
            APIError: Any other error answer, after the retries.
            TransportError: No usable answer after the retries, or the connection
                broke after the first bytes (a path ``dest`` is left untouched).

        Note:
            ``GET {url}`` with ``access_token`` added to its query. Retried up to
            the first bytes; follows up to three redirects on the API's origin.
        """
        return await self._download(self._file_request(url), dest)

    def open_file(self, url: str) -> AbstractAsyncContextManager[Download]:
        """Stream a file URL that Dokobit handed out.

        ``async with client.open_file(url) as download:`` then
        ``async for chunk in download: ...``.

        Args:
            url: ``SigningStatus.files[i].url`` or a postback's ``file``: a
                well-formed http(s) URL under the client's ``base_url``.

        Returns:
            AbstractAsyncContextManager[Download]: Entering it sends the request
            and yields the ``Download``; iterate it for the bytes.

        Raises:
            ForeignURLError: ``url`` is on another host, or is not a well-formed
                http(s) URL under the base URL (an ``InvalidArgumentError``);
                raised by this call itself, and nothing is sent.
            NotFoundError: On entering: no such file.
            RedirectError: On entering: a redirect off the API's own origin, or a
                fourth one.
            APIError: On entering: any other error answer.
            TransportError: On entering, no usable answer after the retries; while
                iterating, the connection broke (not retried).

        Note:
            ``GET {url}`` with ``access_token`` added to its query.
        """
        return self._open(self._file_request(url))

    # ------------------------------------------------------------ internals

    def _file_request(self, url: str) -> sansio.Request:
        return file_request(self.base_url, url, secret=self._token)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this DokobitClient is closed")
        if self._session is not None and self._session.closed:
            raise ClientClosedError("the aiohttp session given to this DokobitClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._client_timeout)
            no_resend(self._session)  # a borrowed session is used as it is
        return self._session

    def _get_limiter(self) -> Limiter | None:
        if self.rate_limit is None:
            return None
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter._loop is not loop:
            self._limiter = self.rate_limit._limiter(self._token)
        return self._limiter

    def _json(self, request: sansio.Request, model: type[T]) -> Awaitable[T]:
        """Send ``request`` and decode its JSON answer into ``model``.

        Returns the call's awaitable rather than being a coroutine of its own: every
        API call passes here, and a frame less is time off each one.
        """
        # as errors show it; they redact it, so a success never pays for redaction
        url = _urls.shown_url(self.base_url, request.path)
        secret = self._token

        async def consume(response: aiohttp.ClientResponse) -> T:
            body = await response.read()
            return decipher_json(request, response.status, body, model, url=url, secret=secret)

        if self.tracker is not None and model is CreatedSigning:
            return tracked(self._send(request, url, consume), self.tracker, request.operation)
        return self._send(request, url, consume)

    async def _download(self, request: sansio.Request, dest: Dest) -> bytes | Path | None:
        async with self._open(request) as download:
            return await write_chunks(aiter(download), dest)

    @asynccontextmanager
    async def _open(self, request: sansio.Request) -> AsyncIterator[Download]:
        # as errors show it; they redact it, so a success never pays for redaction
        url = _urls.shown_url(self.base_url, request.path)

        async def consume(response: aiohttp.ClientResponse) -> Download:
            head = await response.content.readany()
            if "json" in (response.content_type or "") or looks_like_error_envelope(head):
                while not response.content.at_eof() and len(head) < ERROR_BODY_LIMIT:
                    head += await response.content.readany()
                raise_for_error_envelope(
                    response.status, head, url=url, secret=self._token, request=request
                )
            return Download(response, head, request=request, url=url, secret=self._token)

        hooks = _telemetry.client  # a download's span covers its body too
        with nullcontext() if hooks is None else hooks.call(request, self.base_url) as span:
            download = await self._send(request, url, consume, span)
            try:
                yield download
            finally:
                download._response.release()

    async def _send(
        self,
        request: sansio.Request,
        url: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        span: _telemetry.CallSpan | None = None,
    ) -> T:
        """Send ``request`` (its URL shown as ``url``), with its body if its method has
        one, and hand a 2xx answer to ``consume``: in a span of its own while
        instrumented, unless it runs in ``span`` (docs/architecture.md#tracing)."""
        if span is None and (hooks := _telemetry.client) is not None:
            with hooks.call(request, self.base_url) as span:
                if hooks.propagate_to_postbacks:  # the postbacks join this trace
                    request = with_traceparent(request, span.traceparent())
                result = await self._send(request, url, consume, span)
                if isinstance(result, CreatedSigning):
                    span.signing(result.token)
                return result
        try:
            session = self._get_session()
            if request.method in _BODILESS_METHODS:
                return await self._attempts(session, request, url, None, consume, span)
            async with prepared_files(request.files) as prepared:
                check_pdf_files(request, prepared)
                body = StreamingBody(
                    encode_body(request, self.body_encoding, prepared),
                    encoding=self.body_encoding,
                    content_type=content_type(request, self.body_encoding),
                )
                return await self._attempts(session, request, url, body, consume, span)
        except DokobitError as exc:
            if exc.request is None:  # a closed client, an unreadable file: still this call's
                exc.request = request
            raise

    async def _attempts(
        self,
        session: aiohttp.ClientSession,
        request: sansio.Request,
        url: str,
        body: StreamingBody | None,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        span: _telemetry.CallSpan | None,
    ) -> T:
        """send once (through the limiter) -> decipher -> decide -> wait or raise,
        attempt by attempt."""
        limiter = self._get_limiter()  # send_once waits for it
        loop = asyncio.get_running_loop()
        started = loop.time()
        failure: Failure | None = None
        attempt = 0
        while attempt < self.retry.max_attempts:  # decide() stops at the last one anyway
            attempt += 1
            sent_at = loop.time()
            answer = await send_once(
                session,
                request,
                base_url=self.base_url,
                token=self._token,
                body=body,
                timeout=self._client_timeout,
                limiter=limiter,
                targets=self._targets,
            )
            if span is not None:
                span.answered(None if isinstance(answer, Failure) else answer.status)
            if isinstance(answer, Failure):
                result: T | Failure = answer
            else:
                result = await decipher(answer, request, consume, url=url, secret=self._token)
            log_attempt(request, answer, loop.time() - sent_at, attempt, self._token)
            if not isinstance(result, Failure):
                return result
            failure = result
            delay = retry_delay(
                self.retry,
                request,
                failure,
                attempt=attempt,
                elapsed=loop.time() - started,
                limiter=limiter,
                rng=self._rng,
                url=url,
                secret=self._token,
            )
            if delay is None:
                break
            await asyncio.sleep(delay)
        assert failure is not None  # max_attempts >= 1, and each attempt returns or fails
        raise failure.error
