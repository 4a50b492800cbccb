"""Helpers shared by the receiver's fault and fuzz tests: serve a receiver on
127.0.0.1, build postbacks, wait (bounded) for a condition."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger
from dokobit_async.routing import Router

SECRET = b"receiver-faults-secret-0123456789"


async def start_receiver(
    router: Router | None, **options: Any
) -> tuple[PostbackReceiver, web.AppRunner, str]:
    """A receiver serving on 127.0.0.1 (random port, URL check on): ``(receiver,
    runner, postback_url)``. The caller stops it with ``runner.cleanup()``."""
    options.setdefault("secret", SECRET)
    receiver = PostbackReceiver(router, **options)
    runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return receiver, runner, receiver.postback_url(base)


def postback(token: str, action: str = "signing_created") -> bytes:
    """A valid JSON postback body for the signing ``token``."""
    return json.dumps({"action": action, "token": token}).encode()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 15.0, every: float = 0.01
) -> None:
    """Poll the async ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
