"""The receiver's side of the OpenTelemetry extra, over a loopback receiver
(docs/architecture.md#postbacks-and-handlers): a SERVER span per postback request
(stored, duplicate or refused and why; its parent from the URL's ``traceparent``,
else the headers, else a root; its context stored with the event), a CONSUMER span
per handler run (child of and linked to the postback's span; attempt, outcome), the
counters and the backlog gauge, and no secret anywhere in what is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from _otel import Recording, context_of, leaks, recording
from _receiver_helpers import SECRET, postback, start_receiver, wait_until
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from dokobit_async import DispatchPolicy
from dokobit_async.events import Event, mint_postback_secret
from dokobit_async.inbox import MemoryInbox, StoredEvent
from dokobit_async.routing import Router

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
HEADER_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
HEADER_PARENT_ID = 0x00F067AA0BA902B7
HEADER_TRACEPARENT = f"00-{HEADER_TRACE_ID:032x}-{HEADER_PARENT_ID:016x}-01"
ROUTE = "/dokobit/postback/{secret}"
SERVER_SPAN = f"POST {ROUTE}"
FAST = DispatchPolicy(base_delay=0.0, max_delay=0.0)
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def recorded() -> Iterator[Recording]:
    """The library instrumented with in-memory SDK providers for the test."""
    with recording() as recorded:
        yield recorded


def secrets_of(url: str) -> list[str]:
    """What must never be recorded: the URL's secret segment and the MAC key."""
    return [url.rsplit("/", 1)[1], SECRET.decode()]


def traceparent_of(span: ReadableSpan) -> str:
    """``span``'s context as the W3C ``traceparent`` the inbox keeps."""
    context = context_of(span)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def counted(recorded: Recording, metric: str, attribute: str) -> dict[Any, int]:
    """The cumulative value of the counter ``metric`` by the value of ``attribute``."""
    return {p.attributes[attribute]: p.value for p in recorded.points(metric)}


def assert_child_and_link(handler: ReadableSpan, of: ReadableSpan) -> None:
    """``handler``'s parent is ``of``, in its trace, and it carries a link to it."""
    assert handler.kind is SpanKind.CONSUMER
    assert handler.parent is not None
    assert handler.parent.span_id == context_of(of).span_id
    assert context_of(handler).trace_id == context_of(of).trace_id
    assert [link.context.span_id for link in handler.links] == [context_of(of).span_id]
    assert [link.context.trace_id for link in handler.links] == [context_of(of).trace_id]


async def send(
    url: str, body: bytes, *, method: str = "POST", headers: dict[str, str] | None = None
) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers={**JSON, **(headers or {})}) as answer,
    ):
        return answer.status


async def test_a_stored_postback_is_one_server_span_child_of_the_urls_traceparent(
    recorded: Recording,
) -> None:
    """The span's parent is the URL's ``traceparent`` (the create call's), its name
    and ``http.route`` the template, never the path; its context is stored with the
    event; the acknowledged counter says stored."""
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(None, inbox=inbox)
    try:
        assert await send(f"{url}?traceparent={TRACEPARENT}", postback("sig-one")) == 200
        (stored,) = await inbox.pending(limit=10)
    finally:
        await runner.cleanup()
    (span,) = recorded.spans()
    assert span.name == SERVER_SPAN
    assert span.kind is SpanKind.SERVER
    assert span.parent is not None
    assert span.parent.span_id == PARENT_ID
    assert context_of(span).trace_id == TRACE_ID
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": ROUTE,
        "http.response.status_code": 200,
        "dokobit.postback.action": "signing_created",
        "dokobit.signing.token": "sig-one",
        "dokobit.postback.outcome": "stored",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert stored.traceparent == traceparent_of(span)
    assert counted(recorded, "dokobit.postbacks.acknowledged", "dokobit.postback.outcome") == {
        "stored": 1
    }
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url)) == []


