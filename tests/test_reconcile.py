"""Reconciliation against the emulator: missed postbacks reach their handlers once.

Every test runs the whole path over loopback: the client creates signings on the
emulator (tracked), people sign on the emulator, the reconciler asks the status and
stores what it finds through the receiver, whose dispatcher runs the handlers.
Postbacks are dropped by giving the emulator an address where nothing listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _receiver_helpers import start_receiver, wait_until
from _redis import free_port
from aiohttp import web
from test_ratelimit import max_in_any_window
from test_redact import spellings

from dokobit_async import (
    DokobitClient,
    Event,
    ExternalSigner,
    MemoryInbox,
    RateLimit,
    RetryPolicy,
    SignerSigned,
    SigningCompleted,
    SigningFile,
)
from dokobit_async.receiver import PostbackReceiver
from dokobit_async.reconcile import (
    MemoryTracker,
    Reconciler,
    Schedule,
    SQLiteTracker,
    TrackedSigning,
    Tracker,
)
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator, EmulatorConfig, FaultKind, Faults, make_pdf

PDF = make_pdf(["Reconciled"])
NOW_SCHEDULE = Schedule(first=0)  # due at once: no waiting in tests


class Runs:
    """What the handlers saw: one entry per handler run."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.router = Router()
        self.router.on_any(self.record)

    async def record(self, event: Event) -> None:
        self.events.append(event)

    def counts(self) -> Counter[tuple[str, str | None, str | None]]:
        return Counter((e.action, e.token, e.signer) for e in self.events)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


