"""``DokobitClient``: the only module that sends HTTP requests.

One ``aiohttp.ClientSession`` (yours, borrowed, or ours, created lazily inside the
running loop), the shared per-token rate limit, retries that never resend a write
whose outcome is unknown, and errors with the access token redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from . import _actions, _namespaces, sansio
from ._payload import Dest, StreamingBody, prepared_files, write_chunks
from .exceptions import (
    ClientClosedError,
    ConnectError,
    DecodeError,
    DokobitError,
    ForeignURLError,
    InvalidArgumentError,
    OutcomeUnknownError,
    RequestTimeoutError,
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

_READ_CHUNK = 64 * 1024
_ENVELOPE_LIMIT = 1024 * 1024  # a download body starting with "{" is parsed up to this


@attrs.frozen(kw_only=True)
class Timeout:
    """``connect``: seconds to get a connection; ``read``: seconds of silence allowed
    between two reads. There is no total timeout, so a large download is never cut
    off while data keeps flowing. ``None`` switches one off."""

    connect: float | None = 10.0
    read: float | None = 60.0


def _classify(exc: BaseException) -> tuple[Outcome, type[TransportError]]:
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
            _, kind = _classify(exc)
            failure = kind(
                f"download broke off: {self._describe}: {type(exc).__name__}",
                reason=sansio.redact_text(str(exc), self._secret),
            )
        if failure is not None:
            raise failure

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self])


class DokobitClient:
    """An asyncio client for the Dokobit Universal API.

    Use it as ``async with DokobitClient(token) as client:`` or call
    :meth:`aclose` when done. Pass ``session=`` to borrow your own
    ``aiohttp.ClientSession`` (it is never closed by the client); otherwise the client
    creates one inside the running loop and owns it. ``rate_limit=None`` switches the
    shared limiter off; ``body_encoding="json"`` sends JSON bodies instead of the
    form encoding of Dokobit's own examples.
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
            shown = sansio.redact_url(base_url)
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
        return f"DokobitClient(base_url={self.base_url!r}, access_token='***')"

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
        on any other host raises :class:`ForeignURLError` and nothing is sent.
        ``dest`` works as for ``external.download``.
        """
        return await self._download(self._file_request(url), dest)

    def open_file(self, url: str) -> AbstractAsyncContextManager[Download]:
        """Like :meth:`download_file`, as ``async with client.open_file(url) as dl``."""
        return self._open(self._file_request(url))

    # ------------------------------------------------------------ internals

    def _file_request(self, url: str) -> sansio.Request:
        path = sansio.file_url_path(self.base_url, url)
        if path is None:
            raise ForeignURLError(
                f"refusing to send the access token to {sansio.redact_url(url)!r}: "
                f"only URLs on {self.base_url} are fetched"
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
        """The request's URL as errors and logs show it (token masked)."""
        sep = "&" if "?" in request.path else "?"
        return f"{self.base_url}{request.path}{sep}access_token=***"

    def _shown(self, request: sansio.Request) -> str:
        return f"{request.method} {self._shown_url(request)}"

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
                # not JSON after all (DecodeError): a file that starts with "{"
                with contextlib.suppress(DecodeError):
                    sansio.parse_json_response(
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
        url = sansio.api_url(self.base_url, request.path)
        shown = self._shown(request)
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
                response = await session.request(
                    request.method,
                    url,
                    params={"access_token": self._token},
                    data=body,
                    timeout=self._client_timeout,
                    allow_redirects=True,
                    raise_for_status=False,  # a borrowed session may raise by default
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                outcome, kind = _classify(exc)
                failure = self._transport_failure(request, kind, outcome, exc, shown)
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
                    outcome, kind = _classify(exc)
                    failure = self._transport_failure(request, kind, outcome, exc, shown)
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
                "retrying %s after %.2f s (attempt %d: %s)", shown, delay, attempt, failure
            )
            if not (outcome is Outcome.RATE_LIMITED and limiter is not None):
                await asyncio.sleep(delay)

    def _transport_failure(
        self,
        request: sansio.Request,
        kind: type[TransportError],
        outcome: Outcome,
        exc: BaseException,
        shown: str,
    ) -> TransportError:
        reason = sansio.redact_text(f"{type(exc).__name__}: {exc}", self._token)
        method, url = shown.split(" ", 1)
        if outcome is Outcome.LOST and not request.idempotent:
            return OutcomeUnknownError(
                f"{shown}: the answer was lost ({reason}); the call may or may not have "
                "taken effect, so it was not repeated: check the state before retrying",
                method=method,
                url=url,
                reason=reason,
            )
        return kind(f"{shown}: {reason}", method=method, url=url, reason=reason)

    def _log(self, request: sansio.Request, status: str, seconds: float, attempt: int) -> None:
        logger.debug(
            "%s %s -> %s in %.1f ms (attempt %d)",
            request.method,
            request.path,
            status,
            seconds * 1000,
            attempt,
        )