@pytest.mark.parametrize(
    ("query", "header", "parent"),
    [
        (TRACEPARENT, None, (TRACE_ID, PARENT_ID)),
        (None, HEADER_TRACEPARENT, (HEADER_TRACE_ID, HEADER_PARENT_ID)),
        (TRACEPARENT, HEADER_TRACEPARENT, (TRACE_ID, PARENT_ID)),
        (None, None, None),
        ("00-not-a-traceparent-01", HEADER_TRACEPARENT, (HEADER_TRACE_ID, HEADER_PARENT_ID)),
    ],
    ids=["query", "header", "query-first", "root", "broken-query"],
)
async def test_the_parent_is_the_urls_traceparent_else_the_header_else_a_root(
    recorded: Recording,
    query: str | None,
    header: str | None,
    parent: tuple[int, int] | None,
) -> None:
    _, runner, url = await start_receiver(None)
    try:
        target = url if query is None else f"{url}?traceparent={query}"
        headers = {} if header is None else {"traceparent": header}
        assert await send(target, postback("sig-parent"), headers=headers) == 200
    finally:
        await runner.cleanup()
    (span,) = recorded.named(SERVER_SPAN)
    if parent is None:
        assert span.parent is None
        assert context_of(span).trace_id not in (TRACE_ID, HEADER_TRACE_ID)
    else:
        assert span.parent is not None
        assert (context_of(span).trace_id, span.parent.span_id) == parent


async def test_a_duplicate_says_duplicate_and_keeps_the_first_context(
    recorded: Recording,
) -> None:
    inbox = MemoryInbox()
    _, runner, url = await start_receiver(None, inbox=inbox)
    try:
        assert await send(url, postback("sig-dup")) == 200
        assert await send(f"{url}?traceparent={TRACEPARENT}", postback("sig-dup")) == 200
        (stored,) = await inbox.pending(limit=10)
    finally:
        await runner.cleanup()
    first, second = recorded.named(SERVER_SPAN)
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["dokobit.postback.outcome"] == "stored"
    assert second.attributes["dokobit.postback.outcome"] == "duplicate"
    assert second.attributes["http.response.status_code"] == 200
    assert stored.traceparent == traceparent_of(first)
    assert counted(recorded, "dokobit.postbacks.acknowledged", "dokobit.postback.outcome") == {
        "stored": 1,
        "duplicate": 1,
    }


class BrokenInbox(MemoryInbox):
    """An inbox whose every add fails (a full disk, say)."""

    async def add(self, **fields: Any) -> StoredEvent | None:
        raise OSError("disk full")


# (what is sent: the path's secret, the method, the body; what the receiver says)
REFUSALS: dict[str, tuple[str, str, bytes, int]] = {
    "bad_secret": ("other", "POST", postback("sig-r"), 401),
    "wrong_method": ("own", "PUT", postback("sig-r"), 405),
    "malformed": ("own", "POST", b'{"token": "sig-r"}', 400),
    "too_large": ("own", "POST", postback("sig-r" + "x" * 300), 413),
    "inbox_unavailable": ("own", "POST", postback("sig-r"), 503),
}
BEFORE_THE_SECRET = {"bad_secret", "wrong_method"}  # refused before the secret verified


@pytest.mark.parametrize("reason", sorted(REFUSALS))
async def test_a_refused_postback_has_a_span_with_the_refusal_and_no_secret(
    recorded: Recording, reason: str
) -> None:
    secret, method, body, status = REFUSALS[reason]
    inbox = BrokenInbox() if reason == "inbox_unavailable" else MemoryInbox()
    _, runner, url = await start_receiver(None, inbox=inbox, max_body_size=200)
    try:
        if secret == "other":  # a well-formed secret segment, minted with another key
            url = url.rsplit("/", 1)[0] + "/" + mint_postback_secret(b"another-key-0123456789")
        assert await send(f"{url}?traceparent={TRACEPARENT}", body, method=method) == status
    finally:
        await runner.cleanup()
    (span,) = recorded.spans()
    assert span.name == f"{method} {ROUTE}"
    if reason in BEFORE_THE_SECRET:  # the sender is not known: it chooses no trace
        assert span.parent is None
        assert context_of(span).trace_id != TRACE_ID
    else:
        assert span.parent is not None
        assert span.parent.span_id == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["dokobit.postback.outcome"] == "refused"
    assert span.attributes["dokobit.postback.refusal"] == reason
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes["http.route"] == ROUTE
    # a 5xx is the server's failure, a 4xx the sender's
    assert (span.status.status_code is StatusCode.ERROR) == (status >= 500)
    assert span.attributes.get("error.type") == (str(status) if status >= 500 else None)
    assert counted(recorded, "dokobit.postbacks.refused", "dokobit.postback.refusal") == {
        reason: 1
    }
    assert recorded.points("dokobit.postbacks.acknowledged") == []
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url)) == []


