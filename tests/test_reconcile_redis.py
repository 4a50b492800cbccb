"""Reconciliation on a real Redis: a RedisInbox as the sink, a RedisTracker shared by
two processes (each signing polled by one of them), a RedisRateLimit budget, and no
trace of the access token in any key or value (every value read by its type)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis.asyncio
from _processes import kill_and_reap
from test_reconcile import NOW_SCHEDULE, completed_signings, create, dead_url, sign_all
from test_redact import spellings

from dokobit_async import DokobitClient, RateLimit
from dokobit_async.reconcile import Reconciler
from dokobit_async.redis import RedisInbox, RedisRateLimit, RedisTracker
from dokobit_async.testing import Emulator

CHILD = """
import asyncio, sys
from dokobit_async import DokobitClient, RateLimit, MemoryInbox
from dokobit_async.reconcile import Reconciler, Schedule
from dokobit_async.redis import RedisInbox, RedisTracker

async def main(token, base_url, redis_url, go):
    tracker = RedisTracker(redis_url, schedule=Schedule(first=0))
    inbox = RedisInbox(redis_url)
    await inbox.open()
    client = DokobitClient(token, base_url=base_url, rate_limit=RateLimit(calls=1000, period=1))
    reconciler = Reconciler(client, inbox, tracker, share=1.0, batch=100)
    print("ready", flush=True)
    while not __import__("os").path.exists(go):
        await asyncio.sleep(0.01)
    print("polled", await reconciler.poll_due(), flush=True)
    await reconciler.aclose()
    await client.aclose()
    await inbox.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_never_poll_one_signing_both(redis_url: str, tmp_path: Path) -> None:
    """Two reconciler processes claim the same due signings at the same moment: each
    signing's status is asked exactly once in all, and its events are stored once."""
    async with Emulator() as emu:
        tracker = RedisTracker(redis_url, schedule=NOW_SCHEDULE)
        created = await completed_signings(emu, tracker, 30)
        go = tmp_path / "go"
        args = [emu.access_token, emu.base_url, redis_url, str(go)]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, *args, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(2)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                line = await asyncio.wait_for(child.stdout.readline(), 60)
                assert line.strip() == b"ready"
            go.touch()
            polled = []
            for child in children:
                assert child.stdout is not None
                out = await asyncio.wait_for(child.stdout.read(), 60)
                assert await asyncio.wait_for(child.wait(), 60) == 0
                polled.append(int(out.split()[-1]))
        finally:
            for child in children:
                await kill_and_reap(child)
        status_calls = Counter(
            r.path.split("/")[-2] for r in emu.requests if r.operation.endswith("/status")
        )
    assert sum(polled) == len(created)
    assert status_calls == Counter({s.token: 1 for s in created})
    inbox = RedisInbox(redis_url)
    async with inbox:
        stored = await inbox.list(limit=1000)
    assert Counter(e.action for e in stored) == Counter(
        {"signer_signed": len(created), "signing_completed": len(created)}
    )


async def test_no_key_or_value_holds_the_access_token(redis_url: str) -> None:
    """After a reconciliation through Redis (tracker, inbox, the budget's limiter),
    no key and no value holds the access token, plain, URL-quoted or hashed as the
    main limiter's tag; the budget's keys are apart from the token's own."""
    async with Emulator() as emu:
        token = emu.access_token
        budget = RedisRateLimit(redis_url, calls=100, period=1.0)
        tracker = RedisTracker(redis_url, schedule=NOW_SCHEDULE)
        inbox = RedisInbox(redis_url)
        async with (
            inbox,
            DokobitClient(
                token, base_url=emu.base_url, rate_limit=budget, tracker=tracker
            ) as client,
        ):
            signing = await create(client, dead_url())
            await sign_all(emu, signing)
            reconciler = Reconciler(client, inbox, tracker)
            assert isinstance(reconciler.budget, RedisRateLimit)
            assert reconciler.budget.calls == 20
            assert await reconciler.poll_due() == 1
            await reconciler.aclose()
            await budget.aclose()
            assert len(await inbox.list()) == 3
    keys, stored = await everything_stored(redis_url)
    main_tag = hashlib.sha256(token.encode()).hexdigest()
    tags = {k.split(b"{")[1].split(b"}")[0] for k in keys if k.startswith(b"dokobit:ratelimit:")}
    assert main_tag.encode() in tags
    assert len(tags) == 2
    assert len(keys) > len(tags)  # the tracker's, the inbox's and the limiters' keys
    for name, shown in spellings(token).items():
        assert shown.encode() not in stored, name


async def everything_stored(redis_url: str) -> tuple[list[bytes], bytes]:
    """Every key, and every key with its value read by its type (never ``DUMP``,
    whose serialisation may compress a value: LZF), joined into one text."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter()]
        parts: list[bytes] = []
        for key in keys:
            kind = await client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            value: object = await READS[kind](client, key)
            parts.append(key + b"\n" + repr(value).encode())
    finally:
        await client.aclose()
    return keys, b"\n".join(parts)


Read = Callable[[redis.asyncio.Redis, bytes], Awaitable[Any]]
READS: dict[str, Read] = {
    "string": lambda c, k: c.get(k),
    "hash": lambda c, k: c.hgetall(k),
    "zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    "stream": lambda c, k: c.xrange(k),
    "list": lambda c, k: c.lrange(k, 0, -1),
    "set": lambda c, k: c.smembers(k),
}


async def test_the_scan_finds_a_token_planted_in_any_type(redis_url: str) -> None:
    """The scan above can fail: a token planted in a value of each type (a long,
    compressible string among them) is found, and in a key too."""
    token = "tok_" + "A1b2" * 10
    # DUMP compresses this value (LZF) into back-references that split the token:
    # a scan of DUMP output misses it
    repeated = ("access_token=" + token[:20] + " ") * 3 + token
    plants: dict[str, Callable[[redis.asyncio.Redis], Awaitable[Any]]] = {
        "string": lambda c: c.set("s", repeated),
        "hash": lambda c: c.hset("h", "f", token),
        "zset": lambda c: c.zadd("z", {token: 1.0}),
        "stream": lambda c: c.xadd("x", {"body": json.dumps({"t": token})}),
        "list": lambda c: c.rpush("l", quote(token)),
        "set": lambda c: c.sadd("e", token),
        "key": lambda c: c.set(f"k:{token}", "1"),
    }
    for kind, plant in plants.items():
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.flushall()
            await plant(client)
        finally:
            await client.aclose()
        _, stored = await everything_stored(redis_url)
        assert token.encode() in stored, kind


def test_the_budget_is_a_share_of_the_client_limit() -> None:
    """``share`` of ``calls`` (at least one), over the same period."""
    client = DokobitClient("t" * 20, rate_limit=RateLimit(calls=7, period=2.0))
    unused = "redis://127.0.0.1:1/0"  # nothing connects: the budget is computed
    reconciler = Reconciler(client, RedisInbox(unused), RedisTracker(unused))
    assert reconciler.budget == RateLimit(calls=1, period=2.0)
