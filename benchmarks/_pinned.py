"""What the client benchmarks share: a loopback API server in a process of its own,
pinned to one CPU while the load generator (the benchmark itself) runs on the other,
and how figures are summarised (median, min and max of repeats).

The server answers ``GET /api/signing-external/{token}/status.json`` with a fixed
status answer, as fast as aiohttp can, and records when each request reached its
handler (``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for every process of
the machine, so arrivals compare with the load generator's own times).
``GET /bench/arrivals`` returns the arrivals recorded so far and forgets them
(``?tokens=1``: each with the signing token it asked about).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

STATUS_PATH = "/api/signing-external/{token}/status.json"
STATUS = {
    "status": "pending",
    "name": "Agreement",
    "type": "pdf",
    "date_created": "2026-11-27T10:00:00+02:00",
    "deadline": None,
    "filename": "agreement.pdf",
    "files": [
        {"name": "agreement.pdf", "url": "http://127.0.0.1/x", "mime_type": "application/pdf"}
    ],
    "signers": [
        {
            "token": f"s{i}",
            "first_name": "Jonas",
            "last_name": "Jonaitis",
            "code": "39001010000",
            "country": "lt",
            "email": "jonas@example.com",
            "type": "signer",
            "status": "pending",
        }
        for i in range(3)
    ],
}


def serve(info_file: str, cpu: int | None) -> None:
    """The server process (run by ``python _pinned.py INFO_FILE [CPU]``)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from aiohttp import web

    body = json.dumps(STATUS).encode()
    arrivals: list[tuple[int, str]] = []

    async def status(request: web.Request) -> web.Response:
        arrivals.append((time.monotonic_ns(), request.match_info["token"]))
        return web.Response(body=body, content_type="application/json")

    async def taken(request: web.Request) -> web.Response:
        found = arrivals[:]
        del arrivals[: len(found)]
        if request.query.get("tokens"):
            return web.json_response(found)
        return web.json_response([t for t, _ in found])

    async def main() -> None:
        app = web.Application()
        app.router.add_get(STATUS_PATH, status)
        app.router.add_get("/bench/arrivals", taken)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        Path(info_file).write_text(f"http://127.0.0.1:{runner.addresses[0][1]}")
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class PinnedServer:
    """The server process, and this process pinned to another CPU (if there are two).

    Use as a context manager; ``base`` is the server's origin.
    """

    def __init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpu: int | None = cpus[0] if len(cpus) >= 2 else None
        self.load_cpu: int | None = cpus[1] if len(cpus) >= 2 else None
        self.base = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PinnedServer:
        info_file = tempfile.mktemp(prefix="dokobit-bench-server-")  # noqa: S306 - local
        command = [sys.executable, __file__, info_file]
        if self.server_cpu is not None:
            command.append(str(self.server_cpu))
        self._proc = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(info_file) or not Path(info_file).read_text():
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.05)
            self.base = Path(info_file).read_text()
        except BaseException:
            self.__exit__()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(info_file)
        # the server chose its CPU before this process pins itself
        if self.load_cpu is not None:
            os.sched_setaffinity(0, {self.load_cpu})
        return self

    def __exit__(self, *_: object) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def placement(self) -> str:
        """One line saying where the server and the load run."""
        if self.load_cpu is None:
            return "warning: fewer than 2 CPUs; server and load generator are not pinned"
        return f"server pinned to CPU {self.server_cpu}, load generator to CPU {self.load_cpu}"

    async def arrivals(self, session: aiohttp.ClientSession) -> list[int]:
        """The arrivals (monotonic ns) since the last call, sorted."""
        async with session.get(f"{self.base}/bench/arrivals") as response:
            found: list[int] = await response.json()
        return sorted(found)

    async def arrivals_by_token(self, session: aiohttp.ClientSession) -> list[tuple[int, str]]:
        """The arrivals (monotonic ns) since the last call, each with its signing
        token, sorted."""
        async with session.get(f"{self.base}/bench/arrivals?tokens=1") as response:
            found: list[list[int | str]] = await response.json()
        return sorted((int(t), str(token)) for t, token in found)


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """``median (min-max)`` of ``values``."""
    shown = [fmt.format(v) for v in (statistics.median(values), min(values), max(values))]
    return f"{shown[0]} ({shown[1]}-{shown[2]})"


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
