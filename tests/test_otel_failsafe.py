"""Telemetry never changes an outcome (docs/architecture.md#tracing): with an
OpenTelemetry SDK whose span processor raises in ``on_start`` or ``on_end`` and whose
metrics raise on every measurement, over real loopback servers, a postback is stored
and answered 200 once, a handler that succeeds runs once and its event is done, a
create returns its answer (and the API holds one signing), and a dead letter still
lets the next event of its signing run (the in-process dispatcher, and a
``RedisWorker`` on a real Redis). Each kind of failure is logged once, at WARNING,
by its type alone. Also: an inbox written to the older protocol works instrumented,
and a second ``instrument()`` keeps the backlog gauge reporting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
from _otel import Recording, providers, recording
from _receiver_helpers import postback, start_receiver, wait_until
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import ExemplarFilter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import Attributes
from test_e2e_emulator import create_external

from dokobit_async import DispatchPolicy, DokobitClient, RateLimit, __version__, otel
from dokobit_async.events import Event
from dokobit_async.inbox import MemoryInbox, StoredEvent
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator

FAULTS = ("on_start", "on_end", "metrics")
DEAD_LETTERS = "dead_letters"  # the dead-letter counter alone: the rest goes as usual
MESSAGE = "telemetry-bug-f00dfeed"  # the faults' message: never logged
JSON = {"Content-Type": "application/json"}
ONCE = DispatchPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0)


class RaisingProcessor(SpanProcessor):
    """A span processor (a user's, or an exporter run synchronously) that raises."""

    def __init__(self, where: str):
        self.where = where

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.where == "on_start":
            raise RuntimeError(MESSAGE)

    def on_end(self, span: ReadableSpan) -> None:
        if self.where == "on_end":
            raise RuntimeError(MESSAGE)


class RaisingFilter(ExemplarFilter):
    """An exemplar filter that raises: the SDK runs it in every counter's ``add``
    (with ``only``: for the measurements that carry that attribute)."""

    def __init__(self, only: str | None = None):
        self.only = only

    def should_sample(
        self,
        value: int | float,
        time_unix_nano: int,
        attributes: Attributes,
        context: Context,
    ) -> bool:
        if self.only is None or self.only in (attributes or {}):
            raise ValueError(MESSAGE)
        return False


@contextmanager
def faulty(where: str) -> Iterator[Recording]:
    """The library instrumented with providers that raise at ``where`` (a span
    processor's ``on_start`` or ``on_end``, every measurement, or only the count of
    dead letters), and record the rest."""
    recorded = providers()
    if where in ("metrics", DEAD_LETTERS):
        only = "dokobit.postback.action" if where == DEAD_LETTERS else None
        recorded.meter_provider = MeterProvider(
            metric_readers=[InMemoryMetricReader()], exemplar_filter=RaisingFilter(only)
        )
    else:
        recorded.tracer_provider.add_span_processor(RaisingProcessor(where))
    with recording(recorded):
        yield recorded


@pytest.fixture(params=FAULTS)
def fault(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    """Instrumented with one kind of fault; afterwards, the log said each kind of
    failure once at WARNING, by type, never with the exception's message."""
    with caplog.at_level(logging.WARNING, logger="dokobit_async.otel"), faulty(request.param):
        yield request.param
    said = [r for r in caplog.get_records("call") if r.name == "dokobit_async.otel"]
    assert said, "the failure was not logged"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
    assert len({r.getMessage() for r in said}) == len(said)  # once per kind
    assert all(MESSAGE not in r.getMessage() for r in said)
    expected = "RuntimeError" if request.param.startswith("on_") else "ValueError"
    assert all(expected in r.getMessage() for r in said)


async def send(url: str, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=JSON) as answer,
    ):
        return answer.status


async def test_a_postback_is_stored_and_answered_200_once(fault: str) -> None:
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(None, inbox=inbox)
    try:
        statuses = [await send(url, postback("sig-f")) for _ in range(3)]
        stored = await inbox.list()
    finally:
        await runner.cleanup()
    assert statuses == [200, 200, 200]  # stored, then duplicates: acknowledged alike
    assert [e.signing_token for e in stored] == ["sig-f"]


async def test_a_handler_that_succeeds_runs_once_and_its_event_is_done(fault: str) -> None:
    router = Router()
    runs: list[str] = []

    @router.on_any
    async def fine(event: Event) -> None:
        runs.append(event.token or "")

    inbox = MemoryInbox()
    receiver, runner, url = await start_receiver(
        router, inbox=inbox, policy=DispatchPolicy(max_attempts=3, base_delay=0.0)
    )
    try:
        assert await send(url, postback("sig-h")) == 200
        await receiver.wait_idle()
        done = await inbox.list(state="done")
    finally:
        await runner.cleanup()
    assert runs == ["sig-h"]
    assert [(e.signing_token, e.attempts, e.last_error) for e in done] == [("sig-h", 0, None)]


async def test_a_create_returns_its_answer(fault: str, dokobit_emulator: Emulator) -> None:
    emu = dokobit_emulator
    rate_limit = RateLimit(calls=10_000, period=1.0)
    async with DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=rate_limit) as c:
        created = await create_external(c)
        status = await c.external.status(created.token)
    assert status.status == "pending"
    assert list(emu.signings) == [created.token]  # one signing: nothing to retry