class Relay:
    """A loopback postback address that keeps what it gets (answering 200) and can
    pass it on later, byte for byte: a postback that arrives late."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _keep(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(text="ok")

    async def __aenter__(self) -> Relay:
        app = web.Application()
        app.router.add_post("/hook", self._keep)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def forward(self, url: str) -> None:
        async with aiohttp.ClientSession() as http:
            for body in self.bodies:
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    assert answer.status == 200


@pytest.fixture(params=["memory", "sqlite"])
def tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Tracker:
    """Each in-process tracker, due at once."""
    if request.param == "memory":
        return MemoryTracker(NOW_SCHEDULE)
    return SQLiteTracker(tmp_path / "tracked.db", schedule=NOW_SCHEDULE)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(time_scale=0.000001)  # dropped postbacks give up at once
    async with Emulator(config=config) as emu:
        yield emu


async def served(runs: Runs) -> tuple[PostbackReceiver, web.AppRunner, str]:
    return await start_receiver(runs.router)


def client_for(emu: Emulator, tracker: Tracker, calls: int = 10_000) -> DokobitClient:
    return DokobitClient(
        emu.access_token,
        base_url=emu.base_url,
        rate_limit=RateLimit(calls=calls, period=1.0),
        tracker=tracker,
    )


async def create(client: DokobitClient, postback_url: str, people: int = 2) -> Any:
    return await client.external.create(
        name="Reconciled",
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="contract.pdf")],
        signers=[
            ExternalSigner(external_id=f"p{i}", name="P", surname=str(i), email=f"p{i}@ex.com")
            for i in range(people)
        ],
        postback_url=postback_url,
    )


async def sign_all(emu: Emulator, created: Any) -> None:
    for signer in created.signers:
        await emu.sign(created.token, signer.token)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nobody-listens"


async def completed_signings(emu: Emulator, tracker: Tracker, count: int) -> list[Any]:
    """``count`` one-signer signings created by a client with ``tracker`` (closed
    after), their postbacks sent where nobody listens, each signed: completed."""
    async with DokobitClient(emu.access_token, base_url=emu.base_url, tracker=tracker) as c:
        created = [await create(c, dead_url(), people=1) for _ in range(count)]
    await tracker.close()
    for signing in created:
        await sign_all(emu, signing)
    return created


async def test_dropped_postbacks_reach_each_handler_once_via_the_reconciler(
    emulator: Emulator, tracker: Tracker
) -> None:
    """With every postback lost, each signer's signature and each completion still
    reach the handlers, exactly once, marked ``via == "reconciler"``; the completed
    signings are no longer tracked, so a second round finds nothing."""
    runs = Runs()
    receiver, runner, _ = await served(runs)
    try:
        async with client_for(emulator, tracker) as client:
            created = [await create(client, dead_url()) for _ in range(3)]
            for signing in created:
                await sign_all(emulator, signing)
            await emulator.wait_postbacks_idle()
            assert emulator.postbacks
            assert all(not p.ok for p in emulator.postbacks)
            reconciler = Reconciler(client, receiver, tracker)
            assert await reconciler.poll_due() == 3
            await receiver.wait_idle()
            assert await reconciler.poll_due() == 0
            for signing in created:
                assert await tracker.get(signing.token) is None
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    expected = Counter(
        {("signing_completed", s.token, None): 1 for s in created}
        | {("signer_signed", s.token, p.token): 1 for s in created for p in s.signers}
    )
    assert runs.counts() == expected
    assert {e.via for e in runs.events} == {"reconciler"}
    completed = runs.of(SigningCompleted)
    assert all(isinstance(e, SigningCompleted) and e.file for e in completed)


async def test_a_half_signed_signing_is_reported_step_by_step(
    emulator: Emulator, tracker: Tracker
) -> None:
    """One look sees the first signature only; a later look sees the second and the
    completion, and never repeats the first."""
    runs = Runs()
    receiver, runner, _ = await served(runs)
    shift = [0.0]
    try:
        async with client_for(emulator, tracker) as client:
            created = await create(client, dead_url())
            reconciler = Reconciler(
                client, receiver, tracker, clock=lambda: time.time() + shift[0]
            )
            await emulator.sign(created.token, created.signers[0].token)
            assert await reconciler.poll_due() == 1
            await receiver.wait_idle()
            assert [e.action for e in runs.events] == ["signer_signed"]
            tracked = await tracker.get(created.token)
            assert tracked is not None
            assert tracked.polls == 1
            assert tracked.signers[created.signers[0].token] == "signed"
            assert await reconciler.poll_due() == 0  # not due again yet: backing off
            await emulator.sign(created.token, created.signers[1].token)
            shift[0] = NOW_SCHEDULE.after(1)
            assert await reconciler.poll_due() == 1
            await receiver.wait_idle()
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    assert [(e.action, e.signer) for e in runs.events] == [
        ("signer_signed", created.signers[0].token),
        ("signer_signed", created.signers[1].token),
        ("signing_completed", None),
    ]


async def test_postback_first_then_reconciler_runs_each_handler_once(
    emulator: Emulator,
) -> None:
    """Postbacks that did arrive make the reconciler's copies duplicates: each
    handler ran once, and the events say they came by postback."""
    runs = Runs()
    tracker = MemoryTracker(NOW_SCHEDULE)
    receiver, runner, url = await served(runs)
    try:
        async with client_for(emulator, tracker) as client:
            created = await create(client, url)
            await sign_all(emulator, created)
            await emulator.wait_postbacks_idle()
            await receiver.wait_idle()
            reconciler = Reconciler(client, receiver, tracker)
            assert await reconciler.poll_due() == 1
            await receiver.wait_idle()
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    counts = runs.counts()
    assert set(counts.values()) == {1}
    assert counts[("signing_completed", created.token, None)] == 1
    assert counts[("signing_created", created.token, None)] == 1
    assert {e.via for e in runs.events} == {"postback"}


async def test_reconciler_first_then_late_postbacks_run_each_handler_once(
    emulator: Emulator,
) -> None:
    """The reconciler stores first; Dokobit's postbacks, arriving late with their
    own bodies, are duplicates of what it stored: each handler ran once."""
    runs = Runs()
    tracker = MemoryTracker(NOW_SCHEDULE)
    receiver, runner, url = await served(runs)
    try:
        async with Relay() as relay, client_for(emulator, tracker) as client:
            created = await create(client, relay.url)
            await sign_all(emulator, created)
            await emulator.wait_postbacks_idle()
            reconciler = Reconciler(client, receiver, tracker)
            assert await reconciler.poll_due() == 1
            await receiver.wait_idle()
            late = [json.loads(body)["action"] for body in relay.bodies]
            assert late.count("signer_signed") == 2
            assert "signing_completed" in late
            await relay.forward(url)
            await receiver.wait_idle()
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    counts = runs.counts()
    assert counts == Counter(
        {
            ("signing_created", created.token, None): 1,  # only the postback knows it
            ("signing_completed", created.token, None): 1,
            **{("signer_signed", created.token, p.token): 1 for p in created.signers},
        }
    )
    via = {(e.action, e.via) for e in runs.events}
    assert ("signing_completed", "reconciler") in via
    assert ("signer_signed", "reconciler") in via
    assert all(isinstance(e, SignerSigned) for e in runs.of(SignerSigned))


async def test_polling_never_takes_more_than_its_share_of_the_rate_limit(
    emulator: Emulator,
) -> None:
    """With 24 open signings due at once and 20 calls a second for the token, the
    status calls reach the emulator at most 4 (share 0.2) in any one-second window,
    while the application's own calls still go through: all of them reach the
    emulator, and before the reconciler's last call (they do not queue behind it)."""
    tracker = MemoryTracker(NOW_SCHEDULE)
    async with client_for(emulator, tracker, calls=20) as client:
        created = [await create(client, dead_url(), people=1) for _ in range(24)]
        own = await create(client, dead_url(), people=1)  # the application's signing
        await tracker.forget(own.token)
        reconciler = Reconciler(client, MemoryInbox(), tracker, share=0.2, batch=24)
        assert reconciler.budget == RateLimit(calls=4, period=1.0)
        polling = asyncio.create_task(reconciler.poll_due())
        for _ in range(8):
            await client.external.status(own.token)
        assert await polling == len(created)
        await reconciler.aclose()
    status = [r for r in emulator.requests if r.operation.endswith("/status")]
    polls = [r.time.timestamp() for r in status if own.token not in r.path]
    apps = [r.time.timestamp() for r in status if own.token in r.path]
    assert len(polls) == len(created)
    assert max_in_any_window(polls, 1.0) <= 4
    assert len(apps) == 8
    assert max(apps) < max(polls)