async def test_refused_and_acknowledged_counts_equal_what_was_sent(recorded: Recording) -> None:
    _, runner, url = await start_receiver(None)
    other = url.rsplit("/", 1)[0] + "/" + mint_postback_secret(b"another-key-0123456789")
    try:
        statuses = await asyncio.gather(
            *(send(url, postback(f"sig-{n}")) for n in range(7)),
            *(send(url, postback("sig-0")) for _ in range(2)),  # duplicates
            *(send(url, b"not json") for _ in range(3)),
            *(send(other, postback("sig-x")) for _ in range(4)),
        )
    finally:
        await runner.cleanup()
    assert sorted(statuses) == [200] * 9 + [400] * 3 + [401] * 4
    assert counted(recorded, "dokobit.postbacks.acknowledged", "dokobit.postback.outcome") == {
        "stored": 7,
        "duplicate": 2,
    }
    assert counted(recorded, "dokobit.postbacks.refused", "dokobit.postback.refusal") == {
        "malformed": 3,
        "bad_secret": 4,
    }
    assert len(recorded.named(SERVER_SPAN)) == 16
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url)) == []


def handler_spans(recorded: Recording, name: str) -> list[ReadableSpan]:
    spans = recorded.named(f"dokobit handle {name}")
    assert spans, f"no span of {name}: {[s.name for s in recorded.spans()]}"
    return spans


async def test_a_handler_that_fails_once_has_attempts_1_and_2_each_a_child_of_the_postback(
    recorded: Recording,
) -> None:
    """Two CONSUMER spans: attempt 1 failed (status ERROR, ``error.type``), attempt 2
    ok; each the child of the postback's span and linked to it; one failure
    counted; a span the handler starts is the child of its run's span."""
    router = Router()
    calls: list[int] = []
    tracer = recorded.tracer_provider.get_tracer("test")

    @router.on("signing_created", name="flaky")
    async def flaky(event: Event) -> None:
        calls.append(1)
        with tracer.start_as_current_span("inside the handler"):
            if len(calls) == 1:
                raise RuntimeError("the first try fails")

    receiver, runner, url = await start_receiver(router, policy=FAST)
    try:
        assert await send(f"{url}?traceparent={TRACEPARENT}", postback("sig-flaky")) == 200
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    (server,) = recorded.named(SERVER_SPAN)
    first, second = handler_spans(recorded, "flaky")
    for run in (first, second):
        assert_child_and_link(run, server)
        assert run.attributes is not None
        assert run.attributes["dokobit.handler"] == "flaky"
        assert run.attributes["dokobit.postback.action"] == "signing_created"
        assert run.attributes["dokobit.signing.token"] == "sig-flaky"
        assert isinstance(run.attributes["dokobit.event.id"], str)
    assert first.attributes is not None
    assert second.attributes is not None
    assert (first.attributes["dokobit.attempt"], second.attributes["dokobit.attempt"]) == (1, 2)
    assert first.attributes["dokobit.outcome"] == "failed"
    assert first.attributes["error.type"] == "RuntimeError"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["dokobit.outcome"] == "ok"
    assert "error.type" not in second.attributes
    assert second.status.status_code is StatusCode.UNSET
    inner = recorded.named("inside the handler")
    assert [span.parent.span_id for span in inner if span.parent] == [
        context_of(first).span_id,
        context_of(second).span_id,
    ]
    assert counted(recorded, "dokobit.handler.failures", "dokobit.handler") == {"flaky": 1}
    assert recorded.points("dokobit.dead_letters") == []
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url)) == []


async def test_the_last_failed_attempt_is_dead_and_counted_as_a_dead_letter(
    recorded: Recording,
) -> None:
    router = Router()

    @router.on_any
    async def broken(event: Event) -> None:
        raise ValueError("always")

    @router.on_any
    async def fine(event: Event) -> None:
        pass

    policy = DispatchPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
    receiver, runner, url = await start_receiver(router, policy=policy)
    try:
        assert await send(url, postback("sig-dead")) == 200
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    runs = handler_spans(recorded, f"{__name__}.{broken.__qualname__}")
    outcomes = [(r.attributes or {}).get("dokobit.outcome") for r in runs]
    attempts = [(r.attributes or {}).get("dokobit.attempt") for r in runs]
    assert (attempts, outcomes) == ([1, 2], ["failed", "dead"])
    # the handler that succeeded ran once (attempt 1), and is not run again
    (ok,) = handler_spans(recorded, f"{__name__}.{fine.__qualname__}")
    assert (ok.attributes or {}).get("dokobit.outcome") == "ok"
    assert counted(recorded, "dokobit.dead_letters", "dokobit.postback.action") == {
        "signing_created": 1
    }
    assert sum(p.value for p in recorded.points("dokobit.handler.failures")) == 2


