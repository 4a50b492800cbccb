"""``ConnectionGuard`` and ``GuardedSite``: the connection cap, which connection is
closed to make room, the header deadline, the rate-limited warning, the open-files
limit. A plain aiohttp application serves; clients are asyncio streams on
127.0.0.1. Every wait is bounded; fixed sleeps only where a duration is the subject.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from dokobit_async._serve import (
    ConnectionGuard,
    GuardedSite,
    _waiting_for_request,
    connection_room,
    default_max_connections,
    raise_open_files_limit,
)

WAIT = 10.0
RELEASE = web.AppKey("release", asyncio.Event)
ENTERED = web.AppKey("entered", asyncio.Event)


async def until(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Server:
    """An app with ``/`` (answers at once), ``/slow`` (until released) and ``/echo``
    (reads the body), served through a guard."""

    def __init__(self, guard: ConnectionGuard):
        self.guard = guard
        self.app = web.Application()
        self.app[RELEASE] = asyncio.Event()
        self.app[ENTERED] = asyncio.Event()
        self.app.router.add_get("/", self.fast)
        self.app.router.add_get("/slow", self.slow)
        self.app.router.add_post("/echo", self.echo)
        self.runner = web.AppRunner(self.app)
        self.port = 0

    async def fast(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def slow(self, request: web.Request) -> web.Response:
        request.app[ENTERED].set()
        await request.app[RELEASE].wait()
        return web.Response(text="slow")

    async def echo(self, request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def start(self) -> None:
        await self.runner.setup()
        await GuardedSite(self.runner, "127.0.0.1", 0, guard=self.guard).start()
        self.port = self.runner.addresses[0][1]

    async def connect(self) -> Client:
        client = Client(*await asyncio.open_connection("127.0.0.1", self.port))
        return client


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def get(self, path: str = "/") -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await self.answer()

    async def answer(self) -> int:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        return int(head.split()[1])

    async def closed_by_server(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []
    clients: list[Client] = []

    async def start(**options: float | int) -> Server:
        server = Server(ConnectionGuard(**options))  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        original = server.connect

        async def connect() -> Client:
            client = await original()
            clients.append(client)
            return client

        server.connect = connect  # type: ignore[method-assign]
        return server

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.app[RELEASE].set()
        await server.runner.cleanup()


async def test_at_the_cap_the_oldest_idle_connection_makes_room(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """With 3 open and the cap at 3, a new sender closes the oldest connection with
    no request in progress; one in the middle of a request is never chosen."""
    server = await serve(max_connections=3, header_timeout=30)
    busy = await server.connect()
    busy.writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(server.app[ENTERED].wait(), WAIT)
    first, second = await server.connect(), await server.connect()
    await until(lambda: server.guard.open_connections == 3, "3 open connections")

    third = await server.connect()
    assert await first.closed_by_server()
    fourth = await server.connect()
    assert await second.closed_by_server()
    assert server.guard.closed_idle == 2
    assert server.guard.open_connections == 3
    server.app[RELEASE].set()
    assert await busy.answer() == 200
    assert await third.get() == 200
    assert await fourth.get() == 200


async def test_a_new_connection_is_refused_when_every_open_one_is_busy(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """No idle connection to close: the newcomer is closed, the busy one served."""
    server = await serve(max_connections=1, header_timeout=30)
    busy = await server.connect()
    busy.writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(server.app[ENTERED].wait(), WAIT)
    late = await server.connect()
    assert await late.closed_by_server()
    assert server.guard.refused == 1
    server.app[RELEASE].set()
    assert await busy.answer() == 200


async def test_reaching_the_cap_warns_once_then_sums_up_per_interval(
    serve: Callable[..., Awaitable[Server]], caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty closings make one warning, not twenty; after the interval one summary
    counts those that followed the first warning; then, quiet, no more."""
    server = await serve(max_connections=1, header_timeout=30, log_interval=0.5)
    with caplog.at_level(logging.WARNING, logger="dokobit_async.serve"):
        for count in range(1, 21):
            await server.connect()

            def closed(n: int = count) -> bool:
                return server.guard.closed_idle == n - 1

            await until(closed, "a closing")
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1, warnings
        assert "at the limit of 1 open connections: closing the oldest idle" in warnings[0]
        await until(lambda: len(caplog.records) == 2, "the summary")
    assert "closed 18 idle connections, refused 0 new ones" in caplog.records[1].getMessage()


async def test_headers_must_arrive_in_time_but_an_idle_keep_alive_may_wait(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """A connection that sends nothing, and one that trickles its headers, are
    closed after the header timeout; a connection waiting between requests is not
    (the keep-alive timeout governs it), nor is a slow body."""
    server = await serve(header_timeout=1.0)
    silent = await server.connect()
    trickle = await server.connect()
    trickle.writer.write(b"GET / HTTP/1.1\r\nHo")
    kept = await server.connect()
    assert await kept.get() == 200
    slow_body = await server.connect()
    slow_body.writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")

    assert await silent.closed_by_server()
    assert await trickle.closed_by_server()
    assert server.guard.timed_out == 2
    await asyncio.sleep(2.0)  # the subject: twice the header timeout, idle between requests
    assert await kept.get() == 200
    slow_body.writer.write(b"cd")
    assert await slow_body.answer() == 200
    assert server.guard.timed_out == 2


async def test_idle_detection_matches_aiohttp(serve: Callable[..., Awaitable[Server]]) -> None:
    """The one private aiohttp detail the guard reads (RequestHandler._waiter, what
    aiohttp's own keep-alive expiry looks at) still tells an idle connection from
    a busy one. If this fails, aiohttp changed: see _serve._waiting_for_request."""
    assert "_waiter" in RequestHandler.__slots__
    server = await serve(header_timeout=30)
    idle = await server.connect()
    assert await idle.get() == 200
    busy = await server.connect()
    busy.writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(server.app[ENTERED].wait(), WAIT)
    assert server.runner.server is not None
    handlers = server.runner.server.connections
    assert len(handlers) == 2
    assert sorted(_waiting_for_request(h) for h in handlers) == [False, True]
    server.app[RELEASE].set()
    assert await busy.answer() == 200
    await until(lambda: all(_waiting_for_request(h) for h in handlers), "both idle")


async def test_the_site_is_listed_and_stopped_by_its_runner(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """``runner.addresses`` lists a GuardedSite and ``runner.cleanup()`` stops it,
    as for aiohttp's own sites (GuardedSite sets BaseSite's ``_server``)."""
    server = await serve()
    assert server.port > 0
    client = await server.connect()
    assert await client.get() == 200
    await server.runner.cleanup()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)


def test_the_default_cap_leaves_room_below_the_open_files_limit() -> None:
    """A reserve for other files and for connections accepted in one turn of the
    loop; at least a quarter of the limit; at most 10,000; none without a limit."""
    assert default_max_connections(1024) == 512
    assert default_max_connections(1024, backlog=64) == 704
    assert default_max_connections(256) == 64
    assert default_max_connections(1 << 20) == 10_000
    assert connection_room(1 << 20) == (1 << 20) - 3 * 128 - 128
    assert default_max_connections(None) is None
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionGuard(max_connections=0)
    with pytest.raises(ValueError, match="positive"):
        ConnectionGuard(header_timeout=0)


def test_raise_open_files_limit_goes_up_to_the_hard_limit() -> None:
    """From below the hard limit to it; a second call has nothing left to raise."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.skip(f"needs a finite hard limit of at least 512, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        assert raise_open_files_limit() == (256, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert raise_open_files_limit() == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