def unavailable_status() -> Emulator:
    """An emulator whose every status answer is a 503 (the other routes work)."""
    faults = Faults(
        rate=1.0, weights={FaultKind.UNAVAILABLE: 1.0}, operations={"signing-external/status"}
    )
    return Emulator(config=EmulatorConfig(time_scale=0.000001, faults=faults))


async def test_a_slot_of_the_share_is_one_call_even_when_the_status_fails(
    emulator: Emulator,
) -> None:
    """Every status answer is a 503: the reconciler makes one attempt per look (no
    retries inside its slot, though the client retries its own calls), so its calls
    at the emulator never exceed its share, 2 in any one-second window."""
    tracker = MemoryTracker(NOW_SCHEDULE)
    async with unavailable_status() as emu:
        async with DokobitClient(
            emu.access_token,
            base_url=emu.base_url,
            rate_limit=RateLimit(calls=10, period=1.0),
            retry=RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.001),
            tracker=tracker,
        ) as client:
            created = [await create(client, dead_url(), people=1) for _ in range(4)]
            reconciler = Reconciler(client, MemoryInbox(), tracker, share=0.2, batch=4)
            assert reconciler.budget == RateLimit(calls=2, period=1.0)
            assert await reconciler.poll_due() == len(created)
            await reconciler.aclose()
            for signing in created:  # each look failed: looked at again later
                tracked = await tracker.get(signing.token)
                assert tracked is not None
                assert tracked.polls == 1
        calls = [r.time.timestamp() for r in emu.requests if r.operation.endswith("/status")]
        assert all(r.status == 503 for r in emu.requests if r.operation.endswith("/status"))
    assert len(calls) == len(created)
    assert max_in_any_window(calls, 1.0) <= 2


def test_the_share_of_the_calls_is_not_lost_to_floating_error() -> None:
    """``calls * share`` rounds down, but ``100 * 0.29`` (28.999...) is 29 calls, and
    the share is never below one call."""
    for calls, share, expected in ((100, 0.29, 29), (100, 0.57, 57), (7, 0.1, 1), (3, 1.0, 3)):
        client = DokobitClient("t" * 20, rate_limit=RateLimit(calls=calls, period=1.0))
        reconciler = Reconciler(client, MemoryInbox(), MemoryTracker(), share=share)
        assert reconciler.budget == RateLimit(calls=expected, period=1.0)


