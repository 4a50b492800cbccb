"""Workers on a Redis inbox confirm each event against the API before its handlers run,
as the receiver's dispatcher does: over a real redis-server and the emulator. What
the API keeps contradicting ends ``unconfirmed`` (and ``retry`` brings it back); a
confirmation that fails is a failed attempt, retried; an event is confirmed once, not
again on its retries; and neither the access token nor a postback URL's secret is
ever in a Redis key or value, nor in a log line."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections import defaultdict
from typing import Any

import attrs
import pytest
import redis.asyncio
from _receiver_helpers import wait_until
from test_redis_worker import FAST, workers

from dokobit_async import DokobitClient, Router
from dokobit_async._confirm import api_confirmation
from dokobit_async.events import Event
from dokobit_async.models import ExternalSigner, SigningFile
from dokobit_async.redis import RedisInbox, RedisWorker
from dokobit_async.testing import Emulator, make_pdf

CONFIRMING = attrs.evolve(FAST, confirm_attempts=2, confirm_delay=0.01)


async def add(inbox: RedisInbox, id: str, payload: dict[str, str]) -> None:
    """Store a postback with ``payload`` as its JSON body under ``id``."""
    stored = await inbox.add(
        id=id,
        signing_token=payload["token"],
        action=payload["action"],
        body=json.dumps(payload).encode(),
        content_type="application/json",
        received_at=1000.0,
    )
    assert stored is not None


async def states(inbox: RedisInbox) -> dict[str, str]:
    return {event.id: event.state for event in await inbox.list(limit=100)}


async def settled(inbox: RedisInbox, count: int) -> bool:
    """Whether ``count`` events are stored and none is pending."""
    counts = await inbox.counts()
    return sum(counts.values()) == count and counts["pending"] == 0


async def test_confirmed_events_run_and_contradicted_ones_end_unconfirmed_until_retried(
    redis_url: str,
) -> None:
    """A signing of two signers on the emulator, the first has signed: its
    ``signer_signed`` is confirmed and runs; a ``signing_completed`` and the second
    signer's ``signer_signed`` (neither true yet) are read twice each, then set aside
    as ``unconfirmed`` without running; once the second signer signs, ``inbox retry``
    brings both back and the workers confirm and run them, in the signing's order.
    Each confirmation is one status read at the emulator."""
    ran: list[str] = []
    router = Router()

    @router.on_any
    async def note(event: Event) -> None:
        ran.append(f"{event.action}:{event.signer or ''}")

    async with (
        Emulator() as emu,
        DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=None) as client,
        RedisInbox(redis_url) as inbox,
    ):
        created = await client.external.create(
            name="A",
            type="pdf",
            files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
            signers=[
                ExternalSigner(external_id=f"u{i}", email=f"u{i}@example.com") for i in (1, 2)
            ],
        )
        first, second = (signer.token for signer in created.signers)
        await emu.sign(created.token, first)
        signed = {"action": "signer_signed", "token": created.token}
        await add(inbox, "one", {**signed, "signer": first})
        await add(inbox, "done", {"action": "signing_completed", "token": created.token})
        await add(inbox, "two", {**signed, "signer": second})
        reads_before = _status_reads(emu)
        async with workers(redis_url, router, 2, policy=CONFIRMING, client=client):
            await wait_until(lambda: settled(inbox, 3), timeout=30)
            assert await states(inbox) == {
                "one": "done",
                "done": "unconfirmed",
                "two": "unconfirmed",
            }
            assert ran == [f"signer_signed:{first}"]
            assert _status_reads(emu) - reads_before == 1 + 2 + 2
            await emu.sign(created.token, second)
            assert await inbox.retry("done")
            assert await inbox.retry("two")
            await wait_until(lambda: settled(inbox, 3), timeout=30)
        assert await states(inbox) == {"one": "done", "done": "done", "two": "done"}
    assert ran == [
        f"signer_signed:{first}",
        "signing_completed:",
        f"signer_signed:{second}",
    ]
    assert _status_reads(emu) - reads_before == 1 + 2 + 2 + 1 + 1


def _status_reads(emu: Emulator) -> int:
    return sum(1 for record in emu.requests if record.operation.endswith("/status"))


async def test_a_failing_confirmation_is_a_failed_attempt_and_is_retried(redis_url: str) -> None:
    """The confirmation raises twice (the API unreachable), then answers through the
    emulator: each failure is a failed attempt with its error kept and a backoff; the
    third attempt confirms the event and its handler runs once."""
    calls = 0
    handled: list[str] = []
    router = Router()

    @router.on_any
    async def note(event: Event) -> None:
        handled.append(event.action)

    async with (
        Emulator() as emu,
        DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=None) as client,
        RedisInbox(redis_url) as inbox,
    ):
        real = api_confirmation(client)

        async def flaky(event: Event) -> bool | None:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise ConnectionError(f"status read {calls} failed")
            return await real(event)

        created = await client.external.create(
            name="A",
            type="pdf",
            files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
            signers=[ExternalSigner(external_id="u1", email="u1@example.com")],
        )
        await emu.sign(created.token, created.signers[0].token)
        payload = {"action": "signer_signed", "token": created.token}
        await add(inbox, "e", {**payload, "signer": created.signers[0].token})
        async with workers(redis_url, router, 1, policy=CONFIRMING, confirm=flaky):
            await wait_until(lambda: settled(inbox, 1), timeout=30)
        event = await inbox.get("e")
    assert event is not None
    assert (event.state, event.attempts, calls, handled) == ("done", 2, 3, ["signer_signed"])
    assert event.last_error == "confirmation failed: ConnectionError: status read 2 failed"


async def test_an_event_is_confirmed_once_not_again_on_its_retries(redis_url: str) -> None:
    """Two events whose handlers fail at the first attempt: one with a handler that
    succeeded (``handlers_done``), one whose only handler failed (the ``cf`` mark of
    the attempt that confirmed it). Neither is confirmed again on its retry, which
    may run on the other worker: one confirmation per event."""
    asked: dict[str, int] = defaultdict(int)
    runs: dict[tuple[str, str], int] = defaultdict(int)
    router = Router()

    async def confirmation(event: Event) -> bool:
        asked[event.token or ""] += 1
        return True

    @router.on("signing_completed", name="steady")
    async def steady(event: Event) -> None:
        runs["steady", event.token or ""] += 1

    @router.on("signing_completed", name="flaky")
    async def flaky(event: Event) -> None:
        runs["flaky", event.token or ""] += 1
        if runs["flaky", event.token or ""] == 1:
            raise RuntimeError("first run fails")

    @router.on("signer_signed", name="alone")
    async def alone(event: Event) -> None:
        runs["alone", event.token or ""] += 1
        if runs["alone", event.token or ""] == 1:
            raise RuntimeError("first run fails")

    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "partly", {"action": "signing_completed", "token": "sig-partly"})
        await add(inbox, "none", {"action": "signer_signed", "token": "sig-none"})
        async with workers(redis_url, router, 2, policy=FAST, confirm=confirmation):
            await wait_until(lambda: settled(inbox, 2), timeout=30)
        got = [await inbox.get(id) for id in ("partly", "none")]
    assert [(e.state, e.attempts) for e in got if e] == [("done", 1), ("done", 1)]
    assert asked == {"sig-partly": 1, "sig-none": 1}
    assert runs["flaky", "sig-partly"] == 2
    assert runs["alone", "sig-none"] == 2


def _spellings(secret: str) -> set[bytes]:
    """``secret`` as it may be written: raw, percent-encoded (once, twice), base64
    and hex."""
    once = urllib.parse.quote(secret, safe="")
    return {
        s.encode()
        for s in (
            secret,
            once,
            urllib.parse.quote(once, safe=""),
            base64.b64encode(secret.encode()).decode(),
            base64.urlsafe_b64encode(secret.encode()).decode(),
            secret.encode().hex(),
        )
    }


async def test_no_key_value_or_log_line_holds_the_access_token(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A confirmation and a handler that fail with the access token in their errors
    (raw and percent-encoded, as a URL would carry it), until the event is
    dead-lettered: afterwards no Redis key, no value (every type, read whole) and no
    log line holds the token in any spelling; the stored error shows it masked."""
    router = Router()
    token = "tok-Secret+/=value-0123456789"
    leaky_url = f"https://api.example/status?access_token={urllib.parse.quote(token)}"

    @router.on_any
    async def leak(event: Event) -> None:
        raise RuntimeError(f"handler saw {token} at {leaky_url}")

    async def confirmation(event: Event) -> bool:
        if event.action == "signer_signed":
            raise ConnectionError(f"cannot read {leaky_url} ({token})")
        return True

    caplog.set_level(logging.DEBUG)
    async with (
        DokobitClient(token, base_url="http://127.0.0.1:9") as client,
        RedisInbox(redis_url) as inbox,
    ):
        await add(inbox, "c", {"action": "signer_signed", "token": "sig-c"})
        await add(inbox, "h", {"action": "signing_completed", "token": "sig-h"})
        async with workers(redis_url, router, 2, policy=FAST, client=client, confirm=confirmation):
            await wait_until(lambda: settled(inbox, 2), timeout=30)
        dead = [await inbox.get(id) for id in ("c", "h")]
    assert [(e.state, e.attempts) for e in dead if e] == [("dead", 3), ("dead", 3)]
    assert all(e is not None and "***" in (e.last_error or "") for e in dead)
    dumped = await _dump(redis_url)
    logged = "\n".join(record.getMessage() for record in caplog.records).encode()
    assert b"failed" in logged  # the failures were logged (masked)
    for spelling in _spellings(token):
        assert spelling not in dumped
        assert spelling not in logged


