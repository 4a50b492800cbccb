"""What the Redis benchmarks share: a durable ``redis-server`` and the package's own
CLI processes (``listen --no-dispatch``, ``work``), pinned the way the other
benchmarks pin their servers (``_receiver_load.py``).

* :func:`durable_redis`: ``redis-server`` on a free loopback port, its files in a
  directory of its own, with ``appendonly yes`` and ``appendfsync always`` (every
  acknowledged write fsynced: the setting with the durability of SQLite's
  ``synchronous=FULL``, see ``dokobit_async/_inbox_redis.py``); stopped with
  ``SHUTDOWN NOSAVE``, then waited for until its port is closed.
* :func:`cli`: ``python -m dokobit_async ...`` with the postback secret in its
  environment and no access token (nothing is confirmed against an API).
* :func:`handlers`: a router module whose one handler waits ``ms`` milliseconds on
  ``asyncio.sleep`` (an API call's I/O wait, no CPU) and, when asked, appends a line
  per call to a file and holds a chosen event until a file exists.

A process inherits the CPUs of the one that starts it: callers pin themselves to the
server CPU, start the servers, then pin themselves to the load CPU (:func:`on_cpu`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any

from _receiver_load import pin

__all__ = [
    "SECRET",
    "Measure",
    "cli",
    "cpu_seconds",
    "durable_redis",
    "flush",
    "handlers",
    "on_cpu",
    "run_on_durable_redis",
    "stop",
    "wait_for",
]

SECRET = "benchmark-postback-secret-0123456789"
START_TIMEOUT = 20.0  # seconds


def on_cpu(cpu: int | None) -> None:
    """Pin this process (and what it starts from now on) to ``cpu`` (None: leave it)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


Measure = Callable[[str, argparse.Namespace], Coroutine[Any, Any, None]]
"""A benchmark's measurement: given the Redis URL and its arguments."""


def run_on_durable_redis(measure: Measure, args: argparse.Namespace, name: str) -> None:
    """Run ``measure`` on a :func:`durable_redis` pinned to the server CPU, this process
    on the load CPU; ``args.where`` is a directory for files, ``args.dir`` or a temp
    dir's (removed after)."""
    server_cpu, load_cpu = pin()
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=args.dir) as where:
        args.where = Path(where)
        on_cpu(server_cpu)
        with durable_redis(args.where, getattr(args, "appendfsync", "always")) as url:
            on_cpu(load_cpu)
            asyncio.run(measure(url, args))


def _command(port: int, *args: str) -> bytes:
    """One command over a raw RESP socket; the raw reply ("" if the server closed)."""
    parts = [f"*{len(args)}\r\n".encode()]
    parts += [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(b"".join(parts))
        with contextlib.suppress(OSError):
            return sock.recv(65536)
    return b""


@contextlib.contextmanager
def durable_redis(directory: Path, appendfsync: str = "always") -> Iterator[str]:
    """A ``redis-server`` fsyncing every write (AOF ``always``, unless told otherwise:
    to see what the fsyncs cost); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    options = ["--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
    options += ["--save", "", "--appendonly", "yes", "--appendfsync", appendfsync]
    process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                if _command(port, "PING").startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                _command(port, "SHUTDOWN", "NOSAVE")
            try:
                process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(START_TIMEOUT)


def flush(url: str) -> None:
    """Empty the server's database (between repeats)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert _command(port, "FLUSHALL").startswith(b"+OK")


def cli(
    *args: str, cwd: Path, stdout: IO[bytes] | int | None = None, stderr: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m dokobit_async ARGS`` with the postback secret and no token; modules
    in ``cwd`` are found (``--router``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    path = os.pathsep.join(p for p in (str(cwd), env.get("PYTHONPATH")) if p)
    env.update(DOKOBIT_POSTBACK_SECRET=SECRET, PYTHONPATH=path)
    return subprocess.Popen(
        [sys.executable, "-m", "dokobit_async", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=stderr,
    )


def wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``text`` is in the file ``log`` (a child's stderr); fails if the child
    exits or after :data:`START_TIMEOUT`."""
    deadline = time.monotonic() + START_TIMEOUT
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} from {process.args!r}: {log.read_text()[-500:]}")
        time.sleep(0.01)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status (killed after :data:`START_TIMEOUT`)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(START_TIMEOUT)
    return process.returncode


_HANDLERS = '''
"""A benchmark's handlers: wait, and (if asked) note each call and hold one event."""
import asyncio, os, time
from dokobit_async.routing import Router

router = Router()
PAUSE, CALLS, RELEASE, HOLD = {pause!r}, {calls!r}, {release!r}, {hold!r}


@router.on_any
async def handle(event):
    if CALLS:
        fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{{event.signer}} {{os.getpid()}} {{time.monotonic()}}\\n".encode())
        finally:
            os.close(fd)
    if event.signer == HOLD:
        while not os.path.exists(RELEASE):
            await asyncio.sleep(0.01)
    await asyncio.sleep(PAUSE)
'''


def handlers(
    directory: Path, ms: float, calls: Path | None = None, hold: str | None = None
) -> tuple[str, Path]:
    """Write the handlers module into ``directory``: (its ``module:router``, the file
    whose existence releases the event of signer ``hold``)."""
    name = f"bench_handlers_{uuid.uuid4().hex[:8]}"
    release = directory / f"{name}.release"
    source = _HANDLERS.format(
        pause=ms / 1000, calls=str(calls or ""), release=str(release), hold=hold
    )
    (directory / f"{name}.py").write_text(source)
    return f"{name}:router", release
