"""What the receiver benchmarks share: server processes pinned to one CPU, a lean load
generator pinned to another, and how figures are shown.

Server kinds (each its own process, pinned to the server CPU before any thread
starts, so that the SQLite worker thread shares that CPU too):

* ``bare-text``: an aiohttp handler that answers ``ok``;
* ``bare-json``: an aiohttp handler that reads the body, decodes its JSON and answers
  a JSON object (the least a JSON webhook endpoint does);
* ``bare-sqlite``: ``bare-json`` plus one ``INSERT`` and one ``COMMIT`` per request
  in an SQLite file in WAL mode with ``synchronous=FULL`` (one fsync per request), on
  the event loop, as a plain handler would do it;
* ``receiver``: :class:`~dokobit_async.PostbackReceiver` with an ``SQLiteInbox``
  (``synchronous="FULL"``), a URL secret (the MAC is checked) and one trivial handler
  that counts its calls and keeps the time from the ack to its call.

The load generator speaks HTTP/1.1 over keep-alive connections with an asyncio
protocol (no client library), so that it costs the load CPU far less than a server
costs the server CPU: its busy share is printed, near 100% it is what limits a rate.
Every body is a distinct, valid ``signer_signed`` postback (~300 bytes), never a
duplicate. This file is also the server processes' entry point (``--serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "Pool",
    "Server",
    "closed_loop",
    "open_loop",
    "percentile",
    "pin",
    "postbacks",
    "remove_files",
    "spread",
    "workdir",
]

SECRET = "benchmark-postback-secret-0123456789"
PATH = "/dokobit/postback"


def postbacks(run: str, count: int) -> list[bytes]:
    """``count`` distinct, valid ``signer_signed`` postbacks (~300 bytes each), each of
    its own signing; ``run`` keeps batches apart."""
    out = []
    for i in range(count):
        token = f"{run}{i:034x}"[:40]  # Dokobit tokens are 40 hex digits
        body = {
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
        }
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    """``median M (min A, max B)`` of ``values``."""
    median, low, high = statistics.median(values), min(values), max(values)
    return f"median {fmt.format(median)} (min {fmt.format(low)}, max {fmt.format(high)})"


def noise(values: list[float]) -> float:
    """How far apart repeats of one measure are: (max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def pin() -> tuple[int | None, int | None]:
    """(server CPU, load CPU): the first two CPUs this process may use, or Nones."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: fewer than 2 CPUs; servers and load generator are not pinned")
        return None, None
    print(f"server processes pinned to CPU {cpus[0]}, load generator to CPU {cpus[1]}")
    return cpus[0], cpus[1]


@contextlib.contextmanager
def workdir(where: str | None) -> Iterator[Path]:
    """A directory for the SQLite files: ``where``, or a temporary one removed after."""
    made = where is None
    path = Path(tempfile.mkdtemp(prefix="dokobit-bench-") if where is None else where)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if made:
            shutil.rmtree(path, ignore_errors=True)


def remove_files(where: Path, prefix: str) -> None:
    """Delete the files in ``where`` whose names start with ``prefix``."""
    for path in where.glob(prefix + "*"):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def running(
    kinds: tuple[str, ...], tag: str, where: str | None, entry: str = __file__
) -> Iterator[dict[str, Server]]:
    """A server process of each kind, pinned to the server CPU (each pins itself
    before this process is pinned to the load CPU), its SQLite file in ``where`` (see
    :func:`workdir`); on the way out, stopped and its files removed. ``entry``: the
    script the servers run (``--serve KIND``), this one by default."""
    server_cpu, load_cpu = pin()
    prefix = f"{tag}-{os.getpid()}-"
    with workdir(where) as path:
        servers: dict[str, Server] = {}
        try:
            for kind in kinds:
                servers[kind] = Server(kind, server_cpu, path / f"{prefix}{kind}.db", entry)
            if load_cpu is not None:
                os.sched_setaffinity(0, {load_cpu})
            yield servers
        finally:
            for server in servers.values():
                server.stop()
            remove_files(path, prefix)


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
    """A server process of ``kind``, pinned to ``cpu``; writes where it listens."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before any thread starts: they all inherit it
    from aiohttp import web

    from dokobit_async import PostbackReceiver, RedactingAccessLogger, Router, SQLiteInbox

    receiver: PostbackReceiver | None = None
    handled = [0]
    lags: list[float] = []  # seconds from the ack's timestamp to the handler's call
    conn: sqlite3.Connection | None = None

    async def bare_text(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def bare_json(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"status": "ok", "action": body["action"]})

    async def bare_sqlite(request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        assert conn is not None
        conn.execute(
            "INSERT INTO events (id, body, received_at) VALUES (?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (body["token"] + body["signer"], raw, time.time()),
        )
        conn.commit()
        return web.json_response({"status": "ok", "action": body["action"]})

    async def stats(request: web.Request) -> web.Response:
        found: dict[str, Any] = {
            "cpu": time.process_time(),
            "threads": _thread_cpu(),
            "handled": handled[0],
            "lags": lags[:],
        }
        if request.query.get("reset"):
            lags.clear()
        if receiver is not None:
            inbox = receiver.inbox
            assert isinstance(inbox, SQLiteInbox)
            found.update(counts=await inbox.counts(), commits=inbox.commits)
        return web.json_response(found)

    async def main() -> None:
        nonlocal receiver, conn
        if kind == "receiver":
            router = Router()

            @router.on("signer_signed")
            async def on_signed(event: Any) -> None:
                handled[0] += 1
                lags.append(time.time() - event.received_at.timestamp())

            receiver = PostbackReceiver(
                router, inbox=SQLiteInbox(db, synchronous="FULL"), secret=SECRET
            )
            app = receiver.app()
            path = receiver.postback_url("")
        else:
            app = web.Application()
            path = PATH
            handlers = {"bare-text": bare_text, "bare-json": bare_json, "bare-sqlite": bare_sqlite}
            app.router.add_post(path, handlers[kind])
            if kind == "bare-sqlite":
                conn = sqlite3.connect(db)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS events"
                    " (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
                    " body BLOB NOT NULL, received_at REAL NOT NULL)"
                )
                conn.commit()
        app.router.add_get("/bench/stats", stats)
        runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        port = runner.addresses[0][1]
        info = {"port": port, "path": path}
        Path(info_file).write_text(json.dumps(info))
        await stop.wait()
        await runner.cleanup()  # the receiver's dispatcher stops, the inbox closes
        if conn is not None:
            conn.close()

    asyncio.run(main())


class Server:
    """A server process of ``kind`` with its database file ``db``, pinned to ``cpu``."""

    def __init__(self, kind: str, cpu: int | None, db: Path, entry: str = __file__):
        self.kind = kind
        info_file = tempfile.mktemp(prefix="dokobit-bench-server-")  # noqa: S306 - local
        command = [sys.executable, entry, "--serve", kind, "--info", info_file]
        command += ["--db", str(db)] + ([] if cpu is None else ["--cpu", str(cpu)])
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
        self.port: int = info["port"]
        self.path: str = info["path"]

    async def stats(self, reset: bool = False) -> dict[str, Any]:
        """The server's counters (CPU, handled events, inbox counts, ack lags)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        query = "?reset=1" if reset else ""
        writer.write(
            f"GET /bench/stats{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        response = await reader.read()
        writer.close()
        found: dict[str, Any] = json.loads(response.partition(b"\r\n\r\n")[2])
        return found

    async def drained(self, timeout: float = 300.0) -> tuple[dict[str, Any], float]:
        """Wait until the receiver has nothing pending; (its stats, seconds waited)."""
        t0 = time.perf_counter()
        while True:
            found = await self.stats()
            if found["counts"]["pending"] == 0 or time.perf_counter() - t0 > timeout:
                return found, time.perf_counter() - t0
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---------------------------------------------------------------------- load generator


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight; ``done(status)`` is called
    with each answer's status once its body has arrived."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: Callable[[int], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, done: Callable[[int], None]) -> None:
        assert self.transport is not None
        self.done = done
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.find(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(buffer) < end + 4 + length:
            return
        status = int(buffer[9:12])
        del buffer[: end + 4 + length]
        done, self.done = self.done, None
        if done is not None:
            done(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost += 1
        done, self.done = self.done, None
        if done is not None:
            done(0)


class Pool:
    """Keep-alive connections to one server path; requests prebuilt from bodies."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.idle: deque[_Connection] = deque()
        self.lost = 0

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def connection(self) -> _Connection:
        if self.idle:
            return self.idle.popleft()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _Connection(self), "127.0.0.1", self.port
        )
        return protocol

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


