"""Serving a receiver so that misbehaving senders cannot make it unreachable.

aiohttp's own server keeps an idle connection for an hour (``keepalive_timeout=3630``
unless ``run_app`` sets 75 s), and nothing limits how many connections it holds: a
client that opens a thousand connections and sends nothing uses up the process's
open-files limit, after which ``accept()`` fails (and asyncio logs each failure) and
no postback gets through. Three things keep a listener reachable:

* :func:`raise_open_files_limit` at start: the soft limit up to the hard one;
* a keep-alive timeout (:data:`KEEPALIVE_TIMEOUT`, passed to the runner) and a
  deadline for a request's headers (:data:`HEADER_TIMEOUT`): a connection that sends
  nothing, or trickles its headers, is closed when it passes;
* a cap on open connections below the open-files limit: when a new sender arrives at
  the cap, the oldest connection with no request in progress is closed to make room
  (as nginx does with idle keep-alive connections), so a real postback is served.

::

    runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger,
                           keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    raise_open_files_limit()
    await GuardedSite(runner, "0.0.0.0", 8080, guard=ConnectionGuard()).start()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from .exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = [
    "HEADER_TIMEOUT",
    "KEEPALIVE_TIMEOUT",
    "ConnectionGuard",
    "GuardedSite",
    "connection_room",
    "default_max_connections",
    "open_files_limit",
    "raise_open_files_limit",
]

logger = logging.getLogger("dokobit_async.serve")

KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept: ``run_app``'s value, longer than
the 60 s idle timeout of common proxies and load balancers, so that they close first
(a server that closes first races the proxy's next request)."""

HEADER_TIMEOUT = 10.0
"""Seconds a new connection has to deliver its first request's headers, and any
connection to finish headers it has begun: a sender writes them in one packet."""

LOG_INTERVAL = 60.0
"""At most one warning per this many seconds while the connection cap is reached."""

BACKLOG = 128
"""The listening socket's backlog (aiohttp's default)."""

# Files the process needs besides its connections: stdio, the event loop, the
# listening sockets, the inbox (database, WAL, shared memory), the API client's pool.
_RESERVED_FILES = 128
# No more connections than this by default, whatever the limit (memory, not files).
_MAX_CONNECTIONS = 10_000
# On macOS the hard limit may be "unlimited", yet the soft one cannot exceed this.
_DARWIN_OPEN_MAX = 10_240


def open_files_limit() -> int | None:
    """This process's soft limit on open files, or ``None`` where there is none to
    read (Windows) or it is unlimited."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open files as far as the hard limit allows.

    Returns ``(before, after)``, equal when it could not be raised (it already was
    the hard limit), or ``None`` where there are no such limits (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft, soft
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, _DARWIN_OPEN_MAX]
    for target in targets:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return soft, target
    return soft, soft


def connection_room(limit: int | None, backlog: int = BACKLOG) -> int | None:
    """How many connections an open-files ``limit`` leaves room for: what is left
    after a reserve for the process's other files and for connections accepted
    before the guard sees them (asyncio accepts up to ``backlog`` per turn of the
    loop, and a closed one frees its file a turn later); at least a quarter of the
    limit. ``None`` when there is no limit."""
    if limit is None:
        return None
    return max(limit - 3 * backlog - _RESERVED_FILES, limit // 4, 1)


def default_max_connections(limit: int | None, backlog: int = BACKLOG) -> int | None:
    """The default connection cap: :func:`connection_room`, at most 10,000 (beyond,
    memory matters more than files). ``None`` (no cap) when there is no limit."""
    room = connection_room(limit, backlog)
    return None if room is None else min(room, _MAX_CONNECTIONS)


def _waiting_for_request(handler: Any) -> bool:
    """Whether an aiohttp connection has no request in progress: none being handled,
    none parsed and waiting; at most part of one's headers has arrived."""
    # aiohttp has no public accessor for this. Its own keep-alive expiry closes a
    # connection in exactly this state ("handler in idle state" in
    # RequestHandler._process_keepalive: the waiter for the next message is pending).
    # If aiohttp renames it, this says False: nothing is closed early, the keep-alive
    # timeout still applies, ConnectionGuard warns once, and
    # tests/test_serve.py::test_idle_detection_matches_aiohttp fails.
    waiter = getattr(handler, "_waiter", None)
    return isinstance(waiter, asyncio.Future) and not waiter.done()


