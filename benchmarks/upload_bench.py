"""Upload benchmark on loopback: ``external.create`` with a large PDF, against a peer.

The peer is a hand-written single-pass streamed base64 encoder: it reads the file
block by block, hashes each block (SHA-256, for the ``digest`` field that follows the
content), encodes it to base64, form-escapes it (``+``, ``/`` and ``=``, as
``quote_plus`` does) and writes it to the socket through an aiohttp session, all in
one pass on the event loop. Knowing no length up front, it sends the body chunked.
It sends the very same body as the client (the server checks that both bodies have
the same length and SHA-256), to the same server, in the same run; rounds alternate
between the two and the medians are compared. Its block size, ``--peer-block``,
defaults to 192 KiB, its best here (24 to 192 KiB are alike; 768 KiB is slower).

Figures, for a ``--mb`` MB file (default 200):

- throughput (MB of source per second) of the client and of the peer, median of
  ``--repeats`` (min and max shown), their ratio (target: at least x1.0), and the
  ratio of the CPU time each used (steadier than wall time on a busy machine);
- the noise during the run: the spread of the peer's repeats, (max - min) / median;
- the event loop's worst lag during an upload (a task that asks to wake every 5 ms
  records how late it woke): the client's work off the loop must not block it;
- the C work per MB of source, timed step by step on the uploader's core: what the
  peer's one pass needs (hash, then base64 and escape) and what the client's two need
  (hash, base64 and count for the exact length; base64 and escape to send); their
  ratio is the best the client could do on one core with two passes;
- the peak extra memory of one upload in a fresh process, for ``--mem-mb`` sizes:
  traced Python allocations (``tracemalloc``, peak minus the level before) and the
  growth of the maximum RSS (target: at most 4 MiB, independent of the size).

"On one core": the server process pins itself to one CPU and this process (the
uploader, client or peer) to another, as ``receiver_bench.py`` does.

Usage: ``python benchmarks/upload_bench.py [--mb 200] [--repeats 5] [--mem-mb 50,200]
[--peer-block 196608] [--no-pin]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

TOKEN = "bench-token"
CREATE = "/api/signing-external/create.json"
SERVER_CPU, LOAD_CPU = 0, 1
TARGET_RATIO = 1.0
TARGET_MIB = 4.0
# the fields around the content, as the client writes them for the call in upload()
BEFORE = b"type=pdf&name=Agreement&files%5B0%5D%5Bname%5D=agreement.pdf&files%5B0%5D%5Bcontent%5D="
AFTER = b"&signers%5B0%5D%5Bexternal_id%5D=u1&signers%5B0%5D%5Bemail%5D=u1%40example.com"


# ---------------------------------------------------------------------- server process


def serve(port_file: str, cpu: int | None) -> None:
    """The server: reads each body to its end, hashing it; ``GET /bench/last`` tells
    the length and SHA-256 of the last body and the server's CPU time so far."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from aiohttp import web

    last: dict[str, Any] = {}

    async def create(request: web.Request) -> web.Response:
        sha = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            sha.update(chunk)
            size += len(chunk)
        last.update(
            size=size,
            sha256=sha.hexdigest(),
            content_length=request.content_length,
            chunked="chunked" in request.headers.get("Transfer-Encoding", ""),
        )
        return web.json_response({"status": "ok", "token": "S1", "signers": []})

    async def report(request: web.Request) -> web.Response:
        return web.json_response({**last, "cpu": time.process_time()})

    async def main() -> None:
        app = web.Application(client_max_size=2**40)
        app.router.add_post(CREATE, create)
        app.router.add_get("/bench/last", report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tempfile.mktemp(prefix="dokobit-upload-port-")  # noqa: S306 - local file
    args = [sys.executable, __file__, "--serve", port_file]
    proc = subprocess.Popen(args + ([] if cpu is None else ["--cpu", str(cpu)]))
    deadline = time.monotonic() + 20
    while not os.path.exists(port_file) or not Path(port_file).read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("benchmark server did not start")
        time.sleep(0.05)
    port = Path(port_file).read_text()
    os.unlink(port_file)
    return proc, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------- the uploaders


async def upload(base: str, path: Path) -> None:
    """The client: one ``external.create`` call with the file."""
    from dokobit_async import DokobitClient, ExternalSigner, RetryPolicy, SigningFile

    async with DokobitClient(
        TOKEN, base_url=base, rate_limit=None, retry=RetryPolicy(max_attempts=1)
    ) as client:
        created = await client.external.create(
            name="Agreement",
            type="pdf",
            files=[SigningFile.from_path(path, name="agreement.pdf")],
            signers=[ExternalSigner(external_id="u1", email="u1@example.com")],
        )
    assert created.token == "S1"


async def peer(base: str, path: Path, block: int) -> None:
    """The peer: read -> hash -> base64 -> form-escape -> write, block by block."""

    async def body() -> AsyncIterator[bytes]:
        yield BEFORE
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(block):
                sha.update(chunk)
                text = base64.b64encode(chunk)
                yield text.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")
        yield b"&files%5B0%5D%5Bdigest%5D=" + sha.hexdigest().encode("ascii") + AFTER

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base + CREATE,
            params={"access_token": TOKEN},
            data=body(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response,
    ):
        answer = await response.json()
    assert answer["token"] == "S1"


async def lag_probe(worst: list[float], period: float = 0.005) -> None:
    """Wake every ``period`` seconds; keep the worst lateness in ``worst[0]``."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        worst[0] = max(worst[0], loop.time() - due)


async def timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """Seconds and CPU seconds taken by ``run()``, and the loop's worst lag meanwhile."""
    worst = [0.0]
    probe = asyncio.create_task(lag_probe(worst))
    await asyncio.sleep(0)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        await run()
    finally:
        probe.cancel()
    return time.perf_counter() - started, time.process_time() - cpu, worst[0]


async def last_body(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + "/bench/last") as answer:
        result: dict[str, Any] = await answer.json()
        return result


async def throughput(base: str, path: Path, repeats: int, block: int) -> dict[str, Any]:
    megabytes = path.stat().st_size / 1e6
    runs: dict[str, Callable[[], Awaitable[None]]] = {
        "peer": lambda: peer(base, path, block),
        "client": lambda: upload(base, path),
    }
    bodies: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():  # warm-up, and the check that the bodies are equal
        await run()
        bodies[name] = await last_body(base)
    client_body, peer_body = bodies["client"], bodies["peer"]
    if (client_body["size"], client_body["sha256"]) != (peer_body["size"], peer_body["sha256"]):
        raise SystemExit(f"the bodies differ: client {client_body}, peer {peer_body}")
    if client_body["chunked"] or client_body["content_length"] != client_body["size"]:
        raise SystemExit(f"the client's body has no exact Content-Length: {client_body}")
    figures: dict[str, dict[str, list[float]]] = {
        name: {"rate": [], "cpu": [], "lag": [], "server": []} for name in runs
    }
    for _ in range(repeats):
        for name, run in runs.items():
            server_before = (await last_body(base))["cpu"]
            seconds, cpu, lag = await timed(run)
            server = (await last_body(base))["cpu"] - server_before
            for key, value in (("rate", megabytes / seconds), ("cpu", cpu), ("lag", lag)):
                figures[name][key].append(value)
            figures[name]["server"].append(server / seconds)
    return {"figures": figures, "body_mb": client_body["size"] / 1e6, "mb": megabytes}


# ---------------------------------------------------------------------- C work


def c_work(peer_block: int, megabytes: int = 48) -> dict[str, float]:
    """Thread CPU milliseconds per MB of source of each C step, on this core (best of 3)."""
    from dokobit_async._bodies import base64_block_growth, base64_pieces
    from dokobit_async._payload import BLOCK

    data = memoryview(os.urandom(megabytes << 20))

    def per_mb(step: Callable[[memoryview], object], block: int) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.thread_time()
            for start in range(0, len(data), block):
                step(data[start : start + block])
            best = min(best, time.thread_time() - started)
        return best * 1e3 / (len(data) / 1e6)

    def escaped(chunk: memoryview) -> bytes:
        text = base64.b64encode(chunk)
        return text.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")

    return {
        "sha256": per_mb(lambda block: hashlib.sha256(block).digest(), BLOCK),
        "peer text": per_mb(escaped, peer_block),
        "client size": per_mb(base64_block_growth, BLOCK),
        "client text": per_mb(lambda block: base64_pieces(block, "form"), BLOCK),
    }


# ---------------------------------------------------------------------- memory


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def memory_probe(base: str, path: Path, small: Path) -> None:
    """In a fresh process: the extra memory of one upload of ``path``."""
    await upload(base, small)  # imports, code paths, the thread pool
    rss_before = _max_rss_kib()
    tracemalloc.start()
    traced_before, _ = tracemalloc.get_traced_memory()
    await upload(base, path)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "traced_mib": (traced_peak - traced_before) / 2**20,
                "rss_mib": (_max_rss_kib() - rss_before) / 1024,
            }
        )
    )