async def test_the_backlog_gauge_shows_the_unfinished_events_while_the_dispatcher_runs(
    recorded: Recording,
) -> None:
    router = Router()
    release = asyncio.Event()
    started: list[str] = []

    @router.on_any
    async def slow(event: Event) -> None:
        started.append(event.token or "")
        await release.wait()

    receiver, runner, url = await start_receiver(router)
    try:
        await asyncio.gather(*(send(url, postback(f"sig-{n}")) for n in range(3)))
        # a second event of sig-0 waits behind the first: 4 unfinished in all
        assert await send(url, postback("sig-0", "signing_archived")) == 200
        assert [p.value for p in recorded.points("dokobit.inbox.backlog")] == [4]
        release.set()
        await receiver.wait_idle()
        assert [p.value for p in recorded.points("dokobit.inbox.backlog")] == [0]
    finally:
        release.set()
        await runner.cleanup()
    # the dispatcher stopped: it is no longer observed
    assert [p.value for p in recorded.points("dokobit.inbox.backlog")] == []


async def test_an_event_stored_without_a_context_has_root_handler_spans_without_links(
    recorded: Recording,
) -> None:
    """An event stored before ``instrument()`` (no ``traceparent``): its handler span
    is a root with no link, not a child of whatever else is current."""
    router = Router()

    @router.on_any
    async def seen(event: Event) -> None:
        pass

    inbox = MemoryInbox()
    await inbox.open()
    await inbox.add(
        id="stored-before",
        signing_token="sig-old",
        action="signing_created",
        body=postback("sig-old"),
        content_type="application/json",
        received_at=1.0,
    )
    await inbox.close()
    tracer = recorded.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("unrelated"):
        receiver, runner, _ = await start_receiver(router, inbox=inbox)
    try:
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    (run,) = recorded.named(f"dokobit handle {__name__}.{seen.__qualname__}")
    assert run.parent is None
    assert list(run.links) == []
    assert (run.attributes or {})["dokobit.event.id"] == "stored-before"


async def test_nothing_is_recorded_or_stored_once_uninstrumented() -> None:
    router = Router()
    ran = asyncio.Event()

    @router.on_any
    async def seen(event: Event) -> None:
        ran.set()

    with recording() as recorded:
        pass  # instrumented, then not
    inbox = MemoryInbox()
    receiver, runner, url = await start_receiver(router, inbox=inbox)
    try:
        assert await send(f"{url}?traceparent={TRACEPARENT}", postback("sig-off")) == 200
        await receiver.wait_idle()
        (stored,) = await inbox.list(limit=10)
    finally:
        await runner.cleanup()
    assert ran.is_set()
    assert stored.traceparent is None
    assert recorded.spans() == []


async def test_a_redis_worker_counts_its_dead_letter_and_marks_the_run_dead(
    recorded: Recording, redis_url: str
) -> None:
    from dokobit_async.redis import RedisInbox, RedisWorker

    router = Router()

    @router.on_any
    async def broken(event: Event) -> None:
        raise ValueError("always")

    _, runner, url = await start_receiver(None, inbox=RedisInbox(redis_url))
    policy = DispatchPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
    try:
        async with RedisWorker(redis_url, router, policy=policy, block=0.1) as worker:
            running = asyncio.create_task(worker.run())
            try:
                assert await send(f"{url}?traceparent={TRACEPARENT}", postback("sig-rd")) == 200
                # (the dead letter is counted once the attempt is recorded)
                await wait_until(lambda: _true(bool(recorded.points("dokobit.dead_letters"))))
            finally:
                await worker.stop()
                await asyncio.wait_for(running, 30)
    finally:
        await runner.cleanup()
    (server,) = recorded.named(SERVER_SPAN)
    runs = handler_spans(recorded, f"{__name__}.{broken.__qualname__}")
    for run in runs:
        assert_child_and_link(run, server)
    assert [(r.attributes or {}).get("dokobit.outcome") for r in runs] == ["failed", "dead"]
    assert [(r.attributes or {}).get("dokobit.attempt") for r in runs] == [1, 2]
    assert counted(recorded, "dokobit.dead_letters", "dokobit.postback.action") == {
        "signing_created": 1
    }
    assert leaks(recorded.spans(), recorded.metrics(), secrets_of(url)) == []


async def _true(value: bool) -> bool:
    return value
