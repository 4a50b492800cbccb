"""RedisRateLimit in one process: several limiters sharing one Redis, as processes do.

Each limiter here has its own Redis connection and its own registry, exactly as in
another process (tests/test_ratelimit_redis_processes.py runs real processes). The
scenarios run on a real ``redis-server`` and on ``fakeredis[lua]`` (the same scripts,
on any machine). The virtual clock cannot drive Redis's ``TIME``, so the window rule
is shown by arrivals counted at a loopback server, over small periods; lower bounds
on when a call went are the rule itself, never a speed.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio
import redis.exceptions
from _ratelimit_server import counting_server, limited_once, most_in_a_window, overload, paused
from _redis import RedisServer, start_redis

from dokobit_async import DokobitClient, RetryPolicy
from dokobit_async._ratelimit_redis import token_keys
from dokobit_async.redis import RateLimitUnavailableError, RedisRateLimit

TOKEN = "redis/limit+token=secret"  # a token whose encodings differ from it
BUDGET = 30.0  # seconds: a bound on each scenario, never reached when healthy

Connect = Callable[[], redis.asyncio.Redis]


@pytest.fixture(params=["redis-server", "fakeredis"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """A new connection to one shared Redis per call (one per "process"), real or
    fake; all closed after the test."""
    opened: list[redis.asyncio.Redis] = []
    if request.param == "redis-server":
        url = request.getfixturevalue("redis_url")

        def new() -> redis.asyncio.Redis:
            opened.append(redis.asyncio.Redis.from_url(url))
            return opened[-1]
    else:
        server = fakeredis.FakeServer()

        def new() -> redis.asyncio.Redis:
            opened.append(fakeredis.FakeAsyncRedis(server=server))
            return opened[-1]

    yield new
    for client in opened:
        await client.aclose()


async def everything_stored(client: redis.asyncio.Redis) -> list[bytes]:
    """Every key, and every member, field and value under it (as bytes)."""
    found: list[Any] = []
    async for key in client.scan_iter():
        found.append(key)
        kind = await client.type(key)
        if kind == b"zset":
            found += await client.zrange(key, 0, -1)
        elif kind == b"hash":
            for field, value in (await client.hgetall(key)).items():
                found += [field, value]
        elif kind == b"string":
            found.append(await client.get(key))
    return [item if isinstance(item, bytes) else str(item).encode() for item in found]


async def test_two_limiters_on_one_redis_never_crowd_a_window_at_the_server(
    connect: Connect,
) -> None:
    """Two clients of one token, each with its own RedisRateLimit (its own Redis
    connection) and a cold, sometimes slow connection pool, under overload: the server
    never sees more than ``calls`` in any window, and no Redis key, member or value
    holds the token in any common encoding (only a hash of it)."""
    limits = [RedisRateLimit(connect(), calls=5, period=0.25, lease=5) for _ in range(2)]
    async with counting_server() as (host, arrivals):
        try:
            await asyncio.wait_for(overload(host.url, TOKEN, limits, 24), BUDGET)
        finally:
            for limit in limits:
                await limit.aclose()
    assert len(arrivals) == 24
    assert most_in_a_window(arrivals, 0.25) <= 5
    stored = b"\n".join(await everything_stored(connect()))
    assert token_keys(TOKEN)[1].encode() in stored  # the keys were there to scan
    for spelling in (
        TOKEN,
        urllib.parse.quote(TOKEN, safe=""),
        urllib.parse.quote_plus(TOKEN),
        base64.b64encode(TOKEN.encode()).decode(),
        TOKEN.encode().hex(),
    ):
        assert spelling.encode() not in stored


async def test_a_429_seen_by_one_limiter_pauses_the_other(connect: Connect) -> None:
    """A 429 with ``Retry-After`` answered to one client pauses the token in Redis:
    another client of it, with a limiter of its own, is not let through before the
    pause is over (and neither is the first one's retry)."""
    first, second = (RedisRateLimit(connect(), calls=50, period=1, burst=50) for _ in "ab")
    async with (
        limited_once("0.4") as (host, arrivals, limited_at),
        DokobitClient(TOKEN, base_url=host.url, rate_limit=first) as one,
        DokobitClient(TOKEN, base_url=host.url, rate_limit=second) as other,
    ):
        retried = asyncio.create_task(one.external.status("SIG"))
        watcher = connect()
        await asyncio.wait_for(paused(watcher, TOKEN), BUDGET)
        await asyncio.wait_for(other.external.status("SIG"), BUDGET)
        await asyncio.wait_for(retried, BUDGET)
        await first.aclose()
        await second.aclose()
    assert len(arrivals) == 3
    assert min(arrivals[1:]) - limited_at[0] >= 0.4e9


async def test_a_long_pause_outlives_the_idle_expiry_of_the_token_s_keys(
    connect: Connect,
) -> None:
    """Idle keys expire (after twice ``period + lease``), but a release that follows a
    429's pause never shortens the expiry the pause set: the pause is not forgotten
    while it lasts."""
    limit = RedisRateLimit(connect(), calls=5, period=0.1, lease=0.3)
    limiter = limit._limiter(TOKEN)
    await asyncio.wait_for(limiter.acquire(), BUDGET)
    limiter.pause(3600.0)
    watcher = connect()
    await asyncio.wait_for(paused(watcher, TOKEN), BUDGET)
    limiter.release()
    await limiter.drain()
    assert await watcher.zcard(token_keys(TOKEN)[1]) == 1  # the release went after it
    await limit.aclose()
    assert await watcher.pttl(token_keys(TOKEN)[2]) > 3_000_000


async def test_a_holder_that_died_frees_its_slots_when_their_lease_ends(
    connect: Connect,
) -> None:
    """A limiter that took two of three slots and vanished without releasing them
    (its process died: no release, no renewal) blocks the token only until the slots'
    lease ends, plus the period that follows every call's end; meanwhile a live
    holder of the third slot keeps renewing it (so the keys never expire)."""
    period, lease = 0.2, 0.3
    dead = RedisRateLimit(connect(), calls=3, period=period, burst=3, lease=lease)
    taken_at = time.monotonic()
    for _ in range(2):
        await dead._limiter(TOKEN).acquire()
    await dead.aclose()  # renewals stop; the slots stay taken in Redis
    alive = RedisRateLimit(connect(), calls=3, period=period, burst=3, lease=lease)
    limiter = alive._limiter(TOKEN)
    await asyncio.wait_for(limiter.acquire(), BUDGET)  # the third slot, kept
    await asyncio.wait_for(limiter.acquire(), BUDGET)
    granted_at = time.monotonic()
    limiter.release()
    limiter.release()
    await alive.aclose()
    assert granted_at - taken_at >= lease + period


async def test_calls_of_one_process_are_admitted_in_the_order_they_asked(
    connect: Connect,
) -> None:
    """Waiting calls of one limiter get their slots first come, first served; one
    cancelled while it waits takes none (the next in line gets it)."""
    limit = RedisRateLimit(connect(), calls=2, period=0.15, burst=2)
    limiter = limit._limiter(TOKEN)
    order: list[int] = []

    async def call(number: int) -> None:
        await limiter.acquire()
        order.append(number)
        limiter.release()

    tasks = []
    for number in range(6):
        tasks.append(asyncio.create_task(call(number)))
        await asyncio.sleep(0)  # each asks in turn
    tasks[3].cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), BUDGET)
    await limit.aclose()
    assert order == [0, 1, 2, 4, 5]
    assert await connect().zcard(token_keys(TOKEN)[0]) == 0  # nothing left held


