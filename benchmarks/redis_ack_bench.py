"""Durable acks per second into Redis against SQLite FULL, through the real receiver
over HTTP, in the same run (issue 11, section 4).

Two ``dokobit-async listen --no-dispatch`` processes (store and answer only, the URL
secret checked), the same but for their inbox: a ``RedisInbox`` on a
``redis-server`` started here with ``appendonly yes`` and ``appendfsync always``
(each acknowledged event fsynced: the durability of ``synchronous=FULL``), and an
``SQLiteInbox`` with ``synchronous="FULL"`` (its default). Both receivers and the
redis-server are pinned to one CPU (the server side, Redis included, has one core),
the closed-loop load generator of ``_receiver_load.py`` (``--concurrency`` distinct
postbacks in flight) to the other. The two take turns, ``--repeats`` times
``--seconds`` each. Prints each repeat's acks/s, the ratio Redis / SQLite (median,
min, max of the per-repeat ratios), the noise (the spread of SQLite's repeats) and
one summary line last.

Usage: ``python benchmarks/redis_ack_bench.py [--seconds 3] [--repeats 5]
[--concurrency 64] [--dir DIR]`` (defaults: about 40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from _receiver_load import Pool, closed_loop, noise, pin, postbacks, spread
from _redis_procs import cli, durable_redis, on_cpu, stop, wait_for

from dokobit_async import SQLiteInbox
from dokobit_async.redis import RedisInbox

WARM_UP = 1.0  # seconds per inbox


class Listener:
    """``listen --no-dispatch --inbox INBOX`` on a free port; its postback path."""

    def __init__(self, inbox: str, directory: Path, tag: str):
        self.inbox = inbox
        self.acked = 0  # 200 answers, warm-up included
        self.out, self.err = directory / f"{tag}.out", directory / f"{tag}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = cli(
                *("listen", "--no-dispatch", "--inbox", inbox, "--port", "0"),
                cwd=directory,
                stdout=out,
                stderr=err,
            )
        wait_for(self.err, "listening on", self.proc)
        url = re.findall(r"postback URL: (\S+)", self.out.read_text())[0]
        parts = urlsplit(url)
        assert parts.port is not None
        self.port, self.path = parts.port, parts.path

    def stop(self) -> None:
        code = stop(self.proc)
        if code != 0:
            print(f"warning: a listener exited {code}: {self.err.read_text()[-300:]}")


@contextlib.contextmanager
def listeners(directory: Path, server_cpu: int | None) -> Iterator[dict[str, Listener]]:
    """The Redis and the SQLite receiver (and the redis-server), on ``server_cpu``."""
    on_cpu(server_cpu)
    (directory / "redis").mkdir()
    with durable_redis(directory / "redis") as url, contextlib.ExitStack() as stack:
        found: dict[str, Listener] = {}
        for name, inbox in (("Redis", url), ("SQLite", str(directory / "inbox.db"))):
            found[name] = Listener(inbox, directory, name)
            stack.callback(found[name].stop)
        yield found


async def acks_per_second(
    listener: Listener, run: str, seconds: float, concurrency: int
) -> tuple[float, float]:
    """(acks/s, the load CPU's busy share) of one closed-loop repeat."""
    pool = Pool(listener.port, listener.path)
    bodies = postbacks(run, int(seconds * 15_000))
    try:
        statuses, wall, cpu = await closed_loop(pool, bodies, concurrency, seconds)
    finally:
        pool.close()
    if set(statuses) != {200}:
        print(f"    {run}: answers {dict(statuses)}")
    if statuses.total() >= len(bodies):
        print(f"    {run}: ran out of postbacks before {seconds:g} s")
    listener.acked += statuses[200]
    return statuses[200] / wall, cpu / wall


async def stored_events(where: str) -> int:
    """How many events the inbox at ``where`` (a Redis URL or a file) holds."""
    inbox = RedisInbox(where) if where.startswith("redis://") else SQLiteInbox(where)
    async with inbox:
        return sum((await inbox.counts()).values())


async def measure(found: dict[str, Listener], args: argparse.Namespace) -> None:
    rates: dict[str, list[float]] = {name: [] for name in found}
    busy: list[float] = []
    for name, listener in found.items():  # warm-up: connections, caches, files
        await acks_per_second(listener, f"w{name[0]}", WARM_UP, args.concurrency)
    for repeat in range(args.repeats):
        for name, listener in found.items():
            run = f"{name[0]}{repeat:03x}"
            rate, load = await acks_per_second(listener, run, args.seconds, args.concurrency)
            rates[name].append(rate)
            busy.append(load)
        redis, sqlite = rates["Redis"][-1], rates["SQLite"][-1]
        print(
            f"repeat {repeat + 1}: Redis {redis:,.0f} acks/s, SQLite FULL {sqlite:,.0f} "
            f"acks/s -> x{redis / sqlite:.2f}",
            flush=True,
        )
    ratios = [r / s for r, s in zip(rates["Redis"], rates["SQLite"], strict=True)]
    stored = {name: await stored_events(listener.inbox) for name, listener in found.items()}
    print(
        f"closed loop, {args.concurrency} postbacks in flight, {args.repeats} repeats x "
        f"{args.seconds:g} s each, receivers with --no-dispatch:"
    )
    print(f"    Redis (appendfsync always) acks/s  {spread(rates['Redis'])}")
    print(f"    SQLite (synchronous=FULL) acks/s   {spread(rates['SQLite'])}")
    checks = [
        f"{name} {listener.acked} acknowledged, {stored[name]} stored"
        for name, listener in found.items()
    ]
    same = all(stored[name] == listener.acked for name, listener in found.items())
    print(f"    every ack stored once: {'; '.join(checks)} -> {'OK' if same else 'MISMATCH'}")
    print(f"    load generator CPU busy {spread(busy, '{:.0%}')} (near 100%: it limits the rate)")
    print(
        f"    noise: SQLite's repeats spread {noise(rates['SQLite']):.0%}, Redis's "
        f"{noise(rates['Redis']):.0%} (max - min over median)"
    )
    print(f"redis_ack_bench: Redis / SQLite FULL acks per second {spread(ratios, '{:.2f}')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per repeat and inbox")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--dir", help="where the AOF and SQLite files go (default: a temp dir)")
    args = parser.parse_args()
    server_cpu, load_cpu = pin()
    with (
        tempfile.TemporaryDirectory(prefix="redis-ack-bench-", dir=args.dir) as where,
        listeners(Path(where), server_cpu) as found,
    ):
        on_cpu(load_cpu)
        asyncio.run(measure(found, args))


if __name__ == "__main__":
    main()
