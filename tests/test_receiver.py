"""The postback receiver over real sockets: the emulator posts, handlers run."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from _receiver_helpers import postback, start_receiver
from aiohttp import web

from dokobit_async import (
    DispatchPolicy,
    DokobitClient,
    ExternalSigner,
    InvalidArgumentError,
    RateLimit,
    ReceiverNotRunningError,
    SigningFile,
)
from dokobit_async.events import Event, SignerSigned, SigningCompleted, SigningCreated
from dokobit_async.inbox import Inbox, MemoryInbox, SQLiteInbox
from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator, EmulatorConfig, make_pdf

SECRET = b"receiver-test-secret-0123456789"
FAST_RETRY = DispatchPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)

Serve = Callable[..., Awaitable[tuple[PostbackReceiver, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Run a receiver on 127.0.0.1 (with the redacting access logger); yields
    ``(receiver, base_url)``. Everything is stopped at the end."""
    runners: list[web.AppRunner] = []

    async def start(router: Router, **options: Any) -> tuple[PostbackReceiver, str]:
        options.setdefault("secret", SECRET)
        options.setdefault("policy", FAST_RETRY)
        receiver = PostbackReceiver(router, **options)
        runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return receiver, f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (bounded)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def post(
    url: str, body: bytes | str, content_type: str = "application/json", method: str = "POST"
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        return response.status, await response.text()


COMPLETED = json.dumps({"action": "signing_completed", "token": "T1", "file": "http://x/f"})


@pytest.mark.parametrize("inbox_kind", ["memory", "sqlite"])
async def test_emulator_postbacks_reach_each_handler_exactly_once(
    serve: Serve, tmp_path: Path, inbox_kind: str
) -> None:
    """A whole external signing on the emulator: every postback it sends reaches the
    matching handlers once, the signed file downloads, and the receiver confirms
    each event against the API first."""
    calls: Counter[tuple[str, str]] = Counter()
    router = Router()
    downloaded: list[bytes] = []

    @router.on_any
    async def audit(event: Event) -> None:
        calls["audit", event.action] += 1

    @router.on(SigningCompleted)
    async def fetch(event: SigningCompleted) -> None:
        calls["fetch", event.action] += 1
        assert event.file is not None
        downloaded.append(await client.download_file(event.file))

    inbox: Inbox = MemoryInbox() if inbox_kind == "memory" else SQLiteInbox(tmp_path / "in.db")
    async with (
        Emulator(config=EmulatorConfig(time_scale=0.0001)) as emu,
        DokobitClient(
            emu.access_token, base_url=emu.base_url, rate_limit=RateLimit(calls=1000, period=1)
        ) as client,
    ):
        receiver, base = await serve(router, inbox=inbox, client=client)
        created = await client.external.create(
            name="Agreement",
            type="pdf",
            files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
            signers=[
                ExternalSigner(external_id=f"u{i}", email=f"u{i}@example.com") for i in range(2)
            ],
            postback_url=receiver.postback_url(base),
        )
        for signer in created.signers:
            await emu.sign(created.token, signer.token)
        await emu.wait_postbacks_idle()
        await receiver.wait_idle()  # every event finished: a duplicate run would show
        counts = await receiver.inbox.counts()
    assert calls == {
        ("audit", "signing_created"): 1,
        ("audit", "signer_signed"): 2,
        ("audit", "signing_completed"): 1,
        ("fetch", "signing_completed"): 1,
    }
    assert downloaded[0].startswith(b"%PDF")
    assert all(attempt.status == 200 for attempt in emu.postbacks)
    assert counts.get("done") == 4


async def test_duplicates_are_stored_and_dispatched_once(serve: Serve) -> None:
    """Dokobit's retries repeat a postback: the copies are acknowledged with 200 and
    handled once."""
    seen: list[Event] = []
    router = Router()
    router.add(None, lambda event: _append(seen, event))
    receiver, base = await serve(router)
    url = receiver.postback_url(base)
    answers = [await post(url, COMPLETED) for _ in range(3)]
    await receiver.wait_idle()
    assert [status for status, _ in answers] == [200, 200, 200]
    assert len(seen) == 1


async def _append(seen: list[Event], event: Event) -> None:
    seen.append(event)


@pytest.mark.parametrize(
    ("method", "body", "content_type", "status", "reason"),
    [
        ("GET", "", "application/json", 405, ""),
        ("PUT", COMPLETED, "application/json", 405, ""),
        ("POST", "{not json", "application/json", 400, "not valid JSON"),
        ("POST", "[1, 2]", "application/json", 400, "not a JSON object"),
        ("POST", '{"token": "T"}', "application/json", 400, "no 'action'"),
        ("POST", b"\xff\xfe", "application/octet-stream", 400, "neither JSON nor form"),
        ("POST", "x" * (64 * 1024 + 1), "text/plain", 413, "larger than"),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_store_nothing(
    serve: Serve, method: str, body: str | bytes, content_type: str, status: int, reason: str
) -> None:
    """Wrong method 405, not a postback 400 with a one-line reason, too large 413;
    nothing reaches the inbox."""
    receiver, base = await serve(Router(), max_body_size=64 * 1024)
    answer, text = await post(receiver.postback_url(base), body, content_type, method)
    assert answer == status
    assert reason in text
    assert len(text.strip().splitlines()) <= 1
    assert await receiver.inbox.list() == []


async def test_a_url_whose_mac_does_not_verify_is_refused_and_not_stored(
    serve: Serve,
) -> None:
    """Only URLs minted by ``postback_url`` under the receiver's secret are accepted."""
    receiver, base = await serve(Router())
    good = receiver.postback_url(base)
    nonce, mac = good.rsplit("/", 1)[1].split(".")
    forged = [
        f"{base}/dokobit/postback/{nonce}.{'0' * 32}",
        f"{base}/dokobit/postback/{'1' * 32}.{mac}",
        f"{base}/dokobit/postback/anything",
    ]
    for url in forged:
        assert (await post(url, COMPLETED))[0] == 401
    other = PostbackReceiver(Router(), secret=b"another-secret-of-16+bytes")
    assert (await post(other.postback_url(base), COMPLETED))[0] == 401
    assert await receiver.inbox.list() == []
    assert (await post(good, COMPLETED))[0] == 200


async def test_a_body_that_trickles_in_too_slowly_is_cut_off(serve: Serve) -> None:
    """A sender that dribbles its body slower than ``read_timeout`` gets 408."""
    receiver, base = await serve(Router(), read_timeout=0.3)

    async def dribble() -> AsyncIterator[bytes]:
        for byte in COMPLETED.encode():
            yield bytes([byte])
            await asyncio.sleep(0.05)

    async with (
        aiohttp.ClientSession() as session,
        session.post(receiver.postback_url(base), data=dribble()) as response,
    ):
        assert response.status == 408
    assert await receiver.inbox.list() == []


async def test_the_access_log_never_shows_the_postback_secret(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's access log writes the request line; ours masks the minted segment."""
    receiver, base = await serve(Router())
    url = receiver.postback_url(base)
    segment = url.rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO):
        await post(url, COMPLETED)
        await post(url + "x", COMPLETED)
    assert "POST /dokobit/postback/*** HTTP" in caplog.text
    assert segment not in caplog.text
    assert "signing_completed for T1..." in caplog.text


async def test_a_failing_handler_is_retried_then_dead_lettered_without_rerunning_others(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """The good handler runs once; the failing one is retried ``max_attempts`` times
    and the event ends in the dead-letter state with the last error."""
    runs: Counter[str] = Counter()
    router = Router()

    @router.on(SigningCompleted)
    async def good(event: Event) -> None:
        runs["good"] += 1

    @router.on(SigningCompleted)
    async def bad(event: Event) -> None:
        runs["bad"] += 1
        raise RuntimeError(f"boom {runs['bad']}")

    receiver, base = await serve(router)
    with caplog.at_level(logging.WARNING, logger="dokobit_async.receiver"):
        assert (await post(receiver.postback_url(base), COMPLETED))[0] == 200
        await receiver.wait_idle()  # retried to the last attempt, then dead
        dead = await receiver.inbox.list(state="dead")
    assert runs == {"good": 1, "bad": FAST_RETRY.max_attempts}
    assert len(dead) == 1
    assert dead[0].last_error is not None
    assert "boom 3" in dead[0].last_error
    assert "dead-lettered" in caplog.text


async def test_events_of_one_signing_run_in_order_while_others_run_concurrently(
    serve: Serve,
) -> None:
    """Per signing token, the second event waits for the first; another signing's
    event does not."""
    order: list[str] = []
    release = asyncio.Event()
    router = Router()

    @router.on_any
    async def handler(event: Event) -> None:
        order.append(f"start {event.token} {event.action}")
        if event.token == "A" and event.action == "signing_created":
            await release.wait()
        order.append(f"end {event.token} {event.action}")

    receiver, base = await serve(router)
    url = receiver.postback_url(base)
    await post(url, json.dumps({"action": "signing_created", "token": "A"}))
    await post(url, json.dumps({"action": "signer_signed", "token": "A", "signer": "s"}))
    await post(url, json.dumps({"action": "signing_created", "token": "B"}))
    await wait_for(lambda: "end B signing_created" in order)
    assert "start A signer_signed" not in order
    release.set()
    await wait_for(lambda: "end A signer_signed" in order)
    assert order.index("end A signing_created") < order.index("start A signer_signed")


async def test_pipeline_consumers_get_each_event_until_they_ack(serve: Serve) -> None:
    """``deliveries()`` hands events to a consumer; an acked one is done, a nacked
    one comes back."""
    receiver, base = await serve(Router(), consumers=["pipe"])
    url = receiver.postback_url(base)
    await post(url, COMPLETED)
    got: list[tuple[str, int]] = []

    async def consume() -> None:
        async for delivery in receiver.deliveries("pipe"):
            got.append((delivery.event.action, len(got)))
            if len(got) == 1:
                await delivery.nack("try again")
            else:
                await delivery.ack()
                return

    await asyncio.wait_for(consume(), 10)
    await wait_state(receiver, "done", 1)
    assert [action for action, _ in got] == ["signing_completed", "signing_completed"]


async def wait_state(receiver: PostbackReceiver, state: str, count: int) -> None:
    """Poll the inbox until ``count`` events are in ``state`` (bounded)."""

    async def poll() -> None:
        while (await receiver.inbox.counts()).get(state, 0) != count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def test_an_event_the_api_does_not_confirm_is_kept_aside(serve: Serve) -> None:
    """A forged ``signing_completed`` for a signing that is still pending is not
    dispatched: after the confirmation retries it is stored as unconfirmed."""
    seen: list[Event] = []
    router = Router()
    router.add(SigningCompleted, lambda event: _append(seen, event))
    async with (
        Emulator() as emu,
        DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=None) as client,
    ):
        created = await client.external.create(
            name="A",
            type="pdf",
            files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
            signers=[ExternalSigner(external_id="u1", email="u1@example.com")],
        )
        receiver, base = await serve(
            router,
            client=client,
            policy=attrs.evolve(FAST_RETRY, confirm_attempts=2, confirm_delay=0.01),
        )
        forged = json.dumps({"action": "signing_completed", "token": created.token})
        assert (await post(receiver.postback_url(base), forged))[0] == 200
        await wait_state(receiver, "unconfirmed", 1)
    assert seen == []


async def test_signer_and_created_events_are_typed(serve: Serve) -> None:
    """The handler receives the typed event class with its fields."""
    got: list[Event] = []
    router = Router()
    router.add(SignerSigned, lambda event: _append(got, event))
    router.add(SigningCreated, lambda event: _append(got, event))
    receiver, base = await serve(router)
    url = receiver.postback_url(base)
    await post(
        url,
        json.dumps(
            {
                "action": "signer_signed",
                "token": "T",
                "signer": "S1",
                "signer_info": {"code": "1", "type": "qes"},
            }
        ),
    )
    await wait_for(lambda: len(got) == 1)
    assert isinstance(got[0], SignerSigned)
    assert got[0].signer == "S1"
    assert got[0].signer_info is not None
    assert got[0].signer_info.type == "qes"


async def test_an_unacknowledged_delivery_times_out_and_the_iterator_ends_on_stop(
    serve: Serve,
) -> None:
    """A consumer that takes a delivery and never acks does not block dispatch for
    good: after ``ack_timeout`` it counts as failed and comes again; and
    ``deliveries()`` ends when the receiver stops."""
    receiver, base = await serve(
        Router(), consumers=["pipe"], policy=attrs.evolve(FAST_RETRY, ack_timeout=0.05)
    )
    await post(receiver.postback_url(base), COMPLETED)
    seen: list[str] = []

    async def consume() -> None:
        async for delivery in receiver.deliveries("pipe"):
            seen.append(delivery.event.action)
            if len(seen) == 2:
                await delivery.ack()

    consumer = asyncio.create_task(consume())
    await wait_state(receiver, "done", 1)
    assert seen == ["signing_completed", "signing_completed"]
    dispatcher = receiver._dispatcher
    assert dispatcher is not None
    await dispatcher.drain(1.0)
    await asyncio.wait_for(consumer, 5)


@pytest.mark.parametrize(
    ("event", "state", "confirmed"),
    [
        (SigningCompleted(action="signing_completed", token="T"), "completed", True),
        (SigningCompleted(action="signing_completed", token="T"), "archived", True),
        (SigningCompleted(action="signing_completed", token="T"), "pending", False),
        (SignerSigned(action="signer_signed", token="T", signer="S"), "pending", True),
        (SigningCreated(action="signing_created", token="T"), "pending", None),
    ],
)
async def test_confirmation_reads_the_status_endpoint(
    event: Event, state: str, confirmed: bool | None
) -> None:
    """A completed event is confirmed by ``completed`` or (later) ``archived``; a
    signer event by that signer's status; others are not checked."""
    from dokobit_async._confirm import confirm
    from dokobit_async.models import SigningStatus, StatusSigner

    class Flow:
        async def status(self, token: str) -> SigningStatus:
            signer = StatusSigner(token="S", status="signed")
            return SigningStatus(status=state, signers=(signer,))

    class Client:
        external = internal = Flow()

    assert await confirm(Client(), event) is confirmed  # type: ignore[arg-type]


def test_the_redacting_access_logger_refuses_an_aiohttp_it_cannot_redact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should aiohttp drop the hook ``RedactingAccessLogger`` overrides, the receiver
    refuses to start (when its app is made or mounted) instead of serving with an
    access log that shows postback secrets unmasked."""
    from aiohttp.web_log import AccessLogger

    receiver = PostbackReceiver(Router(), secret=SECRET)
    monkeypatch.delattr(AccessLogger, "_format_line")
    with pytest.raises(RuntimeError, match="cannot mask the postback secret"):
        receiver.app()
    with pytest.raises(RuntimeError, match="cannot mask the postback secret"):
        receiver.setup(web.Application())


async def test_wait_idle_waits_for_work_and_fails_loudly_when_it_cannot(serve: Serve) -> None:
    """``wait_idle`` raises ``ReceiverNotRunningError`` for a receiver that is not
    running or stops while it waits, and the builtin ``TimeoutError`` when the work
    outlasts its timeout."""
    release = asyncio.Event()
    router = Router()

    @router.on_any
    async def stuck(event: Event) -> None:
        await release.wait()

    idle = PostbackReceiver(Router(), secret=SECRET)
    with pytest.raises(ReceiverNotRunningError):
        await idle.wait_idle()
    receiver, base = await serve(router, policy=attrs.evolve(FAST_RETRY, shutdown_timeout=0))
    assert (await post(receiver.postback_url(base), COMPLETED))[0] == 200
    with pytest.raises(TimeoutError):
        await receiver.wait_idle(timeout=0.2)
    waiting = asyncio.create_task(receiver.wait_idle(timeout=None))
    await asyncio.sleep(0)
    assert receiver._dispatcher is not None
    await receiver._dispatcher.drain(timeout=0)  # the receiver begins to stop
    with pytest.raises(ReceiverNotRunningError):
        await asyncio.wait_for(waiting, 10)
    release.set()


class _BoolInbox(MemoryInbox):
    """An inbox written to the old protocol: ``add()`` answers True or False."""

    async def add(self, **fields: Any) -> Any:
        return await super().add(**fields) is not None


async def test_an_inbox_written_to_the_old_protocol_is_refused_loudly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """An inbox whose ``add()`` still returns a bool gets a 503 (the sender retries)
    and an error that says what changed, instead of a confusing failure later."""
    receiver, base = await serve(Router(), inbox=_BoolInbox())
    with caplog.at_level(logging.ERROR, logger="dokobit_async.receiver"):
        status, _ = await post(receiver.postback_url(base), COMPLETED)
    assert status == 503
    assert "the protocol changed" in caplog.text


async def test_a_receiver_without_a_router_stores_and_answers_only(tmp_path: Path) -> None:
    """``router=None``: postbacks are stored (a duplicate once) and answered 200, and
    nothing dispatches them: they stay pending for workers elsewhere; ``wait_idle``
    says why it cannot wait, and consumers are refused (nothing would feed them)."""
    with pytest.raises(InvalidArgumentError, match="consumers need a router"):
        PostbackReceiver(None, consumers=["indexer"])
    inbox = SQLiteInbox(tmp_path / "inbox.db")
    receiver, runner, url = await start_receiver(None, inbox=inbox)
    try:
        async with aiohttp.ClientSession() as session:
            for token in ("s1", "s2", "s1"):
                async with session.post(url, data=postback(token)) as response:
                    assert response.status == 200
        with pytest.raises(ReceiverNotRunningError, match="dispatches nothing"):
            await receiver.wait_idle(timeout=1)
        stored = await inbox.list()
        assert [(e.signing_token, e.state, e.attempts) for e in stored] == [
            ("s1", "pending", 0),
            ("s2", "pending", 0),
        ]
    finally:
        await runner.cleanup()
