"""Back-pressure over a real loopback receiver: while dispatch is behind its own
answers (more than ``high_water`` events ready and not started), the answer to a new
postback is held, after it is stored, and one held answer goes per finished event; a
hung handler never holds an answer past ``max_ack_hold``, and a sender that hangs up
while held loses nothing (docs/architecture.md#back-pressure)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from _receiver_helpers import postback, start_receiver, wait_until

from dokobit_async.events import Event
from dokobit_async.exceptions import InvalidArgumentError
from dokobit_async.inbox import Inbox, MemoryInbox, SQLiteInbox
from dokobit_async.receiver import DispatchPolicy, PostbackReceiver
from dokobit_async.routing import Router


class Gated:
    """A router whose handler waits at a gate per signing, and a log of the calls."""

    def __init__(self) -> None:
        self.router = Router()
        self.calls: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

        @self.router.on_any
        async def handler(event: Event) -> None:
            token = event.token or ""
            self.calls.append(token)
            await self.gate(token).wait()

    def gate(self, token: str) -> asyncio.Event:
        return self.gates.setdefault(token, asyncio.Event())

    async def started(self, token: str) -> None:
        async def seen() -> bool:
            return token in self.calls

        await wait_until(seen)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as made:
        yield made


def _pressure(receiver: PostbackReceiver) -> int:
    dispatcher = receiver._dispatcher
    assert dispatcher is not None
    return dispatcher.pressure.holds


async def _holds(receiver: PostbackReceiver, count: int) -> None:
    async def reached() -> bool:
        return _pressure(receiver) == count

    await wait_until(reached)


async def _stored(inbox: Inbox, count: int) -> None:
    async def reached() -> bool:
        return len(await inbox.list(limit=1000)) == count

    await wait_until(reached)


async def answered(task: asyncio.Task[int]) -> int:
    """The status a held request got (a failure, not a hang, if it never comes)."""
    return await asyncio.wait_for(task, 15.0)


def _send(session: aiohttp.ClientSession, url: str, token: str) -> asyncio.Task[int]:
    async def post() -> int:
        async with session.post(url, data=postback(token)) as response:
            return response.status

    return asyncio.create_task(post())


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_answers_are_held_while_dispatch_is_behind_one_per_finished_event(
    kind: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """With one worker and a high-water mark of 1: the third postback's answer waits
    (its event already stored) until an event finishes, the fourth's until the next
    one; every event is handled once, in order."""
    inbox: Inbox = MemoryInbox() if kind == "memory" else SQLiteInbox(tmp_path / "inbox.db")
    gated = Gated()
    policy = DispatchPolicy(concurrency=1, high_water=1, max_ack_hold=600.0)
    receiver, runner, url = await start_receiver(gated.router, inbox=inbox, policy=policy)
    try:
        assert await _send(session, url, "s1") == 200
        await gated.started("s1")
        assert await _send(session, url, "s2") == 200  # one ready: not behind yet
        third = _send(session, url, "s3")
        await _holds(receiver, 1)
        await _stored(inbox, 3)  # stored before the hold
        fourth = _send(session, url, "s4")
        await _holds(receiver, 2)
        assert not third.done()
        assert not fourth.done()

        gated.gate("s1").set()  # s1 finishes: the oldest held answer goes
        assert await answered(third) == 200
        await gated.started("s2")
        assert not fourth.done()  # s2 runs, nothing else finished
        gated.gate("s2").set()
        assert await answered(fourth) == 200

        for token in ("s3", "s4"):
            gated.gate(token).set()
        await receiver.wait_idle()
        assert gated.calls == ["s1", "s2", "s3", "s4"]
        assert _pressure(receiver) == 2
    finally:
        await runner.cleanup()


async def test_without_a_high_water_mark_nothing_is_held(
    session: aiohttp.ClientSession,
) -> None:
    """``high_water=None``: the same load as above is answered at once."""
    gated = Gated()
    policy = DispatchPolicy(concurrency=1, high_water=None, max_ack_hold=600.0)
    receiver, runner, url = await start_receiver(gated.router, policy=policy)
    try:
        assert await _send(session, url, "s1") == 200
        await gated.started("s1")
        for token in ("s2", "s3", "s4", "s5"):
            assert await _send(session, url, token) == 200
        assert _pressure(receiver) == 0
        for token in ("s1", "s2", "s3", "s4", "s5"):
            gated.gate(token).set()
        await receiver.wait_idle()
    finally:
        await runner.cleanup()


async def test_a_hung_handler_never_holds_an_answer_past_max_ack_hold(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The handler of the first event never returns: the one answer held is sent
    when ``max_ack_hold`` ends, and from then on (nothing finished for that long)
    none is held; every postback is stored."""
    inbox = SQLiteInbox(tmp_path / "inbox.db")
    gated = Gated()
    policy = DispatchPolicy(concurrency=1, high_water=1, max_ack_hold=0.2, shutdown_timeout=0.1)
    receiver, runner, url = await start_receiver(gated.router, inbox=inbox, policy=policy)
    try:
        assert await _send(session, url, "s1") == 200
        await gated.started("s1")  # and it never ends
        assert await _send(session, url, "s2") == 200
        assert await _send(session, url, "s3") == 200  # held, then sent on time
        assert _pressure(receiver) == 1
        for token in ("s4", "s5", "s6"):
            assert await _send(session, url, token) == 200
        assert _pressure(receiver) == 1  # dispatch is stuck: holding would not help
        await _stored(inbox, 6)
        assert gated.calls == ["s1"]
    finally:
        await runner.cleanup()
    async with SQLiteInbox(tmp_path / "inbox.db") as reopened:  # left for the next start
        assert len(await reopened.pending()) == 6


