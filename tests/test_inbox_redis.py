"""The Redis inbox beyond the shared contract (tests/test_inbox.py runs that on Redis
too): replicas racing the same postbacks, a server that goes away or is killed, the
key layout the workers will read, and no secret in any key or value."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from _receiver_helpers import postback, start_receiver, wait_until
from _redis import RedisServer, running_redis, start_persistent, start_redis
from redis.crc import key_slot
from test_inbox import add
from test_redact import spellings

from dokobit_async import DispatchPolicy, DokobitClient, Router
from dokobit_async._inbox_redis_batch import BATCH_MAX
from dokobit_async._inbox_redis_client import CONNECTIONS
from dokobit_async._inbox_redis_layout import PAGE
from dokobit_async.events import Event
from dokobit_async.exceptions import InvalidArgumentError
from dokobit_async.inbox import InboxClosedError, InboxError, StoredEvent
from dokobit_async.redis import RedisInbox

TOKEN = "acc3ss/t0ken+with=odd&chars-0123456789"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    """A plain client of the session's server, to look at what the inbox wrote (typed
    Any: redis-py types its answers as ``bytes | str | None`` whatever the client)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def everything_stored(client: Any) -> list[bytes]:
    """Every key, and every member, field, value and stream entry under it."""
    found: list[bytes] = []
    async for key in client.scan_iter():
        found.append(key)
        kind = (await client.type(key)).decode()
        if kind == "zset":
            found += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                found += [field, value]
        elif kind == "stream":
            for entry_id, fields in await client.xrange(key):
                found += [entry_id, *fields.keys(), *fields.values()]
        elif kind == "string":
            found.append(await client.get(key))
        else:
            raise AssertionError(f"unexpected {kind} at {key!r}")
    return found


# -- many replicas, one inbox ----------------------------------------------------------


async def test_two_replicas_racing_the_same_ids_store_each_once(redis_url: str) -> None:
    """Two inboxes on one server (two receiver replicas, each its own connections) add
    the same 200 ids at the same time, each id from both sides: exactly one add per id
    returns the event, the other None; every id is stored once, with distinct seqs."""
    ids = [f"e{n}" for n in range(200)]
    async with RedisInbox(redis_url) as one, RedisInbox(redis_url) as two:
        results = await asyncio.gather(*(add(replica, id) for id in ids for replica in (one, two)))
        counts = await one.counts()
        stored = await two.list(limit=1000)
    for n, id in enumerate(ids):
        first, second = results[2 * n], results[2 * n + 1]
        assert (first is None) != (second is None), id
        winner = first or second
        assert winner is not None
        assert winner.id == id
    assert counts["pending"] == len(ids)
    assert sorted(e.id for e in stored) == sorted(ids)
    assert len({e.seq for e in stored}) == len(ids)


async def test_one_replicas_writes_are_the_others_reads(redis_url: str) -> None:
    """What one replica records (a handler's mark, a dead letter) the other reads at
    once; a retry from the other (the CLI) puts it back in the first one's pending."""
    async with RedisInbox(redis_url) as receiver, RedisInbox(redis_url) as cli:
        await add(receiver, "a")
        await receiver.record_attempt("a", handlers_done={"email"}, failed=True, state="dead")
        dead = await cli.list(state="dead")
        assert [(e.id, e.handlers_done) for e in dead] == [("a", frozenset({"email"}))]
        assert await cli.retry() == 1
        assert [e.id for e in await receiver.pending()] == ["a"]


async def test_reads_purges_and_retries_go_page_by_page_past_one_script_call(
    redis_url: str,
) -> None:
    """With more events than one script call looks at (PAGE), pending() with and
    without due_before, list(), retry() and purge() still see every event, in seq
    order, and stop at limit."""
    total = 2 * PAGE + 37
    async with RedisInbox(redis_url) as inbox:
        await asyncio.gather(*(add(inbox, f"e{n:05}") for n in range(total)))
        ids = [e.id for e in await inbox.list(limit=total + 10)]
        assert sorted(ids) == [f"e{n:05}" for n in range(total)]
        later = ids[::3]  # every third one waits for a retry
        for id in later:
            await inbox.record_failure(id, error="x", next_attempt_at=500.0)
        due = [e.id for e in await inbox.pending(limit=total, due_before=100.0)]
        assert due == [id for id in ids if id not in set(later)]
        assert [e.id for e in await inbox.pending(limit=PAGE + 1, after_seq=3)] == [
            e.id for e in await inbox.list(limit=total) if e.seq > 3
        ][: PAGE + 1]
        for id in ids[: PAGE + 5]:
            await inbox.set_state(id, "dead")
        assert await inbox.retry() == PAGE + 5
        for id in ids[: PAGE + 9]:
            await inbox.set_state(id, "done")
        assert await inbox.purge() == PAGE + 9
        assert (await inbox.counts())["pending"] == total - PAGE - 9


