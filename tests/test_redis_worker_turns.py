"""The turns of the Redis worker against the inbox's hand edits, over a real
redis-server: ``inbox retry``, ``purge --state pending`` and ``set_state`` while a
worker runs an event of the same signing never leave the signing stuck; a worker
restarted under its name takes its entries back at once; an entry that is not an
event's does not end ``run()`` (and ``tests/test_redis_worker.py``: ``run()`` awaits
the handlers it cancels).

After each step the invariant of ``dokobit_async/_redis_worker_lua.py`` is checked
over the keys (:func:`stuck_queues`): the head of every non-empty queue has an entry
in the stream, waits in ``delayed``, or its queue's turn is held by an entry still in
the group's pending list. No sleep proves anything here: each wait is for a
condition, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio
from _receiver_helpers import wait_until
from test_redis_worker import FAST, add, workers

from dokobit_async import DispatchPolicy, Router
from dokobit_async._redis_worker import GROUP
from dokobit_async.events import Event
from dokobit_async.redis import RedisInbox, RedisWorker

QUICK = DispatchPolicy(shutdown_timeout=0.05)  # a handler left running is cancelled soon


async def stuck_queues(redis_url: str, prefix: str) -> list[str]:
    """The queues whose head nothing will ever run: no entry of its own in the
    stream, not in ``delayed``, and no turn held by a pending entry."""
    client = redis.asyncio.Redis.from_url(redis_url)
    stream, stuck = prefix + "stream", []
    try:
        async for key in client.scan_iter(match=prefix + "q:*", count=500):
            if key.endswith(b":turn"):
                continue
            heads: Any = await client.zrange(key, 0, 0)
            head: bytes = heads[0]
            xid = await client.hget(prefix + "e:" + head.decode(), "xid")
            if xid is not None and await client.xrange(stream, xid, xid):
                continue
            if await client.zscore(prefix + "delayed", head) is not None:
                continue
            turn = await client.get(key + b":turn")
            if turn is not None:
                txid = turn.split()[0]
                held: Any = await client.xpending_range(stream, GROUP, txid, txid, 1)
                if held:
                    continue
            stuck.append(f"{key.decode()} (head {head.decode()})")
    finally:
        await client.aclose()
    return stuck


async def all_taken(redis_url: str, prefix: str, running: int) -> bool:
    """Whether every stream entry was delivered to a worker and only ``running``
    entries are still pending in the group (the others went through TAKE)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        info: Any = await client.xinfo_stream(prefix + "stream")
        groups: Any = await client.xinfo_groups(prefix + "stream")
        if not groups:  # no worker has created the group yet
            return False
        pending: Any = await client.xpending(prefix + "stream", GROUP)
    except redis.exceptions.ResponseError as exc:
        if "NOGROUP" in str(exc):  # (the same, seen by XPENDING)
            return False
        raise
    finally:
        await client.aclose()
    delivered = groups[0]["last-delivered-id"] == info["last-generated-id"]
    return bool(delivered) and int(pending["pending"]) == running


def gated_router(gates: dict[int, asyncio.Event]) -> tuple[Router, list[int], set[int]]:
    """A router whose handler records ``n`` of each event it ran (in order), and
    holds event ``n`` until ``gates[n]`` is set (``started`` says it began)."""
    router, ran, started = Router(), [], set()

    @router.on_any
    async def note(event: Event) -> None:
        n = int(event.raw["n"])
        started.add(n)
        if n in gates:
            await gates[n].wait()
        ran.append(n)

    return router, ran, started


async def _has(found: set[int], n: int) -> bool:
    return n in found


@asynccontextmanager
async def two_events_one_held(
    redis_url: str, signing: str, held: int, *, first_dead: bool = False
) -> AsyncIterator[tuple[RedisInbox, RedisInbox, asyncio.Event, list[int]]]:
    """Events a (``n`` 0) and b (1) of ``signing`` (a dead first if asked), one
    worker running, whose handler of event ``held`` has started and holds on until
    the event yielded is set: the inbox, another one as ``inbox`` commands use, that
    event, and the ``n`` of each event run so far."""
    gate = asyncio.Event()
    router, ran, started = gated_router({held: gate})
    async with RedisInbox(redis_url) as inbox, RedisInbox(redis_url) as cli:
        await add(inbox, "a", signing, 0)
        await add(inbox, "b", signing, 1)
        if first_dead:
            await cli.set_state("a", "dead")
        async with workers(redis_url, router, 1, policy=FAST):
            await wait_until(lambda: _has(started, held))
            yield inbox, cli, gate, ran


async def _state_is(inbox: RedisInbox, id: str, state: str) -> bool:
    event = await inbox.get(id)
    return event is not None and event.state == state