_CAN_TELL_IDLE = "_waiter" in getattr(RequestHandler, "__slots__", ())


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, watched by the guard."""

    __slots__ = ("deadline", "guard", "handler", "transport")

    def __init__(self, guard: ConnectionGuard, handler: asyncio.Protocol):
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.BaseTransport | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.handler.connection_made(transport)
        self.guard._admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.guard._forget(self)
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)
        if not _waiting_for_request(self.handler):
            self.disarm()  # a whole request arrived (or is being handled)
        elif self.deadline is None and self.transport is not None:
            self.arm()  # part of a request's headers: they must be done in time

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def idle(self) -> bool:
        return _waiting_for_request(self.handler)

    def arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.guard.header_timeout, self._deadline_passed)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def close(self) -> None:
        self.disarm()
        if self.transport is not None:
            self.transport.close()

    def _deadline_passed(self) -> None:
        self.deadline = None
        if self.idle():
            self.guard.timed_out += 1
            logger.debug(
                "closed a connection: no complete request headers within %g s",
                self.guard.header_timeout,
            )
            self.close()


class ConnectionGuard:
    """Limits on a server's connections (serve with :class:`GuardedSite`).

    At most ``max_connections`` are open (by default a share of the open-files limit
    when the guard is made, less a reserve: raise the limit first); a new
    connection at the cap closes the oldest one with no request in progress, or is
    itself closed when every one is busy. A new connection must deliver its first
    request's headers within ``header_timeout`` seconds, and a connection that has
    begun a request's headers must finish them as fast. Reaching the cap logs one
    warning, then a summary at most every ``log_interval`` seconds while it lasts.
    ``closed_idle``, ``refused`` and ``timed_out`` count the connections closed.
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        log_interval: float = LOG_INTERVAL,
        backlog: int = BACKLOG,
    ):
        if max_connections is not None and max_connections < 1:
            raise InvalidArgumentError("max_connections must be at least 1")
        if not header_timeout > 0 or not log_interval > 0:
            raise InvalidArgumentError("header_timeout and log_interval must be positive")
        if max_connections is None:
            max_connections = default_max_connections(open_files_limit(), backlog)
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.log_interval = log_interval
        self.closed_idle = 0
        self.refused = 0
        self.timed_out = 0
        self._open: dict[_Connection, None] = {}  # oldest first
        self._report: asyncio.TimerHandle | None = None
        self._closed_since = 0
        self._refused_since = 0
        if not _CAN_TELL_IDLE:  # pragma: no cover - a future aiohttp
            logger.warning(
                "this aiohttp does not show which connections are idle: no connection "
                "will be closed early (the keep-alive timeout still applies)"
            )

    def __repr__(self) -> str:
        return (
            f"<ConnectionGuard open={len(self._open)} max={self.max_connections} "
            f"header_timeout={self.header_timeout}>"
        )

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    def protocol_factory(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Wrap a protocol factory (such as ``runner.server``) for
        ``loop.create_server``: each connection it makes is watched by this guard."""

        def guarded() -> asyncio.Protocol:
            return _Connection(self, factory())

        return guarded

    def close(self) -> None:
        """Stop the pending summary, if any (a later cap starts a new one)."""
        if self._report is not None:
            self._report.cancel()
            self._report = None

    def _admit(self, connection: _Connection) -> None:
        cap = self.max_connections
        if cap is not None and len(self._open) >= cap:
            victim = next((c for c in self._open if c.idle()), None)
            if victim is None:
                self.refused += 1
                self._refused_since += 1
                self._reached()
                connection.close()
                return
            del self._open[victim]
            victim.close()
            self.closed_idle += 1
            self._closed_since += 1
            self._reached()
        self._open[connection] = None
        connection.arm()

    def _forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)

    def _reached(self) -> None:
        if self._report is not None:
            return
        logger.warning(
            "at the limit of %d open connections: closing the oldest idle ones to make "
            "room for new senders (raise the open-files limit for more; a summary follows "
            "every %g s while this lasts)",
            self.max_connections,
            self.log_interval,
        )
        self._closed_since = self._refused_since = 0
        loop = asyncio.get_running_loop()
        self._report = loop.call_later(self.log_interval, self._summary)

    def _summary(self) -> None:
        self._report = None
        if not self._closed_since and not self._refused_since:
            return
        logger.warning(
            "at the limit of %d connections in the last %g s: closed %d idle "
            "connections, refused %d new ones (every connection was busy)",
            self.max_connections,
            self.log_interval,
            self._closed_since,
            self._refused_since,
        )
        self._closed_since = self._refused_since = 0
        loop = asyncio.get_running_loop()
        self._report = loop.call_later(self.log_interval, self._summary)


class GuardedSite(web.BaseSite):
    """A TCP site, like ``web.TCPSite``, whose connections ``guard`` watches (a new
    :class:`ConnectionGuard` with its defaults if not given; share one between the
    sites of a process, the open-files limit is the process's)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None = None,
        port: int = 8080,
        *,
        guard: ConnectionGuard | None = None,
        backlog: int = BACKLOG,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        ssl_context: SSLContext | None = None,
    ):
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self.guard = guard if guard is not None else ConnectionGuard(backlog=backlog)
        self._web_runner = runner
        self._host = host
        self._port = port
        self._listen_options: dict[str, Any] = {
            "ssl": ssl_context,
            "backlog": backlog,
            "reuse_address": reuse_address,
            "reuse_port": reuse_port,
        }

    @property
    def name(self) -> str:
        """The site's URL, as ``web.TCPSite`` names it."""
        scheme = "https" if self._listen_options["ssl"] else "http"
        return str(URL.build(scheme=scheme, host=self._host or "0.0.0.0", port=self._port))  # noqa: S104

    async def start(self) -> None:
        """Listen; connections are served by the runner's server through the guard."""
        await super().start()
        server = self._web_runner.server
        assert server is not None  # BaseSite refuses a runner that is not set up
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            self.guard.protocol_factory(server), self._host, self._port, **self._listen_options
        )
        # BaseSite.stop() closes, and BaseRunner.addresses lists, what _server holds;
        # every aiohttp site sets it like this (tests check both keep working)
        self._server = listening

    async def stop(self) -> None:
        """Stop listening (the runner's cleanup calls this)."""
        self.guard.close()
        await super().stop()
