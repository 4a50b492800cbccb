"""Postback receiver benchmarks on loopback; prints measured figures and ratios.

(a) Postbacks per second acknowledged (200) by ``PostbackReceiver`` with an
    ``SQLiteInbox`` (``synchronous="FULL"``, group commit), a router with one trivial
    handler (so dispatch runs too) and a secret (URL MAC check on), as a ratio to a
    bare aiohttp handler that only answers 200 (target: at least 2,000 durable
    acknowledgements per second). Closed loop: ``--concurrency`` requests in flight,
    ``--count`` requests per round after a warm-up; rounds alternate between the two
    servers and the medians are compared.
(b) Acknowledgement latency at a steady ``--rate`` postbacks/s (target: p99 under
    20 ms at 500/s). Open loop: each request starts at its scheduled time whatever
    the earlier ones are doing; latency runs from the scheduled start to the answer.

"On one core": each server process pins itself to one CPU, and this process (the load
generator) pins itself to another. Every body is a distinct, valid ``signer_signed``
postback (~300 bytes), so none is a duplicate.

Usage: ``python benchmarks/receiver_bench.py [--count 20000] [--concurrency 96]
[--rounds 3] [--rate 500] [--seconds 10] [--inbox-dir DIR] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

SECRET = "benchmark-postback-secret-0123456789"
TARGET_RATE = 2000.0  # durable acknowledgements per second
TARGET_P99_MS = 20.0
WARM_UP = 2000  # requests per server before the measured rounds
HEADERS = {"Content-Type": "application/json"}


def postback(run: str, i: int) -> bytes:
    """A distinct, valid ``signer_signed`` postback (~300 bytes)."""
    token = f"{run}{i:034x}"[:40]  # Dokobit tokens are 40 hex digits
    return json.dumps(
        {
            "status": "ok",
            "token": token,
            "action": "signer_signed",
            "signer": f"{i:040x}",
            "signer_info": {
                "code": "39001010000",
                "country_code": "lt",
                "phone": "+37060000000",
                "signing_option": "smartid",
                "signing_time": "2026-11-27T10:15:30+02:00",
                "type": "qes",
            },
        },
        separators=(",", ":"),
    ).encode()


# ---------------------------------------------------------------------- server process


def _thread_cpu() -> dict[str, float]:
    """CPU seconds used by each live thread of this process, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        with contextlib.suppress(OSError, TypeError):
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            fields = stat.rpartition(")")[2].split()
            cpu[thread.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return cpu


def serve(kind: str, info_file: str, cpu: int | None, db: str) -> None:
    """A server process: the bare handler or the receiver, pinned to ``cpu``."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before any thread starts: they all inherit it
    from aiohttp import web

    from dokobit_async import PostbackReceiver, RedactingAccessLogger, Router, SQLiteInbox

    receiver: PostbackReceiver | None = None
    profiler = cProfile.Profile()

    async def bare(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats(request: web.Request) -> web.Response:
        found: dict[str, Any] = {"cpu": time.process_time(), "threads": _thread_cpu()}
        if receiver is not None:
            inbox = receiver.inbox
            assert isinstance(inbox, SQLiteInbox)
            found.update(counts=await inbox.counts(), commits=inbox.commits)
        return web.json_response(found)

    async def profile(request: web.Request) -> web.Response:
        if request.query["do"] == "start":
            profiler.enable()
        else:
            profiler.disable()
            profiler.dump_stats(request.query["out"])
        return web.Response(text="ok\n")

    async def main() -> None:
        nonlocal receiver
        if kind == "bare":
            app = web.Application()
            path = "/dokobit/postback"
            app.router.add_post(path, bare)
        else:
            router = Router()

            @router.on("signer_signed")
            async def on_signed(event: object) -> None:
                return None

            receiver = PostbackReceiver(
                router, inbox=SQLiteInbox(db, synchronous="FULL"), secret=SECRET
            )
            app = receiver.app()
            path = receiver.postback_url("")
        app.router.add_get("/bench/stats", stats)
        app.router.add_get("/bench/profile", profile)
        runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        port = runner.addresses[0][1]
        Path(info_file).write_text(json.dumps({"base": f"http://127.0.0.1:{port}", "path": path}))
        await stop.wait()
        await runner.cleanup()  # the receiver's dispatcher stops, the inbox closes

    asyncio.run(main())


class Server:
    """A server process (``kind`` "bare" or "receiver") and how to reach it."""

    def __init__(self, kind: str, cpu: int | None, db: str):
        self.kind = kind
        info_file = tempfile.mktemp(prefix="dokobit-bench-server-")  # noqa: S306 - local
        command = [sys.executable, __file__, "--serve", kind, "--info", info_file, "--db", db]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(info_file) or not Path(info_file).read_text():
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the {kind} server did not start")
                time.sleep(0.05)
            info = json.loads(Path(info_file).read_text())
        except BaseException:
            self.stop()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(info_file)
        self.base: str = info["base"]
        self.url: str = info["base"] + info["path"]

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.base}/bench/stats") as response:
            found: dict[str, Any] = await response.json()
            return found

    async def profile(self, session: aiohttp.ClientSession, do: str, out: str = "") -> None:
        async with session.get(f"{self.base}/bench/profile", params={"do": do, "out": out}):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---------------------------------------------------------------------- load generator


async def closed_loop(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int
) -> tuple[float, float, Counter[int]]:
    """Send ``bodies`` with ``concurrency`` requests in flight; (wall s, CPU s, statuses)."""
    statuses: Counter[int] = Counter()
    pending = iter(bodies)

    async def worker() -> None:
        for body in pending:  # shared by every worker
            async with session.post(url, data=body, headers=HEADERS) as response:
                await response.read()
                statuses[response.status] += 1

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, time.process_time() - c0, statuses


async def open_loop(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], rate: float, skip: int
) -> tuple[list[float], Counter[int], float]:
    """Start request i at ``t0 + i / rate``, whatever the earlier ones are doing.

    Returns the latencies (s, from the scheduled start to the answer) of all but the
    first ``skip`` requests, every status, and how late the latest start was (s)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    worst_start = 0.0

    async def one(body: bytes, due: float, measured: bool) -> None:
        async with session.post(url, data=body, headers=HEADERS) as response:
            await response.read()
            statuses[response.status] += 1
        if measured:
            latencies.append(time.perf_counter() - due)

    t0 = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_start = max(worst_start, time.perf_counter() - due)
        task = asyncio.create_task(one(body, due, i >= skip))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return latencies, statuses, worst_start


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drain(
    session: aiohttp.ClientSession, server: Server, timeout: float = 300.0
) -> tuple[dict[str, Any], float]:
    """Wait until the receiver's dispatcher has no pending events; (stats, seconds)."""
    t0 = time.perf_counter()
    while True:
        found = await server.stats(session)
        if found["counts"]["pending"] == 0 or time.perf_counter() - t0 > timeout:
            return found, time.perf_counter() - t0
        await asyncio.sleep(0.1)


def sanity(label: str, acknowledged: int, found: dict[str, Any], drained_in: float) -> None:
    counts = found["counts"]
    stored = sum(counts.values())
    verdict = "OK" if stored == acknowledged else "MISMATCH"
    print(
        f"    sanity {label}: acknowledged {acknowledged}, inbox holds {stored} "
        f"(done {counts['done']}, pending {counts['pending']}, dead {counts['dead']}) "
        f"-> {verdict}; {found['commits']} commits; dispatch backlog cleared "
        f"{drained_in:.1f} s after the load stopped"
    )


def print_profile(out: str, top: int = 15) -> None:
    """The top functions by own time, then the library's by cumulative time."""
    text = io.StringIO()
    stats = pstats.Stats(out, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("dokobit_async", top)
    skip = ("Ordered by", "List reduced", "function calls in")
    lines = text.getvalue().splitlines()
    print("\n".join(line for line in lines if line.strip() and not line.strip().startswith(skip)))


# ---------------------------------------------------------------------- benchmarks


async def throughput(
    bare: Server, receiver: Server, args: argparse.Namespace, profile_out: str | None
) -> None:
    rates: dict[str, list[float]] = {"bare": [], "receiver": []}
    load_cpu: dict[str, list[float]] = {"bare": [], "receiver": []}
    server_cpu: dict[str, list[float]] = {"bare": [], "receiver": []}
    backlogs: list[int] = []
    drain_times: list[float] = []
    runs = iter(f"{n:06x}" for n in range(1, 2**24))  # distinct tokens in every batch

    def batch(size: int) -> list[bytes]:
        run = next(runs)
        return [postback(run, i) for i in range(size)]

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        acknowledged = 0
        for server in (bare, receiver):  # warm up connections, code paths, the db file
            _, _, statuses = await closed_loop(
                session, server.url, batch(WARM_UP), args.concurrency
            )
            acknowledged += statuses[200] if server is receiver else 0
        threads_before = (await receiver.stats(session))["threads"]
        for _ in range(args.rounds):
            for server in (bare, receiver):
                # every round starts with the dispatcher idle (it shares the server CPU)
                await drain(session, receiver)
                bodies = batch(args.count)
                before = (await server.stats(session))["cpu"]
                wall, cpu, statuses = await closed_loop(
                    session, server.url, bodies, args.concurrency
                )
                after = await server.stats(session)
                if statuses[200] != args.count:
                    print(f"    {server.kind}: unexpected answers {dict(statuses)}")
                rates[server.kind].append(statuses[200] / wall)
                load_cpu[server.kind].append(cpu / wall)
                server_cpu[server.kind].append((after["cpu"] - before) / wall)
                if server is receiver:
                    acknowledged += statuses[200]
                    backlogs.append(after["counts"]["pending"])
                    drain_times.append(wall + (await drain(session, receiver))[1])
        found, drained_in = await drain(session, receiver)
        threads_after = found["threads"]
        if profile_out is not None:
            await receiver.profile(session, "start")
            _, _, statuses = await closed_loop(
                session, receiver.url, batch(args.count), args.concurrency
            )
            await receiver.profile(session, "stop", profile_out)
            acknowledged += statuses[200]
            found, drained_in = await drain(session, receiver)

    bare_rate = statistics.median(rates["bare"])
    ours = statistics.median(rates["receiver"])
    print(
        f"(a) closed loop, {args.concurrency} in flight, {args.rounds} rounds x "
        f"{args.count} postbacks per server, medians:"
    )
    print(f"    bare aiohttp handler: {bare_rate:8.0f} acks/s")
    verdict = "MET" if ours >= TARGET_RATE else "MISSED"
    print(
        f"    receiver + SQLite   : {ours:8.0f} acks/s  -> ratio {ours / bare_rate:.3f}; "
        f"{verdict} (target >= {TARGET_RATE:,.0f} durable acks/s)"
    )
    busy = {kind: statistics.median(server_cpu[kind]) for kind in rates}
    client_busy = {kind: statistics.median(load_cpu[kind]) for kind in rates}
    per_ack = {kind: busy[kind] / statistics.median(rates[kind]) * 1e6 for kind in rates}
    print(
        f"    server CPU per ack: bare {per_ack['bare']:.0f} us, receiver "
        f"{per_ack['receiver']:.0f} us  -> ratio {per_ack['receiver'] / per_ack['bare']:.2f}"
    )
    print(
        f"    CPU busy (share of one core): server bare {busy['bare']:.0%}, receiver "
        f"{busy['receiver']:.0%}; load generator {client_busy['bare']:.0%} / "
        f"{client_busy['receiver']:.0%} (at ~100% the load generator, not the server, "
        "limits the rate)"
    )
    spent = {
        name: threads_after.get(name, 0.0) - threads_before.get(name, 0.0)
        for name in threads_after
    }
    shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spent.items() if seconds)
    print(f"    receiver CPU by thread over the rounds: {shown}")
    print(
        f"    dispatch: {statistics.median(backlogs):.0f} events still pending when a round "
        f"ended; all {args.count} done {statistics.median(drain_times):.1f} s after the "
        f"round started ({args.count / statistics.median(drain_times):.0f} events/s)"
    )
    sanity("(a)", acknowledged, found, drained_in)
    if profile_out is not None:
        print(f"    cProfile of the event-loop thread, one more round of {args.count}:")
        print_profile(profile_out)


async def latency(receiver: Server, args: argparse.Namespace) -> None:
    warm = int(args.rate)  # the first second is not measured
    total = warm + int(args.rate * args.seconds)
    bodies = [postback("b", i) for i in range(total)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        latencies, statuses, late = await open_loop(session, receiver.url, bodies, args.rate, warm)
        backlog = (await receiver.stats(session))["counts"]["pending"]
        found, drained_in = await drain(session, receiver)
    values = sorted(latencies)
    p50, p90, p99 = (percentile(values, q) * 1e3 for q in (50, 90, 99))
    print(
        f"(b) open loop at {args.rate:g} postbacks/s for {args.seconds:g} s "
        f"({len(values)} measured after 1 s of warm-up), latency from scheduled start:"
    )
    print(
        f"    p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {values[-1] * 1e3:.2f} ms"
        f"  -> {'MET' if p99 < TARGET_P99_MS else 'MISSED'} (target p99 < {TARGET_P99_MS:g} ms)"
    )
    print(
        f"    answers {dict(statuses)}; latest start {late * 1e3:.2f} ms behind schedule; "
        f"{backlog} pending when the load stopped"
        + (" (the load generator was held up: is the machine busy?)" if late > 0.005 else "")
    )
    sanity("(b)", statuses[200], found, drained_in)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="postbacks per round")
    parser.add_argument("--concurrency", type=int, default=96, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="postbacks/s for (b)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of (b)")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: a temp dir)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the receiver over one extra round"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.info, args.cpu, args.db)
        return

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if load_cpu is None:
        print("warning: fewer than 2 CPUs; server and load generator are not pinned")
    else:
        print(f"server processes pinned to CPU {server_cpu}, load generator to CPU {load_cpu}")
    made_dir = args.inbox_dir is None
    inbox_dir = Path(tempfile.mkdtemp(prefix="dokobit-bench-") if made_dir else args.inbox_dir)
    inbox_dir.mkdir(parents=True, exist_ok=True)
    dbs = [str(inbox_dir / f"receiver-bench-{os.getpid()}-{part}.db") for part in "ab"]
    profile_out = str(inbox_dir / f"receiver-bench-{os.getpid()}.prof") if args.profile else None
    servers: list[Server] = []
    try:
        # Servers start before this process pins itself: they choose their own CPU.
        bare = Server("bare", server_cpu, dbs[0])
        servers.append(bare)
        receiver = Server("receiver", server_cpu, dbs[0])
        servers.append(receiver)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        asyncio.run(throughput(bare, receiver, args, profile_out))
        for server in servers:  # (b) runs alone on the server CPU, on a fresh inbox
            server.stop()
        receiver = Server("receiver", server_cpu, dbs[1])
        servers.append(receiver)
        asyncio.run(latency(receiver, args))
    finally:
        for server in servers:
            server.stop()
        if made_dir:
            shutil.rmtree(inbox_dir, ignore_errors=True)
        else:
            for db in dbs:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(db + suffix)
            if profile_out is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(profile_out)


if __name__ == "__main__":
    main()