async def test_retrying_an_earlier_event_while_a_later_one_runs_runs_it_next(
    redis_url: str,
) -> None:
    """Events a, b of one signing; a dead, b running: ``inbox retry a`` makes a the
    head again. Its entry is read while b holds the turn (acknowledged, 'wait'); at
    b's end the turn goes to a, which runs, and so does a later c."""
    async with two_events_one_held(redis_url, "sig-r", 1, first_dead=True) as scene:
        inbox, cli, gate, ran = scene
        assert await cli.retry("a") == 1
        await wait_until(lambda: all_taken(redis_url, inbox.prefix, 1))
        assert await stuck_queues(redis_url, inbox.prefix) == []
        gate.set()
        await wait_until(lambda: _state_is(inbox, "a", "done"))
        await add(inbox, "c", "sig-r", 2)
        await wait_until(lambda: _state_is(inbox, "c", "done"))
        assert await stuck_queues(redis_url, inbox.prefix) == []
    assert ran == [1, 0, 2]


@pytest.mark.parametrize("edit", ["purge", "set aside"])
async def test_taking_the_running_head_out_of_pending_hands_on_at_its_end(
    redis_url: str, edit: str
) -> None:
    """The head a of a signing runs when it is purged (``purge --state pending``) or
    set aside (``set_state``): the next event b runs once a's handler is over (its
    turn is handed on by a's end, and not before), and the signing goes on."""
    async with two_events_one_held(redis_url, "sig-p", 0) as (inbox, cli, gate, ran):
        if edit == "purge":
            assert await cli.purge(state="pending", older_than=1000.5) == 1
        else:
            await cli.set_state("a", "dead", error="set aside by hand")
        await wait_until(lambda: all_taken(redis_url, inbox.prefix, 1))
        assert await stuck_queues(redis_url, inbox.prefix) == []
        assert ran == []  # b has not run: a's handler is not over
        gate.set()
        await wait_until(lambda: _state_is(inbox, "b", "done"))
        await add(inbox, "c", "sig-p", 2)
        await wait_until(lambda: _state_is(inbox, "c", "done"))
        assert await stuck_queues(redis_url, inbox.prefix) == []
    assert ran == [0, 1, 2]


async def test_a_running_event_retried_by_hand_keeps_its_running_entry(redis_url: str) -> None:
    """a runs; by hand it is set aside and retried before its handler ends. The
    entry it runs with stays in the stream and stays its current one (a new entry
    would take it out, and the lease refresh would then drop it from the pending
    list: the turn would look free). a's end is recorded (done, handler run once),
    then b runs."""
    async with two_events_one_held(redis_url, "sig-t", 0) as (inbox, cli, gate, ran):
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            running: Any = await client.hget(inbox.prefix + "e:a", "xid")
            await cli.set_state("a", "dead")
            assert await cli.retry("a") == 1
            assert await client.hget(inbox.prefix + "e:a", "xid") == running
            assert await client.xrange(inbox.prefix + "stream", running, running)
        finally:
            await client.aclose()
        assert await stuck_queues(redis_url, inbox.prefix) == []
        gate.set()
        await wait_until(lambda: _state_is(inbox, "b", "done"))
        a = await inbox.get("a")
    assert a is not None
    assert (a.state, a.attempts) == ("done", 0)
    assert ran == [0, 1]


async def test_a_worker_restarted_under_its_name_takes_its_entry_back_at_once(
    redis_url: str,
) -> None:
    """A worker stops in the middle of a handler without finishing (its entry stays
    in its pending list); restarted with the same name and an hour's lease, it runs
    the event again from its own pending list, not after the lease."""
    gate = asyncio.Event()
    router, ran, started = gated_router({0: gate})
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "a", "sig-x", 0)
        async with RedisWorker(
            redis_url, router, name="x", lease=3600, block=0.2, policy=QUICK
        ) as worker:
            run = asyncio.ensure_future(worker.run())
            await wait_until(lambda: _has(started, 0))
            run.cancel()  # as if the process died: the handler never ends
            with pytest.raises(asyncio.CancelledError):
                await run
        gate.set()
        async with RedisWorker(redis_url, router, name="x", lease=3600, block=0.2) as worker:
            run = asyncio.ensure_future(worker.run())
            try:
                await wait_until(lambda: _state_is(inbox, "a", "done"))
            finally:
                await worker.stop()
                await asyncio.wait_for(run, timeout=30)
    assert ran == [0]


async def test_an_entry_that_is_not_an_events_is_skipped_and_the_worker_goes_on(
    redis_url: str,
) -> None:
    """An entry in the stream that is not an event's (no ``id`` field: written by
    something else) does not end ``run()``: it is skipped, and the next event runs."""
    router, ran, _ = gated_router({})
    async with RedisInbox(redis_url) as inbox:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.xadd(inbox.prefix + "stream", {"other": "thing"}, id="0-100")
            await client.set(inbox.prefix + "seq", 100)  # the inbox's next entries after it
        finally:
            await client.aclose()
        async with workers(redis_url, router, 1, policy=FAST):
            await wait_until(lambda: all_taken(redis_url, inbox.prefix, 1))
            await add(inbox, "after", "sig-f", 0)
            await wait_until(lambda: _state_is(inbox, "after", "done"))
    assert ran == [0]