async def _dump(redis_url: str) -> bytes:
    """Every key of the database and its whole value, as one blob."""
    client = redis.asyncio.Redis.from_url(redis_url)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(count=500):
            parts.append(key)
            value: Any = await client.type(key)
            kind = value.decode()
            if kind == "string":
                value = await client.get(key)
                parts.append(value)
            elif kind == "hash":
                value = await client.hgetall(key)
                parts += [part for pair in value.items() for part in pair]
            elif kind == "zset":
                value = await client.zrange(key, 0, -1)
                parts += value
            elif kind == "stream":
                value = await client.xrange(key)
                parts += [part for _, fields in value for pair in fields.items() for part in pair]
            else:
                raise AssertionError(f"a key of an unexpected type: {key!r} {kind}")
    finally:
        await client.aclose()
    return b"\n".join(parts)


async def test_an_entry_replaced_by_a_hand_over_never_runs_its_event(redis_url: str) -> None:
    """The race behind a double run seen under load: a worker holds B's first entry
    (read while A ran) and, A finished, also B's hand-over entry. The first entry was
    taken out of the stream by the hand-over, so Redis 7's XAUTOCLAIM drops it from
    the pending list; had it taken B's turn, the turn would look stale and the
    hand-over entry would run B a second time. Only the current entry runs B: one
    'run' among the two, whatever their order."""
    from dokobit_async._inbox_redis_layout import queue_key
    from dokobit_async._redis_worker import GROUP

    async with RedisInbox(redis_url) as inbox, RedisWorker(redis_url, Router(), name="w") as w:
        stream = inbox.prefix + "stream"
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            await add(inbox, "A", {"action": "signer_signed", "token": "sig-r", "signer": "1"})
            await add(inbox, "B", {"action": "signer_signed", "token": "sig-r", "signer": "2"})
            read: Any = await client.xreadgroup(GROUP, "w", {stream: ">"}, count=10)
            (a_entry, _), (b_first, _) = read[0][1]
            assert (await w._script("TAKE", GROUP, a_entry, "w", "A"))[0] == b"run"
            queue = queue_key(inbox.prefix, "sig-r", "A")
            done = ("0", "0", "done", "0", "", "0")  # an attempt that succeeded
            await w._script("FINISH", GROUP, a_entry, "w", "A", queue, *done)
            read = await client.xreadgroup(GROUP, "w", {stream: ">"}, count=10)
            ((b_hand_over, _),) = read[0][1]
            first = await w._script("TAKE", GROUP, b_first, "w", "B")
            await client.xautoclaim(stream, GROUP, "w", 30_000, "0-0", count=10)
            second = await w._script("TAKE", GROUP, b_hand_over, "w", "B")
        finally:
            await client.aclose()
    verdicts = [v if isinstance(v, bytes) else v[0] for v in (first, second)]
    assert verdicts == [b"drop", b"run"]
