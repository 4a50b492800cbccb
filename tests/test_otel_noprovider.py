"""OpenTelemetry costs nothing while no provider is in effect
(docs/architecture.md#tracing): after ``otel.instrument()`` with OpenTelemetry's
global providers still its default proxies, a client call, a postback and a handler
run over real loopback servers start no span, attach no context, extract nothing and
count nothing, and the guarantees hold (answered 200, stored once, the handler run
once); a provider set globally later (in a fresh interpreter: the global can be set
once per process) makes the next call, postback and handler recorded, without
another ``instrument()``; a meter provider alone counts; a provider given to
``instrument()`` always records.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _otel import recording
from _receiver_helpers import postback, start_receiver
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.metrics._internal.instrument import _ProxyCounter
from opentelemetry.trace import ProxyTracer, ProxyTracerProvider
from test_e2e_emulator import create_external
from test_otel_receiver import TRACEPARENT, send

from dokobit_async import DispatchPolicy, DokobitClient, otel
from dokobit_async.events import Event
from dokobit_async.inbox import MemoryInbox
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator

FAST = DispatchPolicy(base_delay=0.0, max_delay=0.0)
HANDLER = "noted"


async def exchange(emu: Emulator, token: str) -> tuple[int, list[str], int]:
    """A create and a status call against ``emu``, then a postback (its URL carrying a
    ``traceparent``) to a loopback receiver whose one handler runs: ``(the postback's
    status, the tokens the handler saw, the events left unfinished)``."""
    async with DokobitClient(emu.access_token, base_url=emu.base_url) as client:
        created = await create_external(client)
        await client.external.status(created.token)
    seen: list[str] = []
    router = Router()

    @router.on("signing_created", name=HANDLER)
    async def noted(event: Event) -> None:
        seen.append(event.token or "")

    inbox = MemoryInbox()
    receiver, runner, url = await start_receiver(router, inbox=inbox, policy=FAST)
    try:
        status = await send(f"{url}?traceparent={TRACEPARENT}", postback(token))
        await receiver.wait_idle()
        left = len(await inbox.pending(limit=10))
    finally:
        await runner.cleanup()
    return status, seen, left


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls into OpenTelemetry counted by kind: spans started on the proxy tracer,
    contexts attached, contexts extracted from headers, counters of the proxy meter
    added to. Asserts no global provider is set (the state these tests are about)."""
    assert isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    calls = {"start_span": 0, "attach": 0, "extract": 0, "add": 0}

    def counting(kind: str, real: object) -> object:
        def count(*args: object, **kwargs: object) -> object:
            calls[kind] += 1
            return real(*args, **kwargs)  # type: ignore[operator]

        return count

    monkeypatch.setattr(ProxyTracer, "start_span", counting("start_span", ProxyTracer.start_span))
    monkeypatch.setattr(context, "attach", counting("attach", context.attach))
    monkeypatch.setattr(propagate, "extract", counting("extract", propagate.extract))
    monkeypatch.setattr(_ProxyCounter, "add", counting("add", _ProxyCounter.add))
    return calls


async def test_with_no_provider_nothing_is_started_attached_or_extracted(
    dokobit_emulator: Emulator, counted: dict[str, int]
) -> None:
    """``instrument()`` and no provider: the calls, the postback and the handler run
    as uninstrumented (200, the handler once, nothing left), and OpenTelemetry is
    never called; the counting sees the same exchange when a provider is given."""
    otel.instrument()
    try:
        assert await exchange(dokobit_emulator, "sig-nothing") == (200, ["sig-nothing"], 0)
    finally:
        otel.uninstrument()
    assert counted == {"start_span": 0, "attach": 0, "extract": 0, "add": 0}
    with recording() as found:  # a provider given to instrument() always records
        assert await exchange(dokobit_emulator, "sig-given") == (200, ["sig-given"], 0)
    names = sorted(span.name for span in found.spans())
    assert names == sorted(
        [
            "dokobit external.create",
            "dokobit external.status",
            "POST /dokobit/postback/{secret}",
            f"dokobit handle {HANDLER}",
        ]
    )
    assert counted["attach"] >= 4  # (the count sees the calls: the zero above means none)


LATER = """
import asyncio, json, sys
sys.path[:0] = [{tests!r}]
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from dokobit_async import otel
from dokobit_async.testing import Emulator
from test_otel_noprovider import exchange

async def main(which):
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    otel.instrument()  # nothing set yet
    async with Emulator() as emu:
        before = await exchange(emu, "sig-before")
        if "tracer" in which:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
        if "meter" in which:
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        after = await exchange(emu, "sig-after")
    data = reader.get_metrics_data()
    acknowledged = [
        point.value
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "dokobit.postbacks.acknowledged"
        for point in metric.data.data_points
    ]
    spans = [
        [span.name, dict(span.attributes or {{}}).get("dokobit.signing.token", "")]
        for span in exporter.get_finished_spans()
    ]
    print(json.dumps({{"before": before, "after": after, "spans": spans, "acks": acknowledged}}))

asyncio.run(main(sys.argv[1]))
"""


def later(which: str, tmp_path: Path) -> dict[str, object]:
    """The :data:`LATER` scenario in a fresh interpreter, setting ``which`` global
    provider(s) between two exchanges: what it printed."""
    script = textwrap.dedent(LATER).format(tests=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", script, which],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("which", ["tracer+meter", "tracer", "meter"])
def test_a_global_provider_set_after_instrument_records_from_the_next_call(
    which: str, tmp_path: Path
) -> None:
    """Before the global provider is set, nothing is recorded; after, the next calls,
    postback and handler run are (spans with a tracer provider, the acknowledged
    counter with a meter provider), with no second ``instrument()``."""
    found = later(which, tmp_path)
    assert found["before"] == [200, ["sig-before"], 0]
    assert found["after"] == [200, ["sig-after"], 0]
    spans = dict(found["spans"])  # type: ignore[call-overload]
    if "tracer" in which:  # the four of the second exchange, none of the first
        assert sorted(spans) == sorted(
            [
                "dokobit external.create",
                "dokobit external.status",
                "POST /dokobit/postback/{secret}",
                f"dokobit handle {HANDLER}",
            ]
        )
        assert spans["POST /dokobit/postback/{secret}"] == "sig-after"
        assert spans[f"dokobit handle {HANDLER}"] == "sig-after"
    else:
        assert spans == {}
    assert found["acks"] == ([1] if "meter" in which else [])
