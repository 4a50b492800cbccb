"""What tracing costs a ``client.external.status()`` call: off, on without an SDK, on
with an SDK.

The peer, in the same run, is the same client not instrumented (``otel`` never
switched on, or switched off): what every user without the extra runs. Against it:

* ``on, no SDK``: ``otel.instrument()`` with OpenTelemetry's defaults, no SDK set up
  (what a library user gets until they configure one): no provider is in effect, so
  each hook answers the shared no-op at once, and the ratio should be 1 within the
  noise (docs/architecture.md#tracing);
* ``on, SDK``: ``otel.instrument()`` with an SDK ``TracerProvider`` whose
  ``BatchSpanProcessor`` exports to an exporter that drops the spans, and an SDK
  ``MeterProvider`` (the rate-limit wait histogram aggregates, never exported).

A bare aiohttp GET + JSON decode runs beside them, so that ``off`` can be read against
``benchmarks/status_bench.py``'s figure. The client runs with its rate limiter on (a
limit far above the load) so that the wait histogram is fed on every call. One call at
a time; the server (``_pinned.py``) answers at once from its own process pinned to one
CPU, the load runs on the other. The instrumentation is process-wide, so the kinds take
turns in short blocks, switched between blocks, the order rotating; each round's
per-call time of a kind is divided by that round's ``off``, and the ratios' median,
min and max are printed, with the noise (the spread of the ``off`` rounds). One summary
line comes last.

Usage: ``python benchmarks/otel_bench.py [--calls 2000] [--rounds 9]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from _pinned import STATUS_PATH, PinnedServer, spread
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from dokobit_async import DokobitClient, RateLimit, otel

TOKEN = "otel-bench-token"
UNLIMITED = RateLimit(calls=10**9, period=1.0)  # on, but never the reason to wait
KINDS = ("bare", "off", "on, no SDK", "on, SDK")
BLOCK = 100  # calls of one kind in a row
# goals for the medians: without an SDK a few microseconds on a call of 100 us or more
# (the API's no-op span, our attributes); with one, what the SDK's own span costs
GOAL_NO_SDK = 1.05
GOAL_SDK = 1.50


class Dropping(SpanExporter):
    """Takes every batch and keeps nothing."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def switchers(exporter: Dropping) -> tuple[dict[str, Callable[[], None]], Callable[[], None]]:
    """How to put the process in each kind's state, and how to shut the SDK down."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def sdk() -> None:
        otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def shutdown() -> None:
        otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()

    kinds = {"bare": otel.uninstrument, "off": otel.uninstrument, "on, SDK": sdk}
    kinds["on, no SDK"] = otel.instrument  # the global providers: none set, nothing runs
    return kinds, shutdown


Times = dict[str, list[float]]


async def measure(base: str, calls: int, rounds: int) -> tuple[Times, Times, int]:
    """Seconds per call of each kind, wall and this process's CPU, one per round, and
    the spans exported."""
    url = base + STATUS_PATH.format(token="ABC")
    exporter = Dropping()
    switch, shutdown = switchers(exporter)
    try:
        async with (
            aiohttp.ClientSession() as session,
            DokobitClient(TOKEN, base_url=base, session=session, rate_limit=UNLIMITED) as c,
        ):

            async def bare() -> object:
                async with session.get(url, params={"access_token": TOKEN}) as response:
                    return await response.json()

            def status() -> Awaitable[object]:
                return c.external.status("ABC")

            call: dict[str, Callable[[], Awaitable[object]]] = dict.fromkeys(KINDS, status)
            call["bare"] = bare
            for kind in KINDS:  # warm up the connection and the code paths
                switch[kind]()
                for _ in range(300):
                    await call[kind]()
            wall: Times = {kind: [] for kind in KINDS}
            cpu: Times = {kind: [] for kind in KINDS}
            done = calls // BLOCK * BLOCK
            for _ in range(rounds):
                spent = dict.fromkeys(KINDS, 0.0)
                used = dict.fromkeys(KINDS, 0.0)
                for block in range(calls // BLOCK):
                    shift = block % len(KINDS)
                    for kind in KINDS[shift:] + KINDS[:shift]:
                        switch[kind]()
                        started, cpu_started = time.perf_counter(), time.process_time()
                        for _ in range(BLOCK):
                            await call[kind]()
                        spent[kind] += time.perf_counter() - started
                        used[kind] += time.process_time() - cpu_started
                for kind in KINDS:
                    wall[kind].append(spent[kind] / done)
                    cpu[kind].append(used[kind] / done)
    finally:
        shutdown()  # flushes the batch processor
    return wall, cpu, exporter.spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and kind")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with PinnedServer() as server:
        print(server.placement())
        wall, cpu, exported = asyncio.run(measure(server.base, args.calls, args.rounds))
    print(f"{args.rounds} rounds x {args.calls} calls of each kind, one call at a time:")
    for kind in KINDS:
        print(
            f"    {kind:12s} per call {spread([t * 1e6 for t in wall[kind]], '{:.1f}')} us"
            f", client CPU {spread([t * 1e6 for t in cpu[kind]], '{:.1f}')} us"
        )
    off = wall["off"]
    noise = (max(off) - min(off)) / statistics.median(off)
    print(f"    noise: the off rounds spread over {noise * 100:.1f} % of their median")
    ratios: dict[str, list[float]] = {}
    for kind in ("bare", "on, no SDK", "on, SDK"):
        ratios[kind] = [t / o for t, o in zip(wall[kind], off, strict=True)]
        cpu_ratios = [t / o for t, o in zip(cpu[kind], cpu["off"], strict=True)]
        extra = statistics.median(wall[kind]) - statistics.median(off)
        print(
            f"    {kind:12s} x{spread(ratios[kind])} of off ({extra * 1e6:+.1f} us per call);"
            f" client CPU x{spread(cpu_ratios)}"
        )
    print(f"    spans exported by the SDK (dropped): {exported}")
    no_sdk, sdk = (statistics.median(ratios[kind]) for kind in ("on, no SDK", "on, SDK"))
    met = no_sdk <= GOAL_NO_SDK and sdk <= GOAL_SDK
    print(
        f"SUMMARY tracing a status call: on without an SDK x{no_sdk:.3f} of off "
        f"({min(ratios['on, no SDK']):.3f}-{max(ratios['on, no SDK']):.3f}), with an SDK "
        f"x{sdk:.3f} ({min(ratios['on, SDK']):.3f}-{max(ratios['on, SDK']):.3f}); noise "
        f"{noise * 100:.1f} %; goals <= x{GOAL_NO_SDK:.2f} / x{GOAL_SDK:.2f} -> "
        f"{'MET' if met else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
