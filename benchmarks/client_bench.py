"""Client benchmark on loopback: peak extra memory (max RSS growth) of uploading and
of downloading a 200 MB file (target: under 16 MiB each). Each direction runs in a
fresh process against a server process that streams (discards or generates) the
bytes. The time of a ``status`` call is measured by ``status_bench.py``.

Usage: ``python benchmarks/client_bench.py [--mb 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pinned import STATUS

CHUNK = 256 * 1024


def serve(port_file: str) -> None:
    """The server process: a status route, a discarding upload route, a download route."""
    from aiohttp import web

    body = json.dumps(STATUS).encode()
    block = os.urandom(CHUNK)

    async def status(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def upload(request: web.Request) -> web.Response:
        total = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            total += len(chunk)
        return web.json_response({"status": "ok", "token": "T", "received": total})

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "0"))
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            piece = block[: min(CHUNK, size - sent)]
            await response.write(piece)
            sent += len(piece)
        return response

    async def main() -> None:
        app = web.Application(client_max_size=2**40)
        app.router.add_get("/api/signing-external/{token}/status.json", status)
        app.router.add_post("/api/validation/upload.json", upload)
        app.router.add_get("/api/signing-external/{token}/download", download)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port_file = tempfile.mktemp(prefix="dokobit-bench-port-")  # noqa: S306 - local file
    proc = subprocess.Popen([sys.executable, __file__, "--serve", port_file])
    deadline = time.monotonic() + 20
    while not os.path.exists(port_file) or not Path(port_file).read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("benchmark server did not start")
        time.sleep(0.05)
    port = Path(port_file).read_text()
    os.unlink(port_file)
    return proc, f"http://127.0.0.1:{port}"


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def memory_probe(base: str, direction: str, megabytes: int) -> None:
    """Runs in its own process: prints the max-RSS growth of one transfer."""
    from dokobit_async import DokobitClient, SigningFile

    size = megabytes * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.bin"
        if direction == "upload":
            block = os.urandom(1024 * 1024)
            with path.open("wb") as out:
                for _ in range(megabytes):
                    out.write(block)
        async with DokobitClient("bench-token", base_url=base, rate_limit=None) as client:
            await client.external.status("warm-up")  # session, imports, connection
            before = _max_rss_kib()
            t0 = time.perf_counter()
            if direction == "upload":
                await client.validation.upload(SigningFile.from_path(path))
            else:
                await client.download_file(
                    f"{base}/api/signing-external/X/download?size={size}", path
                )
                assert path.stat().st_size == size
            seconds = time.perf_counter() - t0
            extra = (_max_rss_kib() - before) / 1024
    print(json.dumps({"direction": direction, "extra_mib": extra, "seconds": seconds}))


def memory(base: str, megabytes: int) -> None:
    print(f"peak extra memory (max RSS growth) moving a {megabytes} MB file:")
    for direction in ("upload", "download"):
        out = (
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--probe",
                    direction,
                    "--base",
                    base,
                    "--mb",
                    str(megabytes),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = json.loads(out)
        rate = megabytes / result["seconds"]
        print(
            f"    {direction:8s}: {result['extra_mib']:6.2f} MiB extra "
            f"({rate:6.1f} MB/s)  -> {'OK' if result['extra_mib'] < 16 else 'OVER'} "
            "(target < 16 MiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.probe:
        asyncio.run(memory_probe(args.base, args.probe, args.mb))
        return
    proc, base = start_server()
    try:
        memory(base, args.mb)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