@pytest.mark.parametrize("when", ["asking", "before the grant", "after the grant"])
async def test_a_call_cancelled_before_it_was_sent_takes_no_slot(
    connect: Connect, when: str
) -> None:
    """A call cancelled while its limiter asks Redis for its slot (before Redis
    answered, or once the grant is back: before it reached the call, or after it did
    but before the call resumed) sent nothing: a slot that Redis granted goes back (no
    ``ended`` stamp, the pace restored), so the next call is not held for the period."""
    limit = RedisRateLimit(connect(), calls=1, period=3600.0)
    limiter = limit._limiter(TOKEN)
    task = asyncio.create_task(limiter.acquire())
    ask = limiter._acquire

    async def answered(*args: Any, **kwargs: Any) -> Any:
        reply = await ask(*args, **kwargs)
        if when == "before the grant":
            task.cancel()  # the grant finds its waiter gone
        elif when == "after the grant":
            asyncio.get_running_loop().call_soon(task.cancel)  # before it resumes
        return reply

    limiter._acquire = answered  # type: ignore[assignment]
    await asyncio.sleep(0)  # it asked: Redis has not answered (that takes a read)
    if when == "asking":
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    limiter._acquire = ask
    await asyncio.wait_for(limiter.acquire(), BUDGET)  # an hour's period would block it
    limiter.release()
    await limit.aclose()
    watcher = connect()
    assert task.cancelled()
    assert await watcher.zcard(token_keys(TOKEN)[0]) == 0
    assert await watcher.zcard(token_keys(TOKEN)[1]) == 1  # one call ended, not two


@pytest.mark.parametrize("under_way", [0, 1])
async def test_a_call_cancelled_as_its_error_is_set_gives_back_no_slot(
    connect: Connect, under_way: int
) -> None:
    """A call cancelled (a timeout firing) in the very turn that Redis's failure was
    set on its waiter holds no slot: it raises the cancellation (not an IndexError),
    and gives back nothing, so the slot of another call under way stays taken in
    Redis until that call ends (counted, not freed early)."""
    limit = RedisRateLimit(connect(), calls=5, period=3600.0)
    limiter = limit._limiter(TOKEN)
    for _ in range(under_way):
        await asyncio.wait_for(limiter.acquire(), BUDGET)
    ask = limiter._acquire
    task: asyncio.Task[None] | None = None

    async def refused(*args: Any, **kwargs: Any) -> Any:
        assert task is not None
        asyncio.get_running_loop().call_soon(task.cancel)  # before the task resumes
        raise redis.exceptions.ResponseError("refused")

    limiter._acquire = refused  # type: ignore[assignment]
    task = asyncio.create_task(limiter.acquire())
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), BUDGET)
    limiter._acquire = ask
    await limiter.drain()
    watcher = connect()
    assert task.cancelled()
    assert await watcher.zcard(token_keys(TOKEN)[0]) == under_way  # still taken
    for _ in range(under_way):
        limiter.release()
    await limit.aclose()
    assert await watcher.zcard(token_keys(TOKEN)[0]) == 0
    assert await watcher.zcard(token_keys(TOKEN)[1]) == under_way  # ended, not given back


