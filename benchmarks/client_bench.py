"""Client benchmarks on loopback; prints measured figures and ratios.

(a) Time per ``client.external.status()`` call as a ratio to a bare aiohttp GET plus
    JSON decode of the same answer (target: at most 1.15). The server runs in its own
    process; rounds of both kinds alternate and the medians are compared.
(b) Peak extra memory (max RSS growth) of uploading and of downloading a 200 MB file
    (target: under 16 MiB each). Each direction runs in a fresh process against a
    server process that streams (discards or generates) the bytes.

Usage: ``python benchmarks/client_bench.py [--calls 2000] [--rounds 7] [--mb 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


async def overhead(base: str, calls: int, rounds: int) -> None:
    import aiohttp

    from dokobit_async import DokobitClient, RateLimit

    url = f"{base}/api/signing-external/ABC/status.json"
    token = "bench-token"
    async with (
        aiohttp.ClientSession() as session,
        DokobitClient(
            token, base_url=base, session=session, rate_limit=RateLimit(calls=10**9, period=1.0)
        ) as client,
    ):

        async def bare() -> None:
            async with session.get(url, params={"access_token": token}) as response:
                await response.json()

        async def ours() -> None:
            await client.external.status("ABC")

        for fn in (bare, ours):  # warm up connections and code paths
            for _ in range(200):
                await fn()
        wall: dict[str, list[float]] = {"bare": [], "client": []}
        cpu: dict[str, list[float]] = {"bare": [], "client": []}
        for _ in range(rounds):
            for name, fn in (("bare", bare), ("client", ours)):
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    await fn()
                wall[name].append((time.perf_counter() - t0) / calls)
                cpu[name].append((time.process_time() - c0) / calls)
    w_bare, w_ours = statistics.median(wall["bare"]), statistics.median(wall["client"])
    c_bare, c_ours = statistics.median(cpu["bare"]), statistics.median(cpu["client"])
    print(f"(a) status call, {rounds} rounds x {calls} calls, medians:")
    print(
        f"    wall per call: bare aiohttp {w_bare * 1e6:7.1f} us, client {w_ours * 1e6:7.1f} us"
        f"  -> ratio {w_ours / w_bare:.3f} (target <= 1.15)"
    )
    print(
        f"    client-process CPU per call: bare {c_bare * 1e6:7.1f} us, client "
        f"{c_ours * 1e6:7.1f} us  -> ratio {c_ours / c_bare:.3f}"
    )


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
    print(f"(b) peak extra memory (max RSS growth) moving a {megabytes} MB file:")
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
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
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
        asyncio.run(overhead(base, args.calls, args.rounds))
        memory(base, args.mb)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
