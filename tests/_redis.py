"""A real ``redis-server`` for the tests: started from ``PATH`` on a free loopback port
with no persistence, stopped with ``SHUTDOWN NOSAVE``.

Where no server can be had, the tests that need one skip with a reason that says how to
get one (``.ci/run`` installs Debian's ``redis-server`` and requires it, so CI always
runs them: see ``tests/_required.py``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _required import unavailable

HOW_TO_GET_ONE = (
    "no redis-server on PATH: install one (Debian: apt-get install -y "
    "--no-install-recommends redis-server; .ci/run does this) to run the real-Redis tests"
)

START_TIMEOUT = 10.0  # seconds; it is ready in ~20 ms
STOP_TIMEOUT = 10.0
# loopback only, quiet, no snapshots; no AOF either, or (persistent) every write fsynced
_OPTIONS = ("--bind", "127.0.0.1", "--save", "", "--loglevel", "warning")
_VOLATILE = ("--appendonly", "no")
_DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


def free_port() -> int:
    """A loopback port that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    """Whether a server on ``port`` answers PING (raw RESP: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


class RedisServer:
    """One running ``redis-server``; :attr:`url` is what clients connect to."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, directory: Path):
        self.process = process
        self.port = port
        self.directory = directory
        self.url = f"redis://127.0.0.1:{port}/0"

    def command(self, *args: str) -> bytes:
        """Send one command over a raw socket; the raw reply (for tests and teardown)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(b"".join(parts))
            try:
                return sock.recv(65536)
            except OSError:  # SHUTDOWN closes the connection without a reply
                return b""

    def stop(self) -> None:
        """``SHUTDOWN NOSAVE``, then wait until the process has exited and the port is
        closed (killed if it has not after :data:`STOP_TIMEOUT`)."""
        if self.process.poll() is None:
            self.command("SHUTDOWN", "NOSAVE")
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while not _port_closed(self.port) and time.monotonic() < deadline:
            time.sleep(0.01)


def start_redis(
    directory: Path, port: int | None = None, *, persistent: bool = False
) -> RedisServer:
    """Start a ``redis-server`` on a free loopback port (or ``port``: to restart one
    where its clients expect it), its files in ``directory``, without persistence or
    (``persistent``) with ``appendonly yes`` and ``appendfsync always``, the setting
    that gives a Redis inbox the durability of SQLite FULL (a restart on the same
    ``directory`` reloads what it acknowledged); skip the calling test if there is no
    server to start."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", HOW_TO_GET_ONE)
    wanted = port
    for _ in range(5):  # a port taken between choosing and binding: choose again
        port = wanted or free_port()
        log = directory / f"redis-{port}.log"
        options = [*_OPTIONS, *(_DURABLE if persistent else _VOLATILE)]
        with log.open("ab") as stderr:
            process = subprocess.Popen(
                [binary, *options, "--port", str(port), "--dir", str(directory)],
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return RedisServer(process, port, directory)
            time.sleep(0.005)
        if process.poll() is None:
            process.kill()
        process.wait()
        error = log.read_text(errors="replace")
        if "Address already in use" not in error:
            raise RuntimeError(f"redis-server did not start: {error.strip()[-500:]}")
    raise RuntimeError("redis-server found no free port in 5 tries")


def start_persistent(directory: Path, port: int | None = None) -> RedisServer:
    """:func:`start_redis` with ``persistent=True``."""
    return start_redis(directory, port, persistent=True)


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A server for the duration of the ``with`` block."""
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()
