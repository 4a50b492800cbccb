"""``PostbackReceiver``: the aiohttp endpoint that Dokobit's postbacks arrive at.

Each postback is checked (the URL's MAC, size, shape), written to the inbox, and only
then answered 200; a dispatcher task hands it to the registered handlers. Duplicates
(Dokobit retries after 5 min, 1 h and 24 h when it gets no 2xx) are stored once.

::

    receiver = PostbackReceiver(router, inbox=SQLiteInbox("postbacks.db"),
                                secret=os.environ["POSTBACK_SECRET"])
    url = receiver.postback_url("https://example.com")   # pass as postback_url
    web.run_app(receiver.app(), access_log_class=RedactingAccessLogger)

or ``receiver.setup(existing_app)`` to mount it into your own application.

Answers: 200 stored (or a duplicate), 400 not a postback (one-line reason), 401 the
URL's MAC does not verify (nothing is stored), 404 another path (in :meth:`app`), 405
wrong method, 408 the body came too slowly, 413 too large, 417 an ``Expect`` other
than ``100-continue``, 503 the inbox failed (Dokobit will retry). Nothing a sender
puts in a request gets a 500. A body that cannot be read (a broken or unsupported
``Content-Encoding``, broken framing) gets a 400 with ``Connection: close``; a sender
that hangs up mid-body is one INFO line.

To serve it so that misbehaving senders cannot make it unreachable (keep-alive and
header timeouts, a connection cap below the open-files limit), see
:class:`GuardedSite` and :class:`ConnectionGuard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestPayloadError

from ._dispatcher import Delivery, Dispatcher
from ._http import (
    RAW_BODIES,
    BadBodyError,
    answer_and_close,
    expect_continue,
    read_body,
    unsupported_coding,
)
from ._http import answer as _answer
from ._redact import printable, redact, shown_token
from ._serve import ConnectionGuard, GuardedSite
from .events import (
    event_key,
    mint_postback_secret,
    parse_postback,
    verify_postback_secret,
)
from .exceptions import InvalidArgumentError, InvalidPostbackError
from .inbox import Inbox, MemoryInbox, add_event, new_event
from .retry import RetryPolicy
from .routing import Router

if TYPE_CHECKING:
    from .client import DokobitClient

__all__ = [
    "DEFAULT_RETRY",
    "ConnectionGuard",
    "Delivery",
    "GuardedSite",
    "PostbackReceiver",
    "RedactingAccessLogger",
]

logger = logging.getLogger("dokobit_async.receiver")

DEFAULT_RETRY = RetryPolicy(max_attempts=8, base_delay=2.0, max_delay=600.0, deadline=float("inf"))
"""How often, and how far apart, a failing handler is run again before its event is
dead-lettered: 8 attempts, 2 s doubling up to 10 min, no deadline."""


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger, with the postback URL's secret segment (and any
    ``access_token``) masked. Pass it as ``access_log_class`` to ``web.run_app`` or
    ``web.AppRunner``: the default logger writes the full request line."""

    def _format_line(self, request: Any, response: Any, time: float) -> Any:
        return [
            (key, redact(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


class PostbackReceiver:
    """Receives postbacks, stores them durably, dispatches them to ``router``.

    ``secret`` (16+ bytes) turns on the URL check: only URLs minted by
    :meth:`postback_url` are accepted. With ``client``, the events the status
    endpoint can confirm are confirmed against the API before dispatch
    (``confirm=False`` turns it off); confirmations share the client's rate limit.
    ``consumers`` names the pipeline consumers that :meth:`deliveries` serves; a
    delivery not acknowledged within ``ack_timeout`` seconds counts as failed and
    comes again later. Without ``inbox``, events are kept in memory only.
    """

    def __init__(
        self,
        router: Router,
        *,
        inbox: Inbox | None = None,
        secret: bytes | str | None = None,
        client: DokobitClient | None = None,
        confirm: bool = True,
        consumers: Sequence[str] = (),
        path: str = "/dokobit/postback",
        max_body_size: int = 1024 * 1024,
        read_timeout: float = 10.0,
        concurrency: int = 16,
        retry: RetryPolicy = DEFAULT_RETRY,
        confirm_attempts: int = 4,
        confirm_delay: float = 2.0,
        shutdown_timeout: float = 10.0,
        ack_timeout: float | None = 300.0,
    ):
        key = secret.encode() if isinstance(secret, str) else secret
        if key is not None and len(key) < 16:
            raise InvalidArgumentError("secret must be at least 16 bytes")
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidArgumentError("path must start with / and not end with /")
        if concurrency < 1 or max_body_size < 1:
            raise InvalidArgumentError("concurrency and max_body_size must be positive")
        self.router = router
        self.inbox: Inbox = inbox if inbox is not None else MemoryInbox()
        if inbox is None:
            logger.warning("no inbox given: postbacks are kept in memory only")
        if key is None and (client is None or not confirm):
            logger.warning(
                "neither a secret nor a client to confirm with: anyone who can reach the "
                "receiver can make its handlers run"
            )
        self._secret = key
        self.client = client if confirm else None
        self.consumers = tuple(consumers)
        self.path = path
        self.max_body_size = max_body_size
        self.read_timeout = read_timeout
        self.concurrency = concurrency
        self.retry = retry
        self.confirm_attempts = confirm_attempts
        self.confirm_delay = confirm_delay
        self.shutdown_timeout = shutdown_timeout
        self.ack_timeout = ack_timeout
        self._dispatcher: Dispatcher | None = None

    def __repr__(self) -> str:
        return f"<PostbackReceiver path={self.path!r} secret={'***' if self._secret else None}>"

    # ------------------------------------------------------------------ wiring

    def postback_url(self, public_base_url: str) -> str:
        """A URL to pass as ``postback_url`` when creating a signing: the receiver's
        path on ``public_base_url``, with a fresh nonce and its MAC when a secret is
        set. Treat it as a secret: it is what makes a postback authentic."""
        base = public_base_url.rstrip("/") + self.path
        return f"{base}/{mint_postback_secret(self._secret)}" if self._secret else base

    def app(self) -> web.Application:
        """A new application with only the receiver in it.

        Serve it with ``access_log_class=RedactingAccessLogger``: aiohttp's default
        access log writes the request path, and the path carries the URL's secret.
        Its server leaves bodies as they came (``auto_decompress=False``): the
        receiver decodes them itself, so a bad ``Content-Encoding`` is a clean 400.
        Any other path answers 404.
        """
        application = web.Application(
            client_max_size=self.max_body_size, handler_args={"auto_decompress": False}
        )
        application[RAW_BODIES] = True
        self.setup(application)
        application.router.add_route("*", "/{tail:.*}", _not_found, expect_handler=expect_continue)
        return application

    def setup(self, app: web.Application, *, path: str | None = None) -> None:
        """Mount the receiver into ``app`` (routes, and the inbox and dispatcher as a
        ``cleanup_ctx``); ``path`` overrides the constructor's. Run ``app`` with
        ``access_log_class=RedactingAccessLogger`` (or no access log): the default
        one writes the path, which carries the URL's secret."""
        if path is not None:
            self.path = path
        app[RECEIVER_KEY] = self
        route = f"{self.path}/{{secret}}" if self._secret else self.path
        # every method, so that a wrong one gets our 405, after our Expect handling
        app.router.add_route("*", route, self._handle, expect_handler=expect_continue)
        app.cleanup_ctx.append(self._lifecycle)

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.inbox.open()
        dispatcher = Dispatcher(
            self.router,
            self.inbox,
            client=self.client,
            consumers=self.consumers,
            concurrency=self.concurrency,
            retry=self.retry,
            confirm_attempts=self.confirm_attempts,
            confirm_delay=self.confirm_delay,
            ack_timeout=self.ack_timeout,
        )
        try:
            await dispatcher.start()
        except BaseException:  # the app does not start: leave nothing open
            await self.inbox.close()
            raise
        self._dispatcher = dispatcher
        loop_task = asyncio.create_task(dispatcher.run(), name="dokobit-dispatcher")
        try:
            yield
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            await dispatcher.drain(self.shutdown_timeout)
            self._dispatcher = None
            await self.inbox.close()

    async def deliveries(self, name: str = "default") -> AsyncIterator[Delivery]:
        """Events for the pipeline consumer ``name`` (declared in ``consumers``), in
        order per signing; ``await delivery.ack()`` when done with each."""
        if name not in self.consumers:
            raise InvalidArgumentError(f"{name!r} is not one of the declared consumers")
        served = None
        while True:
            dispatcher = self._dispatcher
            if dispatcher is None:
                if served is not None:
                    return  # the receiver stopped
                await asyncio.sleep(0.05)
                continue
            served = dispatcher
            getter = asyncio.ensure_future(dispatcher.queues[name].get())
            stopper = asyncio.ensure_future(dispatcher.stopped.wait())
            try:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                return
            yield getter.result()

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            return await self._receive(request)
        except Exception:  # a bug of ours must not look like the sender's fault
            logger.exception("postback receiver failed")
            return _answer(503, "temporarily unavailable")

    async def _receive(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            response = _answer(405, "only POST is accepted")
            response.headers["Allow"] = "POST"
            return response
        if self._secret and not verify_postback_secret(
            self._secret, request.match_info.get("secret", "")
        ):
            logger.info("postback refused: the URL does not verify")
            return _answer(401, "unknown postback URL")
        coding = unsupported_coding(request)
        if coding is not None:
            logger.info("postback refused: unsupported Content-Encoding %s", printable(coding, 40))
            response = _answer(400, "unsupported Content-Encoding")
            response.force_close()  # the body that follows is not ours to interpret
            return response
        if (request.content_length or 0) > self.max_body_size:
            return _answer(413, f"body larger than {self.max_body_size} bytes")
        try:
            body = await asyncio.wait_for(
                read_body(request, self.max_body_size), timeout=self.read_timeout
            )
        except asyncio.TimeoutError:
            return _answer(408, "the body did not arrive in time")
        except BadBodyError as exc:
            logger.info("postback refused: %s", printable(exc))
            response = _answer(400, f"the body could not be read: {exc}")
            response.force_close()
            return response
        except RequestPayloadError:  # aiohttp could not decode or frame it
            logger.info("postback refused: the body could not be read (encoding or framing)")
            return await answer_and_close(request, 400, "the body could not be read")
        except OSError:  # e.g. ConnectionResetError: nobody is left to answer
            logger.info("postback not received: the sender closed the connection mid-body")
            return _answer(400, "the connection closed before the body was complete")
        if body is None:
            return _answer(413, f"body larger than {self.max_body_size} bytes")
        try:
            event = parse_postback(body, request.content_type)
        except InvalidPostbackError as exc:
            logger.info("postback refused: %s", printable(exc.reason))
            return _answer(400, exc.reason)
        fresh = new_event(
            id=event_key(event),
            signing_token=event.token or "",
            action=event.action,
            body=body,
            content_type=request.content_type,
            received_at=time.time(),
        )
        try:
            stored = await add_event(self.inbox, fresh)
        except Exception as exc:  # one line: on a full disk, every postback fails alike
            logger.error(
                "postback %s for %s not stored (answered 503): the inbox failed: %s",
                printable(event.action),
                shown_token(event.token),
                printable(f"{type(exc).__name__}: {exc}"),
            )
            return _answer(503, "could not store the postback; try again")
        logger.info(
            "postback %s for %s %s",
            printable(event.action),
            shown_token(event.token),
            "stored" if stored else "duplicate, already stored",
        )
        if stored and self._dispatcher is not None:
            self._dispatcher.submit(fresh)
        return _answer(200, "ok")


RECEIVER_KEY = web.AppKey("dokobit_async.receiver", PostbackReceiver)
"""Where ``setup`` leaves the receiver in the application's state."""


async def _not_found(request: web.Request) -> web.Response:
    return _answer(404, "not found")