def dead_then_next(runs: list[str]) -> Router:
    """A router whose handler fails a signing's first event (with one attempt: a dead
    letter) and records every run."""
    router = Router()

    @router.on_any
    async def first_fails(event: Event) -> None:
        runs.append(event.action)
        if event.action == "signing_created":
            raise RuntimeError("the first event of the signing fails")

    return router


@pytest.mark.parametrize("fault", [*FAULTS, DEAD_LETTERS], indirect=True)
async def test_a_dead_letter_settles_its_signings_queue(fault: str) -> None:
    runs: list[str] = []
    inbox = MemoryInbox()
    receiver, runner, url = await start_receiver(dead_then_next(runs), inbox=inbox, policy=ONCE)
    try:
        assert await send(url, postback("sig-d")) == 200
        assert await send(url, postback("sig-d", "signing_archived")) == 200
        await receiver.wait_idle()
        states = {e.action: e.state for e in await inbox.list()}
    finally:
        await runner.cleanup()
    assert runs == ["signing_created", "signing_archived"]
    assert states == {"signing_created": "dead", "signing_archived": "done"}


@pytest.mark.parametrize("fault", [*FAULTS, DEAD_LETTERS], indirect=True)
async def test_a_redis_workers_dead_letter_settles_its_signings_queue(
    fault: str, redis_url: str
) -> None:
    from dokobit_async.redis import RedisInbox, RedisWorker

    runs: list[str] = []
    inbox = RedisInbox(redis_url)
    _, runner, url = await start_receiver(None, inbox=inbox)
    try:
        async with RedisWorker(redis_url, dead_then_next(runs), policy=ONCE, block=0.1) as worker:
            running = asyncio.create_task(worker.run())
            try:
                assert await send(url, postback("sig-w")) == 200
                assert await send(url, postback("sig-w", "signing_archived")) == 200
                await wait_until(lambda: _done(inbox, "signing_archived"))
            finally:
                await worker.stop()
                await asyncio.wait_for(running, 30)
            states = {e.action: e.state for e in await inbox.list()}
    finally:
        await runner.cleanup()
    assert runs == ["signing_created", "signing_archived"]
    assert states == {"signing_created": "dead", "signing_archived": "done"}


async def _done(inbox: Any, action: str) -> bool:
    return any(e.action == action and e.state == "done" for e in await inbox.list())


# ------------------------------------------------------------------ older inboxes


class OlderInbox(MemoryInbox):
    """An inbox written to the older protocol: its ``add`` takes no ``traceparent``."""

    async def add(  # type: ignore[override]
        self,
        *,
        id: str,
        signing_token: str,
        action: str,
        body: bytes,
        content_type: str,
        received_at: float,
    ) -> StoredEvent | None:
        return await super().add(
            id=id,
            signing_token=signing_token,
            action=action,
            body=body,
            content_type=content_type,
            received_at=received_at,
        )


async def test_an_inbox_without_traceparent_works_instrumented() -> None:
    router = Router()
    runs: list[str] = []

    @router.on_any
    async def seen(event: Event) -> None:
        runs.append(event.token or "")

    with recording() as recorded:
        receiver, runner, url = await start_receiver(router, inbox=OlderInbox())
        try:
            assert await send(url, postback("sig-o")) == 200
            await receiver.wait_idle()
        finally:
            await runner.cleanup()
    assert runs == ["sig-o"]
    (handler,) = [s for s in recorded.spans() if s.name.startswith("dokobit handle ")]
    assert handler.parent is None  # stored without a context: a root
    assert handler.links == ()


# ------------------------------------------------------------------ the backlog gauge


async def test_the_backlog_gauge_reports_after_a_second_instrument() -> None:
    recorded = providers()
    otel.instrument(
        tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider
    )
    otel.uninstrument()  # the provider hands the next instrument() the gauge registered here
    router = Router()
    release = asyncio.Event()

    @router.on_any
    async def held(event: Event) -> None:
        await release.wait()

    with recording(recorded):
        receiver, runner, url = await start_receiver(router)
        try:
            assert await send(url, postback("sig-g")) == 200
            assert await send(url, postback("sig-g", "signing_archived")) == 200
            assert [p.value for p in recorded.points("dokobit.inbox.backlog")] == [2]
            data = recorded.metrics()
            release.set()
            await receiver.wait_idle()
        finally:
            release.set()
            await runner.cleanup()
    assert data is not None
    scopes = {
        (scope.scope.name, scope.scope.version)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
    }
    assert scopes == {("dokobit_async", __version__)}  # one scope, both sides
