"""How dispatch spends the inbox and the event loop (docs/architecture.md#dispatch-keeps-up).

* One inbox write per attempt at an event (the handlers that succeeded and the outcome
  together), and none before its handlers run.
* That write does not hold a slot: while it waits for its commit, events of other
  signings run; the next event of the same signing waits for it.
* The event the receiver parsed is the one the handlers get: a postback is parsed once.

Counts and orders only, never durations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _receiver_helpers import postback, start_receiver, wait_until

from dokobit_async import _dispatcher
from dokobit_async._dispatcher import Dispatcher
from dokobit_async._policy import DispatchPolicy
from dokobit_async.events import Event, event_key, parse_postback
from dokobit_async.inbox import Inbox, MemoryInbox, SQLiteInbox, StoredEvent
from dokobit_async.routing import Router

JSON = {"Content-Type": "application/json"}
WRITES = ("mark_handler_done", "record_failure", "set_state", "record_attempt")


class CountingWrites:
    """An inbox that counts, per event, the dispatcher's writes (every method that
    changes an event after ``add``), and passes everything to ``inner``."""

    def __init__(self, inner: Inbox) -> None:
        self.inner = inner
        self.writes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in WRITES:
            return method

        async def counted(id: str, *args: Any, **kwargs: Any) -> Any:
            self.writes[id] += 1
            return await method(id, *args, **kwargs)

        return counted


async def stored_event(inbox: Inbox, token: str, n: int) -> StoredEvent:
    body = postback(token, "signer_signed")[:-1] + f', "signer": "s{n}"}}'.encode()
    event = parse_postback(body, "application/json")
    stored = await inbox.add(
        id=event_key(event),
        signing_token=token,
        action="signer_signed",
        body=body,
        content_type="application/json",
        received_at=1000.0 + n,
    )
    assert stored is not None
    return stored


@contextlib.asynccontextmanager
async def running(d: Dispatcher) -> AsyncIterator[Dispatcher]:
    await d.start()
    runner = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await d.drain(timeout=5)


async def test_one_write_per_attempt_and_none_before_the_handlers(tmp_path: Path) -> None:
    """Over HTTP into a real SQLite file, 30 postbacks (20 signings, one with 11
    events), two handlers each: every event that succeeds at once costs the inbox
    exactly one write after its ``add`` (both handlers' names and ``done``
    together), and no write has happened for an event when its handlers run. An
    event whose second handler fails once costs one write per attempt (two)."""
    inbox = CountingWrites(SQLiteInbox(tmp_path / "in.db"))
    seen_at_call: list[int] = []
    failed_once: set[str] = set()
    router = Router()

    @router.on_any
    async def first(event: Event) -> None:
        seen_at_call.append(inbox.writes[event_key(event)])

    @router.on_any
    async def second(event: Event) -> None:
        if event.token == "sig-flaky" and event.token not in failed_once:
            failed_once.add(event.token)
            raise RuntimeError("not yet")

    policy = DispatchPolicy(base_delay=0.0, max_delay=0.0)
    receiver, runner, url = await start_receiver(router, inbox=inbox, policy=policy)
    tokens = [f"sig-{n % 20}" for n in range(30)] + ["sig-flaky"]
    try:
        async with aiohttp.ClientSession() as session:
            for n, token in enumerate(tokens):
                body = postback(token, "signer_signed")[:-1] + f', "signer": "s{n}"}}'.encode()
                async with session.post(url, data=body, headers=JSON) as answer:
                    assert answer.status == 200
        await receiver.wait_idle(timeout=30)
        done = await inbox.list(state="done", limit=100)
    finally:
        await runner.cleanup()
    assert len(done) == 31
    names = {name.rsplit(".", 1)[-1] for event in done for name in event.handlers_done}
    assert names == {"first", "second"}
    assert all(len(event.handlers_done) == 2 for event in done)
    flaky = next(e.id for e in done if e.signing_token == "sig-flaky")
    assert inbox.writes.pop(flaky) == 2  # one per attempt
    assert set(inbox.writes.values()) == {1}
    assert len(inbox.writes) == 30
    assert seen_at_call == [0] * 31  # (the first handler succeeded once for each)


class GatedWrites(MemoryInbox):
    """A memory inbox whose dispatch writes for the signing ``held`` wait until
    ``gate`` opens; each write that returned is noted in ``log``."""

    def __init__(self, held: str, log: list[str]) -> None:
        super().__init__()
        self.held = held
        self.gate = asyncio.Event()
        self.log = log

    async def _wait(self, id: str) -> None:
        event = await self.get(id)
        if event is not None and event.signing_token == self.held:
            await self.gate.wait()

    async def record_attempt(self, id: str, **outcome: Any) -> int:
        await self._wait(id)
        attempts = await super().record_attempt(id, **outcome)
        self.log.append(f"recorded {id}")
        return attempts

    async def mark_handler_done(self, id: str, handler: str) -> None:
        await self._wait(id)
        await super().mark_handler_done(id, handler)

    async def set_state(self, id: str, state: Any, *, error: str | None = None) -> None:
        await self._wait(id)
        await super().set_state(id, state, error=error)
        self.log.append(f"recorded {id}")


async def test_a_recording_holds_its_signing_not_a_slot() -> None:
    """With one slot, the first event of signing A is handled and its write waits for
    a commit that does not come: an event of signing B is handled meanwhile, while
    A's second event waits for A's first to be recorded; then A goes on, in order."""
    log: list[str] = []
    inbox = GatedWrites(held="sig-a", log=log)
    await inbox.open()
    router = Router()
    b_ran = asyncio.Event()

    @router.on_any
    async def note(event: Event) -> None:
        log.append(f"handled {event.token}/{event.signer}")
        if event.token == "sig-b":
            b_ran.set()

    a1 = await stored_event(inbox, "sig-a", 1)
    a2 = await stored_event(inbox, "sig-a", 2)
    b1 = await stored_event(inbox, "sig-b", 3)
    d = Dispatcher(router, inbox, policy=DispatchPolicy(concurrency=1))
    async with running(d):
        for stored in (a1, a2, b1):
            d.submit(stored)
        await asyncio.wait_for(b_ran.wait(), timeout=10)

        async def b_recorded() -> bool:
            return f"recorded {b1.id}" in log

        await wait_until(b_recorded, timeout=10)
        assert log == ["handled sig-a/s1", "handled sig-b/s3", f"recorded {b1.id}"]
        inbox.gate.set()
        assert await asyncio.wait_for(d.wait_idle(), timeout=10)
    assert log[3:] == [f"recorded {a1.id}", "handled sig-a/s2", f"recorded {a2.id}"]
    assert (await inbox.counts())["done"] == 3


async def test_the_handlers_get_the_event_the_receiver_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher does not parse again what the receiver parsed before storing it:
    the handlers of new postbacks get that event, with the stored ``received_at``.
    Events it reads from the inbox (a restart) it parses itself."""
    parsed: list[bytes] = []

    def counting_parse(body: bytes, *args: Any, **kwargs: Any) -> Event:
        parsed.append(body)
        return parse_postback(body, *args, **kwargs)

    monkeypatch.setattr(_dispatcher, "parse_postback", counting_parse)
    got: list[Event] = []
    router = Router()

    @router.on_any
    async def keep(event: Event) -> None:
        got.append(event)

    path = tmp_path / "in.db"
    receiver, runner, url = await start_receiver(router, inbox=SQLiteInbox(path))
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(10):
                async with session.post(url, data=postback(f"sig-{n}"), headers=JSON) as answer:
                    assert answer.status == 200
        await receiver.wait_idle(timeout=30)
        stored = {e.signing_token: e for e in await receiver.inbox.list(limit=100)}
    finally:
        await runner.cleanup()
    assert parsed == []
    assert len(got) == 10
    for event in got:
        assert event.token is not None
        at = datetime.fromtimestamp(stored[event.token].received_at, tz=timezone.utc)
        assert event.received_at == at
    async with SQLiteInbox(path) as inbox:  # three more, stored while no receiver ran
        for n in range(3):
            await stored_event(inbox, f"later-{n}", n)
    receiver, runner, _ = await start_receiver(router, inbox=SQLiteInbox(path))
    try:
        await receiver.wait_idle(timeout=30)
    finally:
        await runner.cleanup()
    assert len(parsed) == 3
    assert len(got) == 13