async def test_a_redis_that_refuses_the_script_fails_the_waiting_calls_at_once(
    connect: Connect,
) -> None:
    """A Redis that refuses the script (here: the token's key holds another type) is
    no outage to wait out: every waiting call fails with its own
    RateLimitUnavailableError that says so, and none hangs."""
    await connect().set(token_keys(TOKEN)[2], "not a hash")
    limit = RedisRateLimit(connect(), calls=5, period=1.0, redis_timeout=3600.0)
    limiter = limit._limiter(TOKEN)
    results = await asyncio.wait_for(
        asyncio.gather(*(limiter.acquire() for _ in range(3)), return_exceptions=True),
        BUDGET,
    )
    await limit.aclose()
    assert all(isinstance(r, RateLimitUnavailableError) for r in results)
    assert len({id(r) for r in results}) == 3
    assert "refused" in str(results[0])


def test_settings_are_checked_and_the_url_s_password_is_never_shown() -> None:
    """``lease`` and ``redis_timeout`` must be above 0; a URL's password stays out of
    the repr; every key of a token shares one hash tag made from a hash of it."""
    with pytest.raises(ValueError, match="lease"):
        RedisRateLimit("redis://localhost", lease=0)
    with pytest.raises(ValueError, match="redis_timeout"):
        RedisRateLimit("redis://localhost", redis_timeout=0)
    with pytest.raises(ValueError, match="burst"):
        RedisRateLimit("redis://localhost", calls=2, burst=3)
    limit = RedisRateLimit("redis://:pa55word@cache.internal:6380/2", calls=7)
    assert "pa55word" not in repr(limit)
    assert "cache.internal:6380/2" in repr(limit)
    keys = token_keys(TOKEN)
    tags = {key[key.index("{") : key.index("}") + 1] for key in keys}
    assert len(tags) == 1
    assert len(keys) == 3
    assert TOKEN not in "".join(keys)


def unlock(server: RedisServer, password: str) -> None:
    """Clear the server's password, so that its ``SHUTDOWN NOSAVE`` is obeyed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
        sock.sendall(f'AUTH {password}\r\nCONFIG SET requirepass ""\r\n'.encode())
        replies = b""
        while replies.count(b"\r\n") < 2:
            replies += sock.recv(1024)
    assert replies == b"+OK\r\n+OK\r\n"


async def test_redis_away_raises_after_the_deadline_then_recovers(tmp_path: Path) -> None:
    """Redis stopped: a call waits ``redis_timeout`` for it, sends nothing, and raises
    RateLimitUnavailableError (never a fall-back to a per-process limit), which names
    neither the URL's password nor the token; once Redis is back on its port, calls go
    through again."""
    server = start_redis(tmp_path)
    server.command("CONFIG", "SET", "requirepass", "s3cret-pw")
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    restarted: RedisServer | None = None
    limit = RedisRateLimit(url, calls=10, period=0.2, redis_timeout=0.3)
    try:
        async with (
            counting_server() as (host, arrivals),
            DokobitClient(
                TOKEN, base_url=host.url, rate_limit=limit, retry=RetryPolicy(max_attempts=1)
            ) as client,
        ):
            await asyncio.wait_for(client.external.status("SIG"), BUDGET)
            unlock(server, "s3cret-pw")
            server.stop()
            with pytest.raises(RateLimitUnavailableError) as caught:
                await asyncio.wait_for(client.external.status("SIG"), BUDGET)
            assert len(arrivals) == 1
            restarted = start_redis(tmp_path, port=server.port)
            restarted.command("CONFIG", "SET", "requirepass", "s3cret-pw")
            await asyncio.wait_for(client.external.status("SIG"), BUDGET)
            assert len(arrivals) == 2
        await limit.aclose()
    finally:
        if restarted is not None:
            unlock(restarted, "s3cret-pw")
            restarted.stop()
        server.stop()
    error = caught.value
    assert error.waited >= 0.3
    assert error.request is not None
    assert error.request.operation.endswith("status")
    for shown in (str(error), repr(error), repr(limit)):
        assert "s3cret-pw" not in shown
        assert TOKEN not in shown


def test_importing_the_package_does_not_import_redis() -> None:
    """The extra costs nothing unused: ``import dokobit_async`` (and a client with the
    default limit) never imports ``redis``; ``dokobit_async.redis`` does."""
    code = (
        "import sys, dokobit_async\n"
        "dokobit_async.DokobitClient('t')\n"
        "assert not [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]\n"
        "import dokobit_async.redis\n"
        "assert 'redis.asyncio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