def memory(base: str, files: dict[int, Path], small: Path, cpu: int | None) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for megabytes, path in files.items():
        args = [sys.executable, __file__, "--probe", str(path), "--small", str(small)]
        args += ["--base", base] + ([] if cpu is None else ["--cpu", str(cpu)])
        lines = subprocess.run(
            args, capture_output=True, text=True, check=True, timeout=600
        ).stdout.splitlines()
        out[megabytes] = json.loads(lines[-1])
    return out


# ---------------------------------------------------------------------- main


def make_pdf(path: Path, megabytes: int) -> Path:
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n")
        for index in range(megabytes):
            out.write(block[index:] + block[:index])  # no two blocks alike
        out.write(b"%%EOF\n")  # a length that is not a multiple of 3
    return path


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def report(
    result: dict[str, Any], work: dict[str, float], mem: dict[int, Any], args: argparse.Namespace
) -> None:
    figures, megabytes = result["figures"], result["mb"]
    rate = {name: statistics.median(f["rate"]) for name, f in figures.items()}
    cpu = {name: statistics.median(f["cpu"]) * 1e3 / megabytes for name, f in figures.items()}
    ratios = [
        c / p for c, p in zip(figures["client"]["rate"], figures["peer"]["rate"], strict=True)
    ]
    ratio, noise = rate["client"] / rate["peer"], spread(figures["peer"]["rate"])
    print(
        f"external.create with a {args.mb} MB PDF ({result['body_mb']:.1f} MB form body), "
        f"{args.repeats} repeats, peer block {args.peer_block} bytes, "
        f"{'pinned' if args.pin else 'not pinned'}:"
    )
    for name in ("client", "peer"):
        values = figures[name]["rate"]
        print(
            f"  {name:6s}: {rate[name]:6.1f} MB/s of source (min {min(values):6.1f}, max "
            f"{max(values):6.1f}); CPU {cpu[name]:5.2f} ms/MB; worst loop lag "
            f"{max(figures[name]['lag']) * 1e3:6.1f} ms; server core busy "
            f"{statistics.median(figures[name]['server']) * 100:3.0f}%"
        )
    print(
        f"  ratio client/peer: x{ratio:.2f} (per round: min x{min(ratios):.2f}, max "
        f"x{max(ratios):.2f}); by CPU time x{cpu['peer'] / cpu['client']:.2f}; noise: the "
        f"peer's repeats spread {noise * 100:.0f}% "
        f"(client {spread(figures['client']['rate']) * 100:.0f}%)"
    )
    one_pass = work["sha256"] + work["peer text"]
    two_passes = work["sha256"] + work["client size"] + work["client text"]
    print(
        f"  C work per MB of source: peer {one_pass:.2f} ms (SHA-256 {work['sha256']:.2f} + "
        f"base64 and escape {work['peer text']:.2f}); client {two_passes:.2f} ms (SHA-256 "
        f"{work['sha256']:.2f} + base64 and count {work['client size']:.2f} + base64 and "
        f"escape {work['client text']:.2f}) -> two passes allow at most "
        f"x{one_pass / two_passes:.2f} on one core"
    )
    worst = 0.0
    for size, memory_figures in mem.items():
        worst = max(worst, memory_figures["traced_mib"], memory_figures["rss_mib"])
        print(
            f"  memory, {size:4d} MB file: {memory_figures['traced_mib']:5.2f} MiB traced "
            f"(tracemalloc peak), {memory_figures['rss_mib']:5.2f} MiB max-RSS growth"
        )
    verdict = "OK" if ratio >= TARGET_RATIO and worst <= TARGET_MIB else "MISSED"
    print(
        f"SUMMARY upload {args.mb} MB: client/peer x{ratio:.2f} (min x{min(ratios):.2f}, "
        f"max x{max(ratios):.2f}, noise {noise * 100:.0f}%; two-pass C-work bound "
        f"x{one_pass / two_passes:.2f}), peak extra memory {worst:.2f} MiB -> {verdict} "
        f"(targets >= x{TARGET_RATIO:.1f}, <= {TARGET_MIB:.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the timed file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mem-mb", default="50,200", help="file sizes for the memory probe")
    parser.add_argument("--peer-block", type=int, default=3 * 64 * 1024)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--small", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cpu)
        return
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.probe:
        asyncio.run(memory_probe(args.base, Path(args.probe), Path(args.small)))
        return
    if args.peer_block % 3:
        parser.error("--peer-block must be a multiple of 3")
    sizes = sorted({int(mb) for mb in args.mem_mb.split(",") if mb} | {args.mb})
    proc, base = start_server(SERVER_CPU if args.pin else None)
    load_cpu = LOAD_CPU if args.pin else None
    try:
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        with tempfile.TemporaryDirectory(prefix="dokobit-upload-bench-") as tmp:
            files = {mb: make_pdf(Path(tmp) / f"{mb}.pdf", mb) for mb in sizes}
            small = make_pdf(Path(tmp) / "small.pdf", 1)
            result = asyncio.run(throughput(base, files[args.mb], args.repeats, args.peer_block))
            wanted = {int(mb) for mb in args.mem_mb.split(",") if mb}
            mem = memory(base, {mb: p for mb, p in files.items() if mb in wanted}, small, load_cpu)
        work = c_work(args.peer_block)
        report(result, work, mem, args)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
