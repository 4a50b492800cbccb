"""One trace from the create call to the handler (docs/architecture.md#tracing): the
client adds its span's ``traceparent`` to the postback URL, the emulator posts to
that URL, the receiver's span is the create span's child and its context is stored
with the event, and the handler's span is the child of (and linked to) the
receiver's span: on a SQLite file (in-process dispatch, and dispatch after a
restart from the file), on a real Redis with a ``RedisWorker``, and with the worker
in another process exporting its spans to a file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _otel import Recording, context_of, encodings, leaks, recording
from _processes import kill_and_reap
from _receiver_helpers import SECRET, start_receiver, wait_until
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from dokobit_async import DokobitClient, ExternalSigner, SigningFile
from dokobit_async.events import Event
from dokobit_async.inbox import SQLiteInbox
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator, make_pdf

HANDLER = "archive"


@pytest.fixture
def recorded() -> Iterator[Recording]:
    """The library instrumented with in-memory SDK providers for the test."""
    with recording() as recorded:
        yield recorded


def archiving() -> tuple[Router, list[str]]:
    """A router whose handler ``archive`` notes each signing_created it is given."""
    router = Router()
    seen: list[str] = []

    @router.on("signing_created", name=HANDLER)
    async def archive(event: Event) -> None:
        seen.append(event.token or "")

    return router, seen


async def create(client: DokobitClient, postback_url: str) -> str:
    """An external signing whose postbacks go to ``postback_url``; its token."""
    created = await client.external.create(
        name="Traced",
        type="pdf",
        files=[SigningFile.from_bytes(make_pdf(["Traced"]), name="traced.pdf")],
        signers=[ExternalSigner(external_id="ann", email="ann@example.com")],
        postback_url=postback_url,
    )
    return created.token


def only(spans: list[ReadableSpan], kind: SpanKind, **attributes: Any) -> ReadableSpan:
    """The one span of ``kind`` with these attributes."""
    found = [
        span
        for span in spans
        if span.kind is kind
        and all((span.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, [(s.name, s.kind, dict(s.attributes or {})) for s in spans]
    return found[0]


def postback_span_of(recorded: Recording, token: str) -> ReadableSpan:
    """The receiver's span of the signing_created postback of ``token``, checked to
    be the child of the create call's span, in its trace."""
    spans = recorded.spans()
    created = only(spans, SpanKind.CLIENT, **{"dokobit.operation": "external.create"})
    postback = only(
        spans,
        SpanKind.SERVER,
        **{"dokobit.postback.action": "signing_created", "dokobit.signing.token": token},
    )
    assert postback.parent is not None
    assert postback.parent.span_id == context_of(created).span_id
    assert context_of(postback).trace_id == context_of(created).trace_id
    return postback


def assert_handled_in_the_trace(recorded: Recording, token: str) -> None:
    """create -> postback -> handler, one trace; the handler's span links to the
    postback's; nothing secret recorded."""
    postback = postback_span_of(recorded, token)
    handler = only(recorded.spans(), SpanKind.CONSUMER, **{"dokobit.handler": HANDLER})
    context = context_of(postback)
    assert handler.parent is not None
    assert handler.parent.span_id == context.span_id
    assert context_of(handler).trace_id == context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in handler.links] == [
        (context.trace_id, context.span_id)
    ]
    assert (handler.attributes or {})["dokobit.signing.token"] == token


def secrets(client: DokobitClient, postback_url: str) -> list[str]:
    return [client._token, postback_url.rsplit("/", 1)[1], SECRET.decode()]


async def test_one_trace_from_create_to_handler_on_a_sqlite_file(
    recorded: Recording,
    dokobit_emulator: Emulator,
    dokobit_client: DokobitClient,
    tmp_path: Path,
) -> None:
    router, seen = archiving()
    inbox = SQLiteInbox(tmp_path / "inbox.db")
    receiver, runner, url = await start_receiver(router, inbox=inbox)
    try:
        token = await create(dokobit_client, url)
        await wait_until(lambda: _true(seen == [token]))
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    assert_handled_in_the_trace(recorded, token)
    async with SQLiteInbox(tmp_path / "inbox.db") as reopened:  # the row keeps the context
        stored = [e for e in await reopened.list(limit=10) if e.action == "signing_created"]
    context = context_of(postback_span_of(recorded, token))
    assert [e.traceparent for e in stored] == [
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    ]
    assert leaks(recorded.spans(), recorded.metrics(), secrets(dokobit_client, url)) == []


