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
URL's MAC does not verify (nothing is stored), 404 another path (in
:meth:`PostbackReceiver.app`), 405 wrong method, 408 the body came too slowly, 413
too large, 417 an ``Expect`` other than ``100-continue``, 503 the inbox failed
(Dokobit will retry). Nothing a sender puts in a request gets a 500. A body that
cannot be read (a broken or unsupported ``Content-Encoding``, broken framing) gets a
400 with ``Connection: close``; a sender that hangs up mid-body is one INFO line.

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
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from aiohttp import web

from . import _telemetry
from ._confirm import Confirmation, chosen
from ._dispatcher import Delivery, Dispatcher
from ._http import (
    RAW_BODIES,
    RedactingAccessLogger,
    check_access_logger,
    expect_continue,
    received_body,
    refuse,
    sender_gone,
)
from ._http import answer as _answer
from ._policy import DispatchPolicy
from ._postback_keys import postback_keys, shown_keys
from ._redact import error_text, printable, shown_token
from ._serve import ConnectionGuard, GuardedSite
from .events import (
    POSTBACK_PATH,
    inbox_fields,
    mint_postback_secret,
    parse_postback,
    verify_postback_secret,
)
from .exceptions import InvalidArgumentError, InvalidPostbackError, ReceiverNotRunningError
from .inbox import Inbox, MemoryInbox, StoredEvent
from .routing import Router

if TYPE_CHECKING:
    from ._telemetry import PostbackSpan, ReceiverHooks
    from .client import DokobitClient

__all__ = [
    "Confirmation",
    "ConnectionGuard",
    "Delivery",
    "DispatchPolicy",
    "GuardedSite",
    "PostbackReceiver",
    "RedactingAccessLogger",
]

logger = logging.getLogger("dokobit_async.receiver")


