"""The Redis scale-out benchmarks, one after another (issue 11, section 4):

1. ``redis_ack_bench.py``: durable acks per second into Redis (``appendfsync
   always``) against SQLite FULL, through the receiver over HTTP;
2. ``redis_worker_bench.py``: handler throughput of 1, 2 and 4 ``work`` processes
   (the ratios 2/1 and 4/1);
3. ``redis_reclaim_bench.py``: time for a killed worker's event to be reclaimed,
   against the lease.

Each runs in a process of its own, starts its own ``redis-server`` (stopped with
``SHUTDOWN NOSAVE``), pins it to one CPU and its load to another, and prints its
figures, its noise and its summary line; this script prints the three summary lines
again at the end, then one line of its own.

Usage: ``python benchmarks/redis_bench.py [--long] [--dir DIR]`` (about two minutes;
``--long`` runs each part three times as many repeats).
"""

from __future__ import annotations

import argparse

from receiver_bench import run_parts

PARTS = {
    "redis_ack_bench.py": 5,  # repeats
    "redis_worker_bench.py": 3,
    "redis_reclaim_bench.py": 5,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="three times as many repeats")
    parser.add_argument("--dir", help="where the AOF and SQLite files go (default: temp dirs)")
    args = parser.parse_args()
    where = ["--dir", args.dir] if args.dir else []
    summaries = run_parts(
        {
            script: ["--repeats", str(repeats * (3 if args.long else 1)), *where]
            for script, repeats in PARTS.items()
        }
    )
    failed = sum(line.endswith(": FAILED") for line in summaries)
    print(f"redis_bench: {len(summaries) - failed} of {len(summaries)} parts measured")


if __name__ == "__main__":
    main()