async def test_a_deleted_signing_is_no_longer_tracked(emulator: Emulator) -> None:
    """A 404 for the status (the signing was deleted) ends its tracking."""
    tracker = MemoryTracker(NOW_SCHEDULE)
    async with client_for(emulator, tracker) as client:
        created = await create(client, dead_url())
        await client.external.delete(created.token)
        reconciler = Reconciler(client, MemoryInbox(), tracker)
        assert await reconciler.poll_due() == 1
        assert await tracker.get(created.token) is None


async def test_a_signing_past_its_max_age_is_no_longer_tracked(emulator: Emulator) -> None:
    """A signing still pending after ``max_age`` is looked at once more, then dropped."""
    tracker = MemoryTracker(Schedule(first=0, max_age=3600))
    shift = [0.0]
    async with client_for(emulator, tracker) as client:
        created = await create(client, dead_url())
        reconciler = Reconciler(
            client, MemoryInbox(), tracker, clock=lambda: time.time() + shift[0]
        )
        assert await reconciler.poll_due() == 1
        assert await tracker.get(created.token) is not None
        shift[0] = 3600
        assert await reconciler.poll_due() == 1
        assert await tracker.get(created.token) is None


async def test_a_signing_whose_status_keeps_failing_is_dropped_at_its_max_age() -> None:
    """A status that fails on every look (a 503, one attempt per look) is looked at
    again until ``max_age``, then the signing is no longer tracked."""
    tracker = MemoryTracker(Schedule(first=0, max_age=3600))
    shift = [0.0]
    async with unavailable_status() as emu, client_for(emu, tracker) as client:
        created = await create(client, dead_url())
        reconciler = Reconciler(
            client, MemoryInbox(), tracker, clock=lambda: time.time() + shift[0]
        )
        assert await reconciler.poll_due() == 1
        tracked = await tracker.get(created.token)
        assert tracked is not None
        assert tracked.polls == 1
        shift[0] = 3600
        assert await reconciler.poll_due() == 1
        assert await tracker.get(created.token) is None
        await reconciler.aclose()
        answers = [r.status for r in emu.requests if r.operation.endswith("/status")]
    assert answers == [503, 503]


async def test_a_signing_first_seen_archived_reports_its_completion(
    emulator: Emulator, tracker: Tracker
) -> None:
    """Archiving follows the completion: a first look that finds the signing
    ``archived`` (set on the emulator's record, which cannot archive by itself)
    still stores the signature and the completion, and ends the tracking."""
    runs = Runs()
    receiver, runner, _ = await served(runs)
    try:
        async with client_for(emulator, tracker) as client:
            created = await create(client, dead_url(), people=1)
            await sign_all(emulator, created)
            emulator.signings[created.token].status = "archived"
            reconciler = Reconciler(client, receiver, tracker)
            assert await reconciler.poll_due() == 1
            await receiver.wait_idle()
            assert await tracker.get(created.token) is None
            await reconciler.aclose()
    finally:
        await runner.cleanup()
    assert runs.counts() == Counter(
        {
            ("signer_signed", created.token, created.signers[0].token): 1,
            ("signing_completed", created.token, None): 1,
        }
    )


def leaky(token: str) -> str:
    """An error text that quotes ``token`` in every spelling the leak tests know."""
    return "redis://h/0?access_token=" + " ".join(spellings(token).values())