class PostbackReceiver:
    """Receives postbacks, stores them durably, dispatches them to ``router``.

    Args:
        router: The handlers to run for each event; ``None`` to store and answer
            only, while workers elsewhere run the handlers (a Redis inbox's).
        inbox: Where events are stored before the 200 goes out (default: a
            ``MemoryInbox``, which survives nothing: for tests).
        secret: Turns on the URL check (only URLs minted by :meth:`postback_url`
            pass): 16 bytes or more; or several while one is rotated, ``[new, old]``:
            the first mints, any verifies (``docs/architecture.md#rotating-the-postback-secret``).
            None is ever shown; all are masked in stored errors and log lines.
        client: With the default ``confirm``, the events the status endpoint can
            confirm are confirmed against the API before dispatch (the reads share
            the client's rate limit); its access token is masked in stored errors.
        confirm: ``True`` (confirm through ``client`` when one is given), ``False``
            (never), or your own async ``(event) -> True | False | None`` callable
            (a ``Confirmation``).
        policy: How handlers run: concurrency, retries, timeouts.
        consumers: The pipeline consumers that :meth:`deliveries` serves.
        path: Where the receiver listens (with the URL's secret segment after it).
        max_body_size: Larger bodies get 413.
        read_timeout: Seconds a body has to arrive, else 408.
    """

    def __init__(
        self,
        router: Router | None,
        *,
        inbox: Inbox | None = None,
        secret: bytes | str | Sequence[bytes | str] | None = None,
        client: DokobitClient | None = None,
        confirm: bool | Confirmation = True,
        policy: DispatchPolicy = DispatchPolicy(),  # noqa: B008 - frozen
        consumers: Sequence[str] = (),
        path: str = POSTBACK_PATH,
        max_body_size: int = 1024 * 1024,
        read_timeout: float = 10.0,
    ):
        keys = postback_keys(secret) if secret is not None else ()
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidArgumentError("path must start with / and not end with /")
        if max_body_size < 1 or not read_timeout > 0:
            raise InvalidArgumentError("max_body_size and read_timeout must be positive")
        if not isinstance(policy, DispatchPolicy):
            raise InvalidArgumentError(f"policy must be a DispatchPolicy, not {policy!r}")
        if router is None and consumers:
            raise InvalidArgumentError("consumers need a router: with None nothing dispatches")
        self.router = router
        self.inbox: Inbox = inbox if inbox is not None else MemoryInbox()
        if inbox is None:
            logger.warning("no inbox given: postbacks are kept in memory only")
        self._confirmation = chosen(client, confirm)
        if not keys and self._confirmation is None:
            logger.warning(
                "neither a secret nor a confirmation: anyone who can reach the receiver "
                "can make its handlers run"
            )
        self._keys = keys  # the first mints, any verifies
        token = (client._token,) if client is not None else ()
        self._secrets = (*token, *shown_keys(keys))  # masked in stored errors, log lines
        self.policy = policy
        self.consumers = tuple(consumers)
        self.path = path
        self.max_body_size = max_body_size
        self.read_timeout = read_timeout
        self._dispatcher: Dispatcher | None = None
        self._running = asyncio.Event()  # set while the app runs (deliveries wait for it)

    def __repr__(self) -> str:
        shown = f"*** ({len(self._keys)})" if self._keys else None
        return f"<PostbackReceiver path={self.path!r} secret={shown}>"

    # ------------------------------------------------------------------ wiring

    def postback_url(self, public_base_url: str) -> str:
        """A URL to pass as ``postback_url`` when creating a signing: the receiver's
        path on ``public_base_url``, with a fresh nonce and its MAC when a secret is
        set (the first). Treat it as a secret: it is what makes a postback authentic."""
        base = public_base_url.rstrip("/") + self.path
        return f"{base}/{mint_postback_secret(self._keys[0])}" if self._keys else base

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
        check_access_logger()
        if path is not None:
            self.path = path
        app[RECEIVER_KEY] = self
        route = f"{self.path}/{{secret}}" if self._keys else self.path
        # every method, so that a wrong one gets our 405, after our Expect handling
        app.router.add_route("*", route, self._handle, expect_handler=expect_continue)
        app.cleanup_ctx.append(self._lifecycle)
        app.on_shutdown.append(self._answer_held)

    async def _answer_held(self, app: web.Application) -> None:
        if self._dispatcher is not None:  # shutting down: held answers go now
            self._dispatcher.pressure.close()

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await self.inbox.open()
            stack.push_async_callback(self.inbox.close)
            if self.router is not None:  # (else: ack only, workers elsewhere dispatch)
                dispatcher = Dispatcher(
                    self.router,
                    self.inbox,
                    policy=self.policy,
                    confirmation=self._confirmation,
                    consumers=self.consumers,
                    secrets=self._secrets,
                )
                await dispatcher.start()  # a failure here closes the inbox on the way out
                loop_task = asyncio.create_task(dispatcher.run(), name="dokobit-dispatcher")
                stack.push_async_callback(dispatcher.drain)
                stack.push_async_callback(_cancelled, loop_task)
                self._dispatcher = dispatcher
            self._running.set()
            try:
                yield
            finally:
                self._running.clear()
                self._dispatcher = None

    async def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until every event received so far is finished (handled, dead-lettered
        or set aside as unconfirmed), nothing runs and nothing waits for a retry.

        For tests that prove something happened exactly once, or not at all, without
        sleeping.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).

        Raises:
            TimeoutError: Still busy after ``timeout`` seconds.
            ReceiverNotRunningError: The receiver is not running (its app is not
                started), or stopped while this waited.
        """
        dispatcher = self._dispatcher
        if dispatcher is None:
            why = "dispatches nothing (router=None)" if self.router is None else "is not running"
            raise ReceiverNotRunningError(f"the receiver {why} (or its app is not started)")
        try:
            idle = await asyncio.wait_for(dispatcher.wait_idle(), timeout)
        except asyncio.TimeoutError:  # (on Python 3.10, not the builtin TimeoutError)
            raise TimeoutError(f"the receiver was still busy after {timeout} s") from None
        if not idle:
            raise ReceiverNotRunningError("the receiver stopped before it was idle")

    async def deliveries(self, name: str = "default") -> AsyncIterator[Delivery]:
        """Events for the pipeline consumer ``name`` (declared in ``consumers``), in
        order per signing; ``await delivery.ack()`` when done with each. The
        iteration waits for the receiver to start and ends when it stops."""
        if name not in self.consumers:
            raise InvalidArgumentError(f"{name!r} is not one of the declared consumers")
        await self._running.wait()
        dispatcher = self._dispatcher
        if dispatcher is None:  # (stopped again before this task ran)
            return
        while True:
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
        hooks = _telemetry.receiver  # (None: nothing is recorded, nothing more is done)
        if hooks is not None:
            return await self._traced(request, hooks)
        try:
            return await self._receive(request, None)
        except Exception:  # a bug of ours must not look like the sender's fault
            return _failed(None)

    async def _traced(self, request: web.Request, hooks: ReceiverHooks) -> web.Response:
        # the route as registered (its template: the secret segment is ``{secret}``)
        resource = request.match_info.route.resource
        route = self.path if resource is None else resource.canonical
        with hooks.postback(
            method=request.method, route=route, query=request.query, headers=request.headers
        ) as span:
            try:
                return await self._receive(request, span)
            except Exception:
                return _failed(span)

    async def _receive(self, request: web.Request, span: PostbackSpan | None) -> web.Response:
        if request.method != "POST":
            response = refuse(span, "wrong_method", 405, "only POST is accepted")
            response.headers["Allow"] = "POST"
            return response
        if self._keys and not verify_postback_secret(
            self._keys, request.match_info.get("secret", "")
        ):
            logger.info("postback refused: the URL does not verify")
            return refuse(span, "bad_secret", 401, "unknown postback URL")
        if span is not None:  # only now may the sender choose its parent (#tracing)
            span.verified()
        body = await received_body(request, self.max_body_size, self.read_timeout, span)
        if not isinstance(body, bytes):  # refused: the answer
            return body
        now = time.time()  # the event's received_at, as stored: parsed once
        received_at = datetime.fromtimestamp(now, tz=timezone.utc)
        try:
            event = parse_postback(body, request.content_type, received_at=received_at)
        except InvalidPostbackError as exc:
            logger.info("postback refused: %s", printable(exc.reason))
            return refuse(span, "malformed", 400, exc.reason)
        add = self.inbox.add
        if span is not None:  # its context goes with the event, to the handlers' spans
            span.parsed(action=event.action, signing_token=event.token or "")
            add = _telemetry.with_traceparent(add, span.traceparent())
        try:
            stored = await add(
                **inbox_fields(event),
                body=body,
                content_type=request.content_type,
                received_at=now,
            )
        except Exception as exc:  # one line: on a full disk, every postback fails alike
            logger.error(
                "postback %s for %s not stored (answered 503): the inbox failed: %s",
                printable(event.action),
                shown_token(event.token),
                printable(error_text(exc)),
            )
            text = "could not store the postback; try again"
            return refuse(span, "inbox_unavailable", 503, text)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "postback %s for %s %s",
                printable(event.action),
                shown_token(event.token),
                "stored" if stored else "duplicate, already stored",
            )
        if stored is not None and not isinstance(stored, StoredEvent):  # (a bool, say)
            raise TypeError(
                f"{type(self.inbox).__name__}.add() returned {stored!r}: an Inbox returns "
                "the stored event or None (the protocol changed in dokobit-async 0.1)"
            )
        if span is not None:
            span.stored(duplicate=stored is None)
        dispatcher = self._dispatcher
        if stored is not None and dispatcher is not None:
            dispatcher.submit(stored, event)
            await dispatcher.hold(lambda: sender_gone(request))
        return _answer(200, "ok")

    async def store(self, body: bytes, content_type: str = "application/json") -> bool:
        """Store ``body`` as if it had been POSTed, then dispatch it: the HTTP path's
        parse, key and inbox (how the reconciler hands over a postback that never
        arrived, ``docs/architecture.md#reconciliation``). ``False``: a copy was
        already stored. Raises ``InvalidPostbackError`` for a body that is no postback."""
        now = time.time()
        received_at = datetime.fromtimestamp(now, tz=timezone.utc)
        event = parse_postback(body, content_type, received_at=received_at)
        fields = inbox_fields(event)
        stored = await self.inbox.add(
            **fields, body=body, content_type=content_type, received_at=now
        )
        if stored is not None and (dispatcher := self._dispatcher) is not None:
            dispatcher.submit(stored, event)
        return stored is not None


RECEIVER_KEY = web.AppKey("dokobit_async.receiver", PostbackReceiver)
"""Where ``setup`` leaves the receiver in the application's state."""


async def _not_found(request: web.Request) -> web.Response:
    return _answer(404, "not found")


def _failed(span: PostbackSpan | None) -> web.Response:
    logger.exception("postback receiver failed")  # a bug of ours: not the sender's fault
    return refuse(span, "internal_error", 503, "temporarily unavailable")


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