async def test_a_sender_that_hangs_up_while_held_loses_nothing(
    session: aiohttp.ClientSession,
) -> None:
    """The sender gives up on a held answer: its event is stored and handled, the
    next finished event releases the next held answer (not the abandoned one), and
    the sender's retry is a duplicate, answered at once."""
    gated = Gated()
    policy = DispatchPolicy(concurrency=1, high_water=1, max_ack_hold=600.0)
    receiver, runner, url = await start_receiver(gated.router, policy=policy)
    try:
        assert await _send(session, url, "s1") == 200
        await gated.started("s1")
        assert await _send(session, url, "s2") == 200
        abandoned = _send(session, url, "s3")
        await _holds(receiver, 1)
        kept = _send(session, url, "s4")
        await _holds(receiver, 2)
        abandoned.cancel()  # the client closes its connection
        with pytest.raises(asyncio.CancelledError):
            await abandoned

        gated.gate("s1").set()
        assert await answered(kept) == 200  # the abandoned answer did not use up the release
        assert await _send(session, url, "s3") == 200  # the retry: a duplicate
        assert _pressure(receiver) == 2

        for token in ("s2", "s3", "s4"):
            gated.gate(token).set()
        await receiver.wait_idle()
        assert gated.calls == ["s1", "s2", "s3", "s4"]
    finally:
        await runner.cleanup()


async def test_shutdown_sends_every_held_answer(session: aiohttp.ClientSession) -> None:
    """A held answer goes out when the server shuts down, stored event and all: it
    does not keep the shutdown waiting for ``max_ack_hold``."""
    gated = Gated()
    policy = DispatchPolicy(concurrency=1, high_water=1, max_ack_hold=600.0, shutdown_timeout=0)
    receiver, runner, url = await start_receiver(gated.router, policy=policy)
    assert await _send(session, url, "s1") == 200
    await gated.started("s1")
    assert await _send(session, url, "s2") == 200
    held = _send(session, url, "s3")
    await _holds(receiver, 1)
    await _stored(receiver.inbox, 3)
    stopping = asyncio.create_task(runner.cleanup())
    assert await answered(held) == 200
    await asyncio.wait_for(stopping, 15.0)


@pytest.mark.parametrize(
    "options", [{"high_water": 0}, {"high_water": -1}, {"max_ack_hold": -0.5}]
)
def test_back_pressure_settings_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        DispatchPolicy(**options)  # type: ignore[arg-type]
