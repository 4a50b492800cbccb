"""The internal signing flow in a real browser, against the same flow in plain HTTP.

``examples/internal_signing_app.py --emulate`` runs in a process of its own pinned to
one CPU (the app, its postback receiver and the emulator); the load runs on the other.

- **Browser**: headless Chromium (Debian's, through Playwright): on the app's page,
  the time from the click on "Sign the agreement" to "signed" on the return page: the
  signing is created, the emulator's signing page loads, Sign is clicked, the browser
  comes back to the app, and the page waits until the postback's handler has
  downloaded the signed file.
- **Peer, in the same run**: the same flow in plain HTTP requests (one aiohttp
  session, no browser): POST the form and follow to the signing page, POST Sign and
  follow back to the return page, then ask for news (``?wait=1``) and reload, as the
  page's script does, until it says "signed".

The two alternate, one of each per repeat, so that a slow spell of the shared
machine falls on both; each browser time is divided by the HTTP time next to it. It
prints each kind's median, min and max, the ratio's, the noise (the spread of the
peer's repeats), and one summary line last. Bounded: ``--repeats`` (default 25) and
``--timeout`` seconds per flow.

Usage: ``python benchmarks/browser_flow_bench.py [--repeats 25] [--timeout 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from _pinned import spread
from playwright.async_api import Page, async_playwright, expect

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))  # the tests' Chromium settings, one copy of them
from _chromium import CHROMIUM_FLAGS, chromium_path  # noqa: E402

APP = ROOT / "examples" / "internal_signing_app.py"
STATE = re.compile(r"id='state'>(\w+)<")
SIGNED = re.compile(r"^signed$")


@contextlib.asynccontextmanager
async def running_app(folder: Path, cpu: int | None) -> AsyncIterator[str]:
    """The example app on the emulator, pinned to ``cpu``; yields its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    with (folder / "app.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, str(APP), "--emulate", "--port", "0"),
            *("--inbox", str(folder / "postbacks.db")),
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    try:
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})  # before it starts its threads
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line.startswith("serving "):
            raise RuntimeError(f"the app did not start: {line!r}")
        yield line.split()[1]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def browser_flow(page: Page, url: str) -> float:
    """Seconds from the click on "Sign the agreement" to "signed" on the page."""
    await page.goto(url)
    started = time.perf_counter()
    await page.get_by_role("button", name="Sign the agreement").click()
    await page.get_by_role("button", name="Sign", exact=True).click()
    # (a locator's wait notices at once; expect() would poll at 100, 250, 500 ms...)
    await page.locator("#state", has_text=SIGNED).wait_for()
    return time.perf_counter() - started


async def http_flow(session: aiohttp.ClientSession, url: str) -> float:
    """The same flow in plain requests: seconds from the form's POST to "signed"."""
    async with session.get(url) as response:
        await response.read()
    started = time.perf_counter()
    async with session.post(f"{url}sign") as signing_page:  # follows the 303
        signing_url = str(signing_page.url)
        await signing_page.read()
    async with session.post(signing_url, data={"action": "sign"}) as back:
        return_url = str(back.url)
        html = await back.text()
    while (found := STATE.search(html)) is not None and found[1] == "waiting":
        async with session.get(return_url, params={"wait": "1"}) as news:
            await news.read()
        async with session.get(return_url) as reloaded:
            html = await reloaded.text()
    if found is None or found[1] != "signed":
        raise RuntimeError(f"the HTTP flow ended on {html[:200]!r}")
    return time.perf_counter() - started


async def measure(repeats: int, timeout: float) -> tuple[list[float], list[float], str]:
    """``(browser seconds, HTTP seconds, placement)``, one of each per repeat."""
    cpus = sorted(os.sched_getaffinity(0))
    app_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if load_cpu is None:
        placement = "warning: fewer than 2 CPUs; the app and the load are not pinned"
    else:
        placement = f"app pinned to CPU {app_cpu}, browser and HTTP load to CPU {load_cpu}"
    with tempfile.TemporaryDirectory(prefix="browser-flow-bench-") as tmp:
        async with running_app(Path(tmp), app_cpu) as url, async_playwright() as playwright:
            if load_cpu is not None:  # Chromium inherits this process's CPU
                os.sched_setaffinity(0, {load_cpu})
            context = await playwright.chromium.launch_persistent_context(
                Path(tmp) / "profile",
                executable_path=chromium_path(),
                headless=True,
                args=list(CHROMIUM_FLAGS),
            )
            context.set_default_timeout(timeout * 1000)
            expect.set_options(timeout=timeout * 1000)
            page = context.pages[0] if context.pages else await context.new_page()
            browser: list[float] = []
            plain: list[float] = []
            async with aiohttp.ClientSession() as session:
                await browser_flow(page, url)  # warm up both paths
                await asyncio.wait_for(http_flow(session, url), timeout)
                for repeat in range(repeats):
                    # alternate which goes first, so neither always follows the other
                    if repeat % 2:
                        plain.append(await asyncio.wait_for(http_flow(session, url), timeout))
                        browser.append(await browser_flow(page, url))
                    else:
                        browser.append(await browser_flow(page, url))
                        plain.append(await asyncio.wait_for(http_flow(session, url), timeout))
            await context.close()
    return browser, plain, placement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25, help="flows of each kind")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per flow, at most")
    args = parser.parse_args()
    chromium = chromium_path()
    if shutil.which(chromium) is None:
        raise SystemExit(f"no Chromium at {chromium}: apt-get install chromium")
    browser, plain, placement = asyncio.run(measure(args.repeats, args.timeout))
    ratios = [b / p for b, p in zip(browser, plain, strict=True)]
    noise = (max(plain) - min(plain)) / statistics.median(plain)
    print(placement)
    print(f"repeats: {args.repeats} of each kind, alternating")
    print(f"browser flow (click to 'signed'), ms: {spread([b * 1000 for b in browser], '{:.1f}')}")
    print(f"plain HTTP flow (peer), ms:          {spread([p * 1000 for p in plain], '{:.1f}')}")
    print(f"ratio browser / HTTP, per repeat:    x{spread(ratios, '{:.2f}')}")
    print(f"noise: the peer's repeats spread {noise:.0%} of their median")
    print(
        f"summary: the browser flow takes {statistics.median(browser) * 1000:.0f} ms from the "
        f"click to 'signed', x{statistics.median(ratios):.2f} ({min(ratios):.2f}-"
        f"{max(ratios):.2f}) the plain-HTTP flow of the same run (noise {noise:.0%})"
    )


if __name__ == "__main__":
    main()
