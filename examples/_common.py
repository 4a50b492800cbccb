"""Shared set-up of the examples: the real API when configured, the emulator otherwise.

Set ``DOKOBIT_BASE_URL`` and ``DOKOBIT_ACCESS_TOKEN`` to run an example against the
real Universal API (e.g. ``https://beta.dokobit.com`` with a developer token); with
neither set, it starts the emulator from ``dokobit_async.testing`` on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dokobit_async import DokobitClient
from dokobit_async.testing import Emulator


@asynccontextmanager
async def connect() -> AsyncIterator[tuple[DokobitClient, Emulator | None]]:
    """A client, and the emulator it talks to (``None`` against the real API)."""
    base_url = os.environ.get("DOKOBIT_BASE_URL")
    token = os.environ.get("DOKOBIT_ACCESS_TOKEN")
    if bool(base_url) != bool(token):
        raise SystemExit("set both DOKOBIT_BASE_URL and DOKOBIT_ACCESS_TOKEN, or neither")
    if base_url and token:
        async with DokobitClient(token, base_url=base_url) as client:
            yield client, None
        return
    async with Emulator() as emulator:
        print(f"(no DOKOBIT_BASE_URL set: using the local emulator at {emulator.base_url})")
        async with DokobitClient(emulator.access_token, base_url=emulator.base_url) as client:
            yield client, emulator