async def closed_loop(
    pool: Pool, bodies: list[bytes], concurrency: int, seconds: float | None = None
) -> tuple[Counter[int], float, float]:
    """Keep ``concurrency`` requests in flight, each connection sending its next body
    as soon as its previous answer arrives, until ``bodies`` are sent or ``seconds``
    passed. (statuses, wall seconds, load CPU seconds)."""
    requests = iter([pool.request(body) for body in bodies])
    statuses: Counter[int] = Counter()
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    conns = [await pool.connection() for _ in range(concurrency)]
    in_flight = [0]
    stop_at = float("inf") if seconds is None else time.perf_counter() + seconds

    def next_one(conn: _Connection) -> None:
        request = next(requests, None)
        if request is None or time.perf_counter() >= stop_at:
            pool.idle.append(conn)
            if in_flight[0] == 0 and not finished.done():
                finished.set_result(None)
            return
        in_flight[0] += 1

        def done(status: int) -> None:
            in_flight[0] -= 1
            statuses[status] += 1
            if status:
                next_one(conn)
            elif in_flight[0] == 0 and not finished.done():
                finished.set_result(None)

        conn.send(request, done)

    t0, c0 = time.perf_counter(), time.process_time()
    for conn in conns:
        next_one(conn)
    await finished
    return statuses, time.perf_counter() - t0, time.process_time() - c0


async def open_loop(
    pool: Pool, bodies: list[bytes], rate: float, skip: int
) -> tuple[list[float], Counter[int], float]:
    """Send body i at ``t0 + i / rate`` whatever the earlier ones are doing (on an idle
    connection, or a new one). The latencies (s, from the scheduled start to the
    answer) of all but the first ``skip``, every status, and how late the latest
    start was (s)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    requests = [pool.request(body) for body in bodies]
    outstanding = [0]
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    worst = 0.0
    sending_over = [False]
    for _ in range(8):  # connections opened before the clock starts
        pool.idle.append(await pool.connection())

    def sender(conn: _Connection, due: float, measured: bool) -> Callable[[int], None]:
        def done(status: int) -> None:
            statuses[status] += 1
            if measured:
                latencies.append(time.perf_counter() - due)
            if status:
                pool.idle.append(conn)
            outstanding[0] -= 1
            if outstanding[0] == 0 and sending_over[0] and not finished.done():
                finished.set_result(None)

        return done

    t0 = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        worst = max(worst, time.perf_counter() - due)
        conn = await pool.connection()
        outstanding[0] += 1
        conn.send(request, sender(conn, due, i >= skip))
    sending_over[0] = True
    if outstanding[0]:
        await finished
    return latencies, statuses, worst


def main() -> None:
    parser = argparse.ArgumentParser(description="a benchmark server process")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--info", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args()
    serve(args.serve, args.info, args.cpu, args.db)


if __name__ == "__main__":
    main()