# -- group add -------------------------------------------------------------------------


def _script_calls(server: RedisServer) -> int:
    """How many EVALSHA calls the server has run (INFO commandstats)."""
    for line in server.command("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_adds_that_queue_up_together_share_one_script_call(
    redis_url: str, redis_server: RedisServer
) -> None:
    """Adds started together go to Redis in one script call (up to BATCH_MAX each):
    300 concurrent adds make two calls, and each gets its own event back, in the
    order the seqs were given; a lone add is one call of its own."""
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "warm-up")  # (loads the script)
        before = _script_calls(redis_server)
        results = await asyncio.gather(*(add(inbox, f"e{n}") for n in range(300)))
        assert _script_calls(redis_server) - before == 2
        assert [r.id for r in results if r is not None] == [f"e{n}" for n in range(300)]
        seqs = [r.seq for r in results if r is not None]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 300
        before = _script_calls(redis_server)
        assert await add(inbox, "lone") is not None
        assert _script_calls(redis_server) - before == 1
    assert BATCH_MAX < 300 <= 2 * BATCH_MAX


async def test_a_batch_that_fails_fails_each_of_its_adds_and_stores_nothing_twice(
    redis_url: str, raw: Any
) -> None:
    """A counter that is not a number (a damaged key) fails the whole batch: every add
    raises an InboxError of its own and nothing is stored. A counter reset below the
    numbers already given makes adds fail rather than reuse a seq (the stream refuses
    an entry id that is not above its last); once the counter is past them, adds work
    again, numbered above every earlier event."""
    async with RedisInbox(redis_url) as inbox:
        await raw.set(inbox.prefix + "seq", "damaged")
        results = await asyncio.gather(
            *(add(inbox, f"d{n}") for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, InboxError) for r in results), results
        assert len({id(r) for r in results}) == 5
        assert (await inbox.counts())["pending"] == 0
        await raw.set(inbox.prefix + "seq", "0")
        for n in range(3):
            assert await add(inbox, f"f{n}") is not None  # seqs 1, 2, 3
        await raw.set(inbox.prefix + "seq", "1")  # reset: 2 and 3 are taken
        for taken in ("reuse-2", "reuse-3"):
            with pytest.raises(InboxError):
                await add(inbox, taken)
            assert await inbox.get(taken) is None
        later = await add(inbox, "later")
        assert later is not None
        assert later.seq == 4


# -- the layout the workers will read ---------------------------------------------------


async def test_every_key_is_under_the_prefix_in_one_cluster_slot(redis_url: str, raw: Any) -> None:
    """Every key the inbox writes starts with its prefix and hashes to one Redis
    Cluster slot (the prefix's hash tag), so its scripts may touch them all."""
    async with RedisInbox(redis_url, prefix="app:{postbacks}:") as inbox:
        for n in range(20):
            await add(inbox, f"e{n}", signing=f"sig-{n % 3}")
        await inbox.record_attempt("e0", state="done")
        await inbox.record_attempt("e1", failed=True, state="dead", error="x")
        await inbox.retry()
        await inbox.purge()
    keys = [key async for key in raw.scan_iter()]
    assert len(keys) > 20
    assert all(key.startswith(b"app:{postbacks}:") for key in keys)
    assert {key_slot(key) for key in keys} == {key_slot(b"{postbacks}")}


async def test_the_stream_and_the_signing_queues_hold_exactly_the_pending_events(
    redis_url: str, raw: Any
) -> None:
    """The stream that workers will read has one entry per pending event, its ids rising
    with seq; each signing's queue holds its pending events by seq. An event leaving
    pending (done, dead, purged) leaves both; one put back (retry) comes back to both,
    with a new stream entry after the others."""
    async with RedisInbox(redis_url) as inbox:
        for n in range(6):
            await add(inbox, f"e{n}", signing="A" if n % 2 else "B")
        await add(inbox, "lone", signing="")
        await inbox.record_attempt("e1", state="done")
        await inbox.record_attempt("e2", failed=True, state="dead", error="gave up")
        await inbox.set_state("e3", "unconfirmed")
        await inbox.retry("e2")
        pending = {e.id: e for e in await inbox.pending()}
        prefix = inbox.prefix
    entries = await raw.xrange(prefix + "stream")
    assert sorted(f[b"id"].decode() for _, f in entries) == sorted(pending)
    numbers = [int(entry_id.split(b"-")[1]) for entry_id, _ in entries]
    assert numbers == sorted(numbers)
    assert [f[b"id"] for _, f in entries][-1] == b"e2"  # retried: a new entry, last
    for signing in ("A", "B"):
        queue = [m.decode() for m in await raw.zrange(_queue(prefix, signing), 0, -1)]
        expected = [e.id for e in pending.values() if e.signing_token == signing]
        assert queue == sorted(expected, key=lambda id: pending[id].seq)
    assert set(await raw.zrange(_queue(prefix, "B"), 0, -1)) == {b"e0", b"e2", b"e4"}


