"""The README's scale-out, composed from Python over a real Redis: two receivers that
store and answer only (``PostbackReceiver(None, inbox=RedisInbox(...))``) and a
``RedisWorker`` with the handlers, in one process; postbacks and their copies go to
both receivers over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from _receiver_helpers import postback, start_receiver, wait_until
from _redis import start_persistent

from dokobit_async.events import Event
from dokobit_async.inbox import Inbox
from dokobit_async.redis import RedisInbox, RedisWorker
from dokobit_async.routing import Router


async def test_receivers_without_handlers_feed_a_worker(redis_url: str) -> None:
    """Every postback is answered 200 by whichever receiver gets it, stored once (its
    copy at the other receiver is a duplicate), and handled once by the worker, the
    events of each signing in the order they were stored."""
    calls: list[tuple[str, str]] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        calls.append((event.token or "", event.action))

    sent = [
        (token, action)
        for token in ("s1", "s2", "s3")
        for action in ("signing_created", "signer_signed", "signing_completed")
    ]
    first = await start_receiver(None, inbox=RedisInbox(redis_url))
    second = await start_receiver(None, inbox=RedisInbox(redis_url))
    check = RedisInbox(redis_url)
    await check.open()
    try:
        async with aiohttp.ClientSession() as session:

            async def send(url: str, token: str, action: str) -> int:
                async with session.post(url, data=postback(token, action)) as response:
                    return response.status

            for token, action in sent:  # each event at one receiver, then its copy
                urls = [first[2], second[2]]
                assert await send(urls[0], token, action) == 200
                assert await send(urls[1], token, action) == 200

        stored = await check.list(limit=100)
        assert len(stored) == len(sent)  # the copies were duplicates
        async with RedisWorker(redis_url, router, block=0.2) as worker:
            running = asyncio.create_task(worker.run())
            try:
                await wait_until(lambda: _all_done(check, len(sent)))
            finally:
                await worker.stop()
                await running
    finally:
        await check.close()
        for _, runner, _ in (first, second):
            await runner.cleanup()
    by_seq = [(e.signing_token, e.action) for e in sorted(stored, key=lambda e: e.seq)]
    for token in ("s1", "s2", "s3"):
        handled = [call for call in calls if call[0] == token]
        assert handled == [item for item in by_seq if item[0] == token]
    assert sorted(calls) == sorted(sent)  # each once


async def _all_done(inbox: Inbox, count: int) -> bool:
    return (await inbox.counts()).get("done", 0) == count


async def test_a_receiver_answers_503_while_redis_is_gone_and_recovers(tmp_path: Path) -> None:
    """Redis stops under a receiver: every postback gets 503 (never a 200 it could not
    store); Redis comes back on its port with its data: the receiver stores again
    without a restart, the postback refused meanwhile is stored when sent again, and
    what was acknowledged before is all there."""
    server = start_persistent(tmp_path)
    _, runner, url = await start_receiver(None, inbox=RedisInbox(server.url, timeout=1.0))
    try:
        async with aiohttp.ClientSession() as session:

            async def send(token: str) -> int:
                async with session.post(url, data=postback(token)) as response:
                    return response.status

            assert await send("before") == 200
            server.stop()
            assert [await send(f"while-{n}") for n in range(3)] == [503, 503, 503]
            server = start_persistent(tmp_path, server.port)

            async def stores_again() -> bool:
                return await send("while-0") == 200

            await wait_until(stores_again)
            assert await send("after") == 200
    finally:
        await runner.cleanup()
        server.stop()
    server = start_persistent(tmp_path, server.port)
    try:
        async with RedisInbox(server.url) as inbox:
            stored = await inbox.list()
    finally:
        server.stop()
    assert [e.signing_token for e in stored] == ["before", "while-0", "after"]
