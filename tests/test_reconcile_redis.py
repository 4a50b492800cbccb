"""Reconciliation on a real Redis: a RedisInbox as the sink, a RedisTracker shared by
two processes (each signing polled by one of them), a RedisRateLimit budget, and no
trace of the access token in any key or value."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import redis.asyncio
from _processes import kill_and_reap
from test_reconcile import NOW_SCHEDULE, completed_signings, create, dead_url, sign_all

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
    client_ = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client_.scan_iter()]
        dumped = b"".join([key + (await client_.dump(key) or b"") for key in keys])
    finally:
        await client_.aclose()
    main_tag = hashlib.sha256(token.encode()).hexdigest()
    tags = {k.split(b"{")[1].split(b"}")[0] for k in keys if k.startswith(b"dokobit:ratelimit:")}
    assert main_tag.encode() in tags
    assert len(tags) == 2
    for shown in (token, quote(token), json.dumps(token)):
        assert shown.encode() not in dumped


def test_the_budget_is_a_share_of_the_client_limit() -> None:
    """``share`` of ``calls`` (at least one), over the same period."""
    client = DokobitClient("t" * 20, rate_limit=RateLimit(calls=7, period=2.0))
    unused = "redis://127.0.0.1:1/0"  # nothing connects: the budget is computed
    reconciler = Reconciler(client, RedisInbox(unused), RedisTracker(unused))
    assert reconciler.budget == RateLimit(calls=1, period=2.0)