def _queue(prefix: str, signing: str) -> str:
    """A signing's queue key, computed here from the documented layout."""
    return f"{prefix}q:{hashlib.sha256(signing.encode()).hexdigest()}"


# -- faults ----------------------------------------------------------------------------


async def test_a_stopped_server_fails_every_call_with_a_clear_inbox_error(
    tmp_path: Path,
) -> None:
    """The server stops mid-run: add(), get(), record_attempt() and counts() each raise
    InboxError naming the server (never a silent success nor a hang); once a server is
    back on the same port, the same inbox object works again (nothing was stored in
    between: that server is a new, empty one)."""
    with running_redis(tmp_path) as server:
        inbox = RedisInbox(server.url, timeout=2.0)
        async with inbox:
            assert await add(inbox, "before")
            server.stop()
            calls = (
                add(inbox, "during"),
                inbox.get("before"),
                inbox.record_attempt("before", state="done"),
                inbox.counts(),
            )
            for call in calls:
                with pytest.raises(InboxError) as caught:
                    await call
                assert not isinstance(caught.value, InboxClosedError)
                assert f"127.0.0.1:{server.port}" in str(caught.value)
            back = start_redis(tmp_path, server.port)
            try:
                assert await add(inbox, "after") is not None
                assert await inbox.get("during") is None
            finally:
                back.stop()


async def test_killed_connections_fail_their_calls_alone_and_the_inbox_recovers(
    redis_url: str, redis_server: RedisServer
) -> None:
    """The server drops the inbox's connections (CLIENT KILL, as a restart or a proxy
    would) between rounds of concurrent adds: a call either returns or raises
    InboxError (a dead pooled connection fails the one call that finds it, and is
    replaced); every add() that returned an event stored it, none twice; and after
    the last kill the inbox gets back to work within one call per pooled connection."""
    acked: list[str] = []
    async with RedisInbox(redis_url) as inbox:
        for round in range(5):
            results = await asyncio.gather(
                *(add(inbox, f"r{round}-{n}") for n in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, (StoredEvent, InboxError)) for r in results), results
            acked += [r.id for r in results if isinstance(r, StoredEvent)]
            assert redis_server.command("CLIENT", "KILL", "TYPE", "normal").startswith(b":")
        for attempt in range(CONNECTIONS + 1):
            try:
                if await add(inbox, f"after-{attempt}") is not None:
                    break
            except InboxError:
                continue
        else:
            raise AssertionError("the inbox did not recover")
        stored = [e.id for e in await inbox.list(limit=1000)]
    assert set(acked) <= set(stored)
    assert len(stored) == len(set(stored))
    assert len(acked) >= 20  # the first round ran on fresh connections


async def test_every_acknowledged_add_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    """Four producers add events to a server with appendonly yes and appendfsync always;
    the server is killed (SIGKILL) mid-stream, then started again on the same files:
    it holds every event whose add() returned, with its fields, and the seq counter
    goes on above them (never reused)."""
    server = start_persistent(tmp_path)
    acked: dict[str, StoredEvent] = {}
    try:
        async with RedisInbox(server.url, timeout=2.0) as inbox:

            async def produce(worker: int) -> None:
                for n in range(100_000):  # bounded; ends at the first refused add
                    stored = await add(inbox, f"w{worker}-{n}", signing=f"s{worker}")
                    assert stored is not None
                    acked[stored.id] = stored

            producers = [asyncio.ensure_future(produce(w)) for w in range(4)]
            await wait_until(lambda: _at_least(acked, 300), timeout=30)
            server.process.send_signal(signal.SIGKILL)
            results = await asyncio.wait_for(
                asyncio.gather(*producers, return_exceptions=True), timeout=30
            )
            assert all(isinstance(r, InboxError) for r in results), results
        server.process.wait(10)
        assert server.process.returncode == -signal.SIGKILL
    finally:
        server.stop()
    restarted = start_persistent(tmp_path)
    try:
        async with RedisInbox(restarted.url) as inbox:
            stored = {e.id: e for e in await inbox.list(limit=1_000_000)}
            after = await add(inbox, "after-restart")
    finally:
        restarted.stop()
    assert [id for id in acked if stored.get(id) != acked[id]] == []
    assert len(acked) >= 300
    assert after is not None
    assert after.seq > max(e.seq for e in stored.values())


async def _at_least(acked: dict[str, StoredEvent], n: int) -> bool:
    return len(acked) >= n


# -- arguments, repr, the optional import ------------------------------------------------