async def test_an_event_dispatched_after_a_restart_joins_the_trace_from_the_sqlite_row(
    recorded: Recording,
    dokobit_emulator: Emulator,
    dokobit_client: DokobitClient,
    tmp_path: Path,
) -> None:
    """Stored by a receiver that does not dispatch, handled by the next one, which
    reads it back from the file: the context comes from the row."""
    path = tmp_path / "inbox.db"
    _, runner, url = await start_receiver(None, inbox=SQLiteInbox(path))
    try:
        token = await create(dokobit_client, url)
        await asyncio.wait_for(dokobit_emulator.wait_postbacks_idle(timeout=10), 15)
    finally:
        await runner.cleanup()
    router, seen = archiving()
    receiver, runner, _ = await start_receiver(router, inbox=SQLiteInbox(path))
    try:
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    assert seen == [token]
    assert_handled_in_the_trace(recorded, token)


async def test_one_trace_from_create_to_a_redis_workers_handler(
    recorded: Recording,
    dokobit_emulator: Emulator,
    dokobit_client: DokobitClient,
    redis_url: str,
) -> None:
    from dokobit_async.redis import RedisInbox, RedisWorker

    router, seen = archiving()
    _, runner, url = await start_receiver(None, inbox=RedisInbox(redis_url))
    try:
        async with RedisWorker(redis_url, router, block=0.1) as worker:
            running = asyncio.create_task(worker.run())
            try:
                token = await create(dokobit_client, url)
                await wait_until(lambda: _true(seen == [token]))
            finally:
                await worker.stop()
                await asyncio.wait_for(running, 30)
    finally:
        await runner.cleanup()
    assert_handled_in_the_trace(recorded, token)
    assert leaks(recorded.spans(), recorded.metrics(), secrets(dokobit_client, url)) == []


WORKER = r"""
import asyncio, json, sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from dokobit_async import otel
from dokobit_async.redis import RedisWorker
from dokobit_async.routing import Router


class FileExporter(SpanExporter):
    # each finished span as a JSON line: what the test compares, no more
    def __init__(self, path):
        self.path = path

    def export(self, spans):
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                out.write(json.dumps({
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": context.trace_id,
                    "span_id": context.span_id,
                    "parent": span.parent.span_id if span.parent else None,
                    "links": [[l.context.trace_id, l.context.span_id] for l in span.links],
                    "attributes": dict(span.attributes or {}),
                }) + "\n")
        return SpanExportResult.SUCCESS


async def main(url, path):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
    otel.instrument(tracer_provider=provider)
    router, handled = Router(), asyncio.Event()

    @router.on("signing_created", name="archive")
    async def archive(event):
        handled.set()

    async with RedisWorker(url, router, block=0.1) as worker:
        running = asyncio.ensure_future(worker.run())
        print("ready", flush=True)
        await asyncio.wait_for(handled.wait(), 60)
        await worker.stop()
        await running
    provider.shutdown()


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_worker_in_another_process_runs_the_handler_in_the_receivers_trace(
    recorded: Recording,
    dokobit_emulator: Emulator,
    dokobit_client: DokobitClient,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """The receiver (this process) stores the context in Redis; the worker process
    reads it from there: its handler span is in the create's trace, the child of
    and linked to the receiver's span."""
    from dokobit_async.redis import RedisInbox

    exported = tmp_path / "worker-spans.jsonl"
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", WORKER, redis_url, str(exported)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 60) == b"ready\n"
        _, runner, url = await start_receiver(None, inbox=RedisInbox(redis_url))
        try:
            token = await create(dokobit_client, url)
            assert await asyncio.wait_for(worker.wait(), 60) == 0
        finally:
            await runner.cleanup()
    finally:
        await kill_and_reap(worker)
    postback = context_of(postback_span_of(recorded, token))
    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    (handler,) = [line for line in lines if line["kind"] == "CONSUMER"]
    assert handler["name"] == f"dokobit handle {HANDLER}"
    assert handler["trace_id"] == postback.trace_id
    assert handler["parent"] == postback.span_id
    assert handler["links"] == [[postback.trace_id, postback.span_id]]
    assert handler["attributes"]["dokobit.signing.token"] == token
    assert handler["attributes"]["dokobit.attempt"] == 1
    assert handler["attributes"]["dokobit.outcome"] == "ok"
    text = exported.read_text(encoding="utf-8")
    for secret in secrets(dokobit_client, url):
        assert [name for name, spelled in encodings(secret).items() if spelled in text] == []


async def _true(value: bool) -> bool:
    return value
