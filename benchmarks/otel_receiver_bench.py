"""What tracing costs the receiver: durable acks per second, not instrumented (the
peer) against instrumented, in the same run.

Three receiver processes, alike but for the telemetry (``_receiver_load.py``'s
``receiver``: an ``SQLiteInbox`` with ``synchronous="FULL"``, the URL secret checked,
one trivial handler, dispatch beside the acks):

* ``off``: ``otel`` never switched on, what every user without the extra runs (the
  peer);
* ``on, no SDK``: ``otel.instrument()`` with OpenTelemetry's defaults and no SDK set
  up: no provider is in effect, so each hook answers the shared no-op at once (no
  span, no context, no counter) and the ratio should be 1 within the noise;
* ``on, SDK``: ``otel.instrument()`` with an SDK ``TracerProvider`` whose
  ``BatchSpanProcessor`` exports to an exporter that drops the spans (a SERVER span
  per postback, a CONSUMER span per handler run) and an SDK ``MeterProvider`` (the
  counters and the backlog gauge aggregate, never exported).

Closed loop, ``--concurrency`` requests in flight for ``--seconds`` per server and
round, every body a new postback; the servers are pinned to one CPU, the load to the
other; rounds alternate between the servers, and each instrumented rate is divided by
the same round's ``off`` (median, min, max); so is the server's CPU time per ack (its
handler runs included: read from the server before and after each block, once it
drained), which a loaded machine disturbs less than the rate. The noise is the spread
of ``off``'s own rounds. One summary line comes last.

Usage: ``python benchmarks/otel_receiver_bench.py [--seconds 4] [--rounds 5]
[--concurrency 96] [--inbox-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from collections.abc import Sequence

from _receiver_load import Pool, Server, closed_loop, noise, postbacks, running, serve, spread

KINDS = ("off", "on-no-sdk", "on-sdk")
LABELS = {"off": "off (peer)", "on-no-sdk": "on, no SDK", "on-sdk": "on, SDK"}
WARM_UP = 2000  # requests per server before the measured rounds


async def measure(servers: dict[str, Server], args: argparse.Namespace) -> None:
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}  # server CPU us per ack
    answers: dict[str, int] = dict.fromkeys(KINDS, 0)
    runs = iter(f"{n:06x}" for n in range(1, 2**24))
    pools = {kind: Pool(server.port, server.path) for kind, server in servers.items()}
    for kind in KINDS:  # warm up connections, code paths, the database files
        await closed_loop(pools[kind], postbacks(next(runs), WARM_UP), args.concurrency)
    for round_no in range(args.rounds):
        order = KINDS[round_no % 3 :] + KINDS[: round_no % 3]  # who goes first rotates
        for kind in order:
            before = (await servers[kind].drained())[0]["cpu"]
            bodies = postbacks(next(runs), int(args.seconds * 20_000))  # more than enough
            statuses, wall, _ = await closed_loop(
                pools[kind], bodies, args.concurrency, args.seconds
            )
            answers[kind] += sum(n for status, n in statuses.items() if status != 200)
            rates[kind].append(statuses[200] / wall)
            after = (await servers[kind].drained())[0]["cpu"]  # its handlers run too
            cpu[kind].append((after - before) / max(statuses[200], 1) * 1e6)
        shown = ", ".join(f"{LABELS[kind]} {rates[kind][-1]:,.0f}/s" for kind in KINDS)
        print(f"round {round_no + 1}: {shown}", flush=True)
    for pool in pools.values():
        pool.close()
    print(
        f"closed loop, {args.concurrency} in flight, {args.rounds} rounds x "
        f"{args.seconds:g} s per server, durable acks per second:"
    )
    ratios = {
        kind: [r / peer for r, peer in zip(rates[kind], rates["off"], strict=True)]
        for kind in KINDS[1:]
    }
    cpu_ratios = {
        kind: [c / peer for c, peer in zip(cpu[kind], cpu["off"], strict=True)]
        for kind in KINDS[1:]
    }
    for kind in KINDS:
        against = "" if kind == "off" else f"; / off x{spread(ratios[kind], '{:.3f}')}"
        print(f"    {LABELS[kind]:<12} {spread(rates[kind])}{against}")
    print("server CPU per ack (us; the acks and their handler runs, less sensitive to load):")
    for kind in KINDS:
        against = "" if kind == "off" else f"; / off x{spread(cpu_ratios[kind], '{:.3f}')}"
        print(f"    {LABELS[kind]:<12} {spread(cpu[kind], '{:.0f}')}{against}")
    if any(answers.values()):
        print(f"    answers other than 200: {answers}")
    print(f"    noise: off's own rounds spread {noise(rates['off']):.0%} (max - min over median)")
    print(
        "otel_receiver_bench: acks/s instrumented / not, "
        f"no SDK x{spread(ratios['on-no-sdk'], '{:.3f}')}, "
        f"SDK x{spread(ratios['on-sdk'], '{:.3f}')}; "
        f"server CPU per ack no SDK x{statistics.median(cpu_ratios['on-no-sdk']):.3f}, "
        f"SDK x{statistics.median(cpu_ratios['on-sdk']):.3f}; "
        f"noise {noise(rates['off']):.0%}"
    )


def serve_instrumented(kind: str, info: str, cpu: int | None, db: str) -> None:
    """A receiver server process, instrumented as ``kind`` says."""
    if cpu is not None:  # before the SDK's export thread starts: it inherits the CPU
        os.sched_setaffinity(0, {cpu})
    if kind != "off":
        from dokobit_async import otel

        if kind == "on-sdk":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                SpanExporter,
                SpanExportResult,
            )

            class Dropping(SpanExporter):
                def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                    return SpanExportResult.SUCCESS

            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        else:
            otel.instrument()  # no SDK set up: no provider in effect, the hooks no-ops
    serve("receiver", info, cpu, db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per server and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=96, help="requests in flight")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)  # a server process
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_instrumented(args.serve, args.info, args.cpu, args.db)
        return
    with running(KINDS, "otel-ack", args.inbox_dir, entry=__file__) as servers:
        asyncio.run(measure(servers, args))


if __name__ == "__main__":
    main()