def test_a_prefix_without_a_hash_tag_and_bad_arguments_are_refused() -> None:
    """The prefix must hold a Cluster hash tag; the URL must be a Redis one; a client
    that decodes answers to str is refused (the body is bytes)."""
    with pytest.raises(InvalidArgumentError, match="hash tag"):
        RedisInbox("redis://127.0.0.1:1/0", prefix="dokobit:")
    with pytest.raises(InvalidArgumentError, match="hash tag"):
        RedisInbox("redis://127.0.0.1:1/0", prefix="dokobit:{}:")
    with pytest.raises(InvalidArgumentError, match="redis://"):
        RedisInbox("http://127.0.0.1:1/0")
    with pytest.raises(InvalidArgumentError, match="port") as caught:
        RedisInbox("redis://user:s3cret@127.0.0.1:port/0")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        RedisInbox("redis://127.0.0.1:1/0", timeout=0)
    decoding = redis.asyncio.Redis(decode_responses=True)
    with pytest.raises(InvalidArgumentError, match="decode_responses"):
        RedisInbox(decoding)


async def test_a_refused_connection_is_one_clear_error_at_open_and_no_password_shows(
    tmp_path: Path,
) -> None:
    """open() on a port where nothing listens raises InboxError naming the address;
    neither that error nor the repr shows the URL's password (nor its query)."""
    with socket.socket() as sock:  # a port that refuses: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"redis://user:s3cret-pass@127.0.0.1:{port}/2?password=s3cret-pass"
        inbox = RedisInbox(url, timeout=2.0)
        with pytest.raises(InboxError) as caught:
            await inbox.open()
    shown = [str(caught.value), repr(caught.value), repr(inbox), str(caught.value.__cause__)]
    assert f"127.0.0.1:{port}/2" in str(caught.value)
    assert not any("s3cret" in text for text in shown), shown
    assert (
        repr(inbox)
        == f"RedisInbox('redis://127.0.0.1:{port}/2', prefix='dokobit:{{inbox}}:', closed)"
    )
    with pytest.raises(InboxClosedError):
        await inbox.counts()


def test_importing_the_package_does_not_import_redis() -> None:
    """``import dokobit_async`` (and the receiver, the inbox, the CLI) never loads
    redis-py; ``dokobit_async.redis`` does (so the check can tell)."""
    code = (
        "import sys\n"
        "import dokobit_async, dokobit_async.inbox, dokobit_async.receiver, dokobit_async.cli\n"
        "dokobit_async.SQLiteInbox, dokobit_async.PostbackReceiver\n"
        "before = 'redis' in sys.modules\n"
        "import dokobit_async.redis\n"
        "print(before, 'redis' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True"]


# -- no secret in Redis -------------------------------------------------------------------


async def test_no_key_nor_value_holds_the_access_token_or_the_url_secret(
    redis_url: str, raw: Any
) -> None:
    """A receiver on a Redis inbox, with a client (so it knows the token to mask) and a
    postback URL with its secret, takes postbacks (and a duplicate) whose handler fails
    with an error holding both the token and the URL: after the events are dead
    letters, no key, member, field, value or stream entry holds either secret in any
    spelling."""
    router = Router()
    seen: list[str] = []
    url_box: list[str] = []

    @router.on_any
    async def leaky(event: Event) -> None:  # every event
        seen.append(event.action)
        raise RuntimeError(f"failed with token {TOKEN} posting to {url_box[0]}")

    policy = DispatchPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)
    client = DokobitClient(TOKEN, base_url="http://127.0.0.1:9")
    async with RedisInbox(redis_url) as inbox:
        _, runner, url = await start_receiver(
            router, inbox=inbox, client=client, confirm=False, policy=policy
        )
        url_box.append(url)
        secret = url.rsplit("/", 1)[1]
        try:
            async with aiohttp.ClientSession() as session:
                for body in (postback("sig-1"), postback("sig-2"), postback("sig-1")):
                    async with session.post(url, data=body) as answer:
                        assert answer.status == 200
            await wait_until(lambda: _all_dead(inbox, 2))
        finally:
            await runner.cleanup()
            await client.aclose()
    assert len(seen) == 4  # two events, two attempts each: the handler did run
    stored = b"\n".join(await everything_stored(raw))
    assert b"failed with token" in stored  # the errors were stored, masked
    assert secret
    assert TOKEN not in url
    for value in (TOKEN, secret):
        encoded = {
            **spellings(value),
            "base64": base64.b64encode(value.encode()).decode(),
            "hex": value.encode().hex(),
        }
        for name, spelled in encoded.items():
            assert spelled.encode() not in stored, (value[:4], name)


async def _all_dead(inbox: RedisInbox, n: int) -> bool:
    return (await inbox.counts())["dead"] == n
