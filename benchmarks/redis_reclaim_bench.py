"""Time for a killed worker's event to be reclaimed, against the configured lease
(issue 11, section 4).

Each repeat starts two ``dokobit-async work`` processes (``--lease``) on an empty
inbox on a ``redis-server`` (``appendfsync always``) and stores one event whose
handler holds on until the benchmark lets it go. The worker that runs it is killed
with SIGKILL in the middle of the handler; the time measured is from the kill to
the moment the other worker's call of that handler begins (both read on
``time.monotonic()``, one clock for every process of the machine). The event was
just taken when its worker died, so the wait is the lease, plus up to one idle read
of the survivor (a worker reclaims between reads, which block up to 1 s when there
is nothing to do). Prints each repeat, the time and its ratio to the lease (median,
min, max), the noise (max - min over median of the times) and one summary line
last. redis-server is pinned to one CPU, the workers and this process to the other.

Usage: ``python benchmarks/redis_reclaim_bench.py [--lease 2] [--repeats 5] [--dir
DIR]`` (defaults: about 25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import time
from pathlib import Path

from _receiver_load import noise, spread
from _redis_procs import flush, handlers, run_on_durable_redis, stop
from redis_worker_bench import start_workers

from dokobit_async.redis import RedisInbox

HELD = "held-signer"
DEADLINE = 60.0  # seconds any wait may take at most


def calls(path: Path) -> list[tuple[int, float]]:
    """(pid, monotonic time) of each call of the held event's handler so far."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        who, pid, at = line.split()
        if who == HELD:
            found.append((int(pid), float(at)))
    return found


async def until_calls(path: Path, count: int) -> list[tuple[int, float]]:
    deadline = time.monotonic() + DEADLINE
    while len(found := calls(path)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the held event was not called {count} time(s) in {DEADLINE:g} s")
        await asyncio.sleep(0.002)
    return found


async def one_kill(url: str, repeat: int, args: argparse.Namespace) -> float:
    """Seconds from killing the worker in the handler to the handler's next call."""
    flush(url)
    where = args.where / f"r{repeat}"
    where.mkdir()
    log = where / "calls.txt"
    router, release = handlers(where, 0, calls=log, hold=HELD)
    procs = start_workers(url, 2, router, where, 1, "--lease", f"{args.lease:g}")
    try:
        async with RedisInbox(url) as inbox:
            # the survivor's reads (up to 1 s each) began with the workers: add the
            # event at a random moment of them, so the kill falls at any phase
            await asyncio.sleep(random.Random(repeat).uniform(0, 1))
            body = {"action": "signer_signed", "token": "f" * 40, "signer": HELD}
            await inbox.add(
                id=f"held-{repeat}",
                signing_token="f" * 40,
                action="signer_signed",
                body=json.dumps(body).encode(),
                content_type="application/json",
                received_at=time.time(),
            )
            [(holder, _)] = await until_calls(log, 1)
            victim = next(proc for proc in procs if proc.pid == holder)
            os.kill(holder, signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(DEADLINE)
            release.touch()
            found = await until_calls(log, 2)
            survivor, again_at = found[1]
            if survivor == holder:
                raise SystemExit("the killed worker's pid ran the event again")
            deadline = time.monotonic() + DEADLINE
            while (await inbox.counts())["done"] != 1:
                if time.monotonic() > deadline:
                    raise SystemExit("the reclaimed event was not done")
                await asyncio.sleep(0.01)
    finally:
        for proc in procs:
            stop(proc)
    return again_at - killed_at


async def measure(url: str, args: argparse.Namespace) -> None:
    times: list[float] = []
    for repeat in range(args.repeats):
        times.append(await one_kill(url, repeat, args))
        print(
            f"repeat {repeat + 1}: reclaimed {times[-1]:.2f} s after the kill "
            f"(x{times[-1] / args.lease:.2f} the lease)",
            flush=True,
        )
    ratios = [t / args.lease for t in times]
    print(f"--lease {args.lease:g} s, {args.repeats} kills (SIGKILL) in the middle of a handler:")
    over = [t - args.lease for t in times]
    print(f"    time to reclaim {spread(times, '{:.2f}')} s")
    print(f"    past the lease {spread(over, '{:.2f}')} s (an idle read blocks up to 1 s)")
    print(
        f"    noise: the times spread {noise(times):.0%} (max - min over median; the phase "
        "of the survivor's reads is part of it)"
    )
    print(
        f"redis_reclaim_bench: a killed worker's event runs again after "
        f"{spread(ratios, '{:.2f}')} x the lease of {args.lease:g} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=2.0, help="seconds (work --lease)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", help="where the AOF and the logs go (default: a temp dir)")
    args = parser.parse_args()
    run_on_durable_redis(measure, args, "redis-reclaim-bench")


if __name__ == "__main__":
    main()
