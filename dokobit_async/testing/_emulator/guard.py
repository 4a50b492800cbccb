"""The middleware in front of API routes: recording, rate limit, faults, auth, errors.

Order per API request: record → rate limit (429) → injected fault → access token
(403) → handler. Non-API routes (signing pages, delivery pages) get none of the
rate limit, faults or auth: they are what a browser sees, not the API.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from .config import EmulatorConfig, FaultKind, Faults
from .errors import EmulatedApiError, error_response
from .records import RequestRecord
from .state import utcnow

__all__ = ["FaultPicker", "Guard", "RateLimiter"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

logger = logging.getLogger("dokobit_async.emulator")

_REASONS = {
    404: "Requested URL not found.",
    405: "Method not allowed.",
    413: "Request entity too large.",
}


class RateLimiter:
    """At most ``limit`` requests per sliding ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def check(self, now: float) -> float | None:
        """Count a request at ``now``; seconds to wait if it is over the limit, else None."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return self._times[0] + self.window - now
        self._times.append(now)
        return None


class FaultPicker:
    """Draws faults for requests, reproducibly from the configured seed."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)
        weighted = [(k, w) for k, w in faults.weights.items() if w > 0]
        self._kinds = [k for k, _ in weighted]
        self._weights = [w for _, w in weighted]

    def pick(self, operation: str) -> FaultKind | None:
        """The fault for one request of ``operation``, or None."""
        eligible = self.faults.operations is None or operation in self.faults.operations
        if not eligible or not self._kinds or self._random.random() >= self.faults.rate:
            return None
        return self._random.choices(self._kinds, self._weights)[0]


class Guard:
    """State and middleware shared by the API routes of one emulator."""

    def __init__(self, config: EmulatorConfig, access_token: str) -> None:
        self.config = config
        self.access_token = access_token
        self.requests: list[RequestRecord] = []
        self.operations: dict[AbstractRoute, str] = {}
        self._limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self._faults = FaultPicker(config.faults) if config.faults else None

    def _authorised(self, request: web.Request) -> bool:
        token = request.query.get("access_token")
        if token is None and self.config.accept_header_token:
            token = request.headers.get("X-Access-Token")
        return token is not None and hmac.compare_digest(
            token.encode("utf-8", "replace"), self.access_token.encode("utf-8")
        )

    def _record(
        self,
        request: web.Request,
        operation: str,
        status: int | None,
        fault: str | None,
        arrived: datetime,
    ) -> None:
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                operation=operation,
                status=status,
                fault=fault,
                time=arrived,
            )
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware: applies everything above to ``/api/`` requests, and
        logs one line per request."""
        if not request.path.startswith("/api/"):
            try:
                page = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                page = error_response(exc.status, _REASONS.get(exc.status, exc.reason))
            _log(request, page.status, None)
            return page
        arrived = utcnow()  # the record's time is the arrival, not the answer
        operation = self.operations.get(request.match_info.route, "unknown")
        fault: FaultKind | None = None
        response: web.StreamResponse | None = None
        try:
            response, fault = await self._guarded(request, handler, operation)
        finally:
            dropped = fault in (FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER)
            status = response.status if response is not None and not dropped else None
            self._record(request, operation, status, fault.value if fault else None, arrived)
            _log(request, status, fault)
        if fault is FaultKind.DROP_AFTER and request.transport is not None:
            request.transport.abort()
        return response

    async def _guarded(
        self, request: web.Request, handler: Handler, operation: str
    ) -> tuple[web.StreamResponse, FaultKind | None]:
        if self._limiter is not None:
            wait = self._limiter.check(asyncio.get_running_loop().time())
            if wait is not None:
                headers = {"Retry-After": str(max(1, math.ceil(wait)))}
                return error_response(429, "Too many requests.", headers=headers), None
        fault = self._faults.pick(operation) if self._faults and operation != "unknown" else None
        if fault is not None:
            early = await self._inject(request, fault)
            if early is not None:
                return early, fault
        if operation != "unknown" and not self._authorised(request):
            return error_response(403, "Access forbidden. Invalid API key."), fault
        try:
            return await handler(request), fault
        except EmulatedApiError as exc:
            return exc.response(), fault
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(exc.status, _REASONS.get(exc.status, exc.reason)), fault

    async def _inject(self, request: web.Request, fault: FaultKind) -> web.StreamResponse | None:
        assert self._faults is not None
        faults = self._faults.faults
        if fault is FaultKind.SLOW:
            await asyncio.sleep(faults.slow_delay)
            return None
        if fault is FaultKind.DROP_AFTER:
            return None
        if fault is FaultKind.DROP_BEFORE:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        if fault is FaultKind.RATE_LIMITED:
            headers = {"Retry-After": str(faults.retry_after)}
            return error_response(429, "Too many requests.", headers=headers)
        if fault is FaultKind.RATE_LIMITED_BARE:
            return error_response(429, "Too many requests.")
        if fault is FaultKind.SERVER_ERROR:
            return error_response(500, "We have encountered some problems. It will be fixed soon!")
        if fault is FaultKind.BAD_GATEWAY:
            return web.Response(
                status=502,
                text="<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        return error_response(503, "Service temporarily unavailable.")


def _log(request: web.Request, status: int | None, fault: FaultKind | None) -> None:
    """``METHOD /path -> status``: the path only, so no access token (it travels in
    the query) ever reaches the line; a query is shown as ``?...``."""
    if not logger.isEnabledFor(logging.INFO):
        return
    query = "?..." if request.query_string else ""
    shown = "".join(c if c.isprintable() else "?" for c in request.path[:200])
    answer = "dropped" if status is None else str(status)
    logger.info(
        "%s %s%s -> %s%s",
        request.method[:16],
        shown,
        query,
        answer,
        f" (fault: {fault.value})" if fault else "",
    )