class LeakyInbox(MemoryInbox):
    """Every add fails, quoting ``token``."""

    token = ""

    async def add(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(leaky(self.token))


class LeakyTracker(MemoryTracker):
    """Its first claim fails, then every update, each quoting the access token."""

    def __init__(self, token: str) -> None:
        super().__init__(NOW_SCHEDULE)
        self.token = token
        self.claims = 0

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        self.claims += 1
        if self.claims == 1:
            raise OSError(leaky(self.token))
        return await super().claim(now, limit, lease)

    async def update(self, signing: TrackedSigning) -> None:
        raise OSError(leaky(self.token))


async def test_no_log_line_of_the_reconciler_shows_the_access_token(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A tracker and an inbox whose errors quote the access token (a URL with it):
    the reconciler's ERROR lines name the errors, and no log record holds the token
    in any spelling."""
    caplog.set_level(logging.DEBUG)
    token = emulator.access_token
    tracker = LeakyTracker(token)
    inbox = LeakyInbox()
    inbox.token = token
    async with client_for(emulator, tracker) as client, inbox:
        stored = await create(client, dead_url(), people=1)
        failing = await create(client, dead_url(), people=1)
        await sign_all(emulator, stored)
        reconciler = Reconciler(client, inbox, tracker, idle=0.01)
        running = asyncio.create_task(reconciler.run())
        try:
            await wait_until(lambda: _logged(caplog, *KINDS))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await reconciler.aclose()
    assert failing.token
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for name, spelled in spellings(token).items():
            assert spelled not in text, name


KINDS = ("the tracker failed: OSError", "not stored: OSError", "look at ")


async def _logged(caplog: pytest.LogCaptureFixture, *kinds: str) -> bool:
    """Whether an ERROR line of each kind was logged."""
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    return all(any(kind in line for line in lines) for kind in kinds)


class FailingTracker(MemoryTracker):
    async def track(self, token: str, flow: str, created_at: float) -> None:
        raise OSError("disk full")


async def test_a_tracking_failure_is_logged_and_never_fails_the_create(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The signing exists once created: a tracker that fails is one ERROR line (no
    token in it), and the create returns its answer."""
    async with client_for(emulator, FailingTracker()) as client:
        created = await create(client, dead_url())
    assert created.token in emulator.signings
    errors = [r for r in caplog.records if "not tracked" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].levelname == "ERROR"
    assert emulator.access_token not in caplog.text


async def test_the_client_tracks_its_creates_with_their_flow(
    emulator: Emulator, tracker: Tracker
) -> None:
    """Each signing the client creates is tracked with its flow and first look."""
    async with client_for(emulator, tracker) as client:
        before = time.time()
        created = await create(client, dead_url())
        await tracker.close()
    tracked = await tracker.get(created.token)
    assert tracked is not None
    assert tracked.flow == "external"
    assert tracked.polls == 0
    assert tracked.status == ""
    assert before <= tracked.created_at <= time.time()
    assert tracked.next_at == tracked.created_at + NOW_SCHEDULE.first
    await tracker.close()


def test_the_reconciler_refuses_a_share_outside_zero_to_one() -> None:
    """``share`` must be in (0, 1]."""
    client = DokobitClient("t" * 20)
    for share in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            Reconciler(client, MemoryInbox(), MemoryTracker(), share=share)


class FlakyTracker(MemoryTracker):
    """Fails its first claim and its first update, as a database away would."""

    def __init__(self) -> None:
        super().__init__(NOW_SCHEDULE)
        self.claims = 0
        self.updates = 0
        self.claimed_again = asyncio.Event()

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        self.claims += 1
        if self.claims == 1:
            raise OSError("database is locked")
        if self.claims >= 3:
            self.claimed_again.set()
        return await super().claim(now, limit, lease)

    async def update(self, signing: TrackedSigning) -> None:
        self.updates += 1
        if self.updates == 1:
            raise OSError("database is locked")
        await super().update(signing)


async def test_run_rides_out_a_failing_tracker(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim that fails, and an update that fails, are ERROR lines: ``run`` goes on
    claiming, and the signing is looked at again once its lease ended."""
    tracker = FlakyTracker()
    async with client_for(emulator, tracker) as client, MemoryInbox() as inbox:
        created = await create(client, dead_url())
        reconciler = Reconciler(client, inbox, tracker, idle=0.01, lease=0.01)
        running = asyncio.create_task(reconciler.run())
        try:
            await asyncio.wait_for(tracker.claimed_again.wait(), 30)
            await wait_until(lambda: _polled(tracker, created.token))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await reconciler.aclose()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("the tracker failed: OSError" in line for line in errors)
    assert any("failed: OSError" in line and "look at" in line for line in errors)


async def _polled(tracker: Tracker, token: str) -> bool:
    signing = await tracker.get(token)
    return signing is not None and signing.polls >= 1
