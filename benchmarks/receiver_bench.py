"""The receiver's three benchmarks, one after another (issue 10, rows 1 to 3):

1. ``dispatch_bench.py``: handler completions per second against the acks per
   second of the same run (target: at least 0.95);
2. ``ack_bench.py``: durable acks per second against a bare aiohttp JSON handler
   (target: at least 0.8);
3. ``ack_latency_bench.py``: the ack p99 at 500 postbacks/s against a bare handler
   that does one fsynced SQLite insert per request (target: at most 1.0).

Each runs in a process of its own, with its servers pinned to one CPU and its load
on another, and prints its figures, its noise and its summary line; this script
prints the three summary lines again at the end, then one line of its own.

Usage: ``python benchmarks/receiver_bench.py [--long] [--inbox-dir DIR]`` (``--long``
runs each part three times as long).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = {
    "dispatch_bench.py": ["--seconds", "10"],
    "ack_bench.py": ["--seconds", "5"],
    "ack_latency_bench.py": ["--seconds", "8"],
}


def run_parts(commands: dict[str, list[str]]) -> list[str]:
    """Run each script of ``commands`` (its options) in a process of its own, showing
    its output, then every summary line (a script's last, or ``NAME: FAILED``)."""
    summaries: list[str] = []
    for script, options in commands.items():
        print(f"== {script}", flush=True)
        command = [sys.executable, str(HERE / script), *options]
        run = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        print(run.stdout, end="", flush=True)
        lines = run.stdout.strip().splitlines()
        summaries.append(lines[-1] if run.returncode == 0 and lines else f"{script}: FAILED")
    print("== summary")
    for line in summaries:
        print(line)
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="each part three times as long")
    parser.add_argument("--inbox-dir", help="where the SQLite files go (default: temp dirs)")
    args = parser.parse_args()
    commands: dict[str, list[str]] = {}
    for script, options in PARTS.items():
        seconds = float(options[1]) * (3 if args.long else 1)
        where = ["--inbox-dir", args.inbox_dir] if args.inbox_dir else []
        commands[script] = ["--seconds", f"{seconds:g}", *where]
    summaries = run_parts(commands)
    met = sum(line.endswith(": MET") for line in summaries)
    print(f"receiver_bench: {met} of {len(summaries)} rows met their target")


if __name__ == "__main__":
    main()
