"""Postback delivery: JSON POSTs with the documented retry schedule, all recorded.

Dokobit expects a 2xx; otherwise it retries after 5 minutes, 1 hour and 24 hours
(``docs/wire-notes.md#postback-delivery``). The emulator multiplies those delays by ``time_scale``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .config import EmulatorConfig
from .records import PostbackAttempt
from .state import utcnow

__all__ = ["PostbackDispatcher"]


class PostbackDispatcher:
    """Sends postbacks as background tasks kept in a set, drained on :meth:`close`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self.attempts: list[PostbackAttempt] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._order: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        """Create the client session (inside the running loop)."""
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._config.postback_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)

    def send(self, url: str, payload: dict[str, Any], order_key: str) -> None:
        """Schedule the delivery of ``payload``; first attempts keep order per key."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload, order_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """How many deliveries are still running or waiting to retry."""
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no delivery is pending; :class:`TimeoutError` past ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{len(self._tasks)} postback deliveries still pending")
            await asyncio.wait(set(self._tasks), timeout=remaining)

    async def close(self) -> None:
        """Cancel pending deliveries, wait for them, close the session."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, url: str, payload: dict[str, Any], order_key: str) -> None:
        delays = self._config.postback_retry_delays
        lock = self._order.setdefault(order_key, asyncio.Lock())
        async with lock:
            ok = await self._attempt(url, payload, 1)
        for attempt, delay in enumerate(delays, start=2):
            if ok:
                return
            await asyncio.sleep(max(0.0, delay * self._config.time_scale))
            ok = await self._attempt(url, payload, attempt)

    async def _attempt(self, url: str, payload: dict[str, Any], attempt: int) -> bool:
        await self.open()
        assert self._session is not None
        status: int | None = None
        error: str | None = None
        started = utcnow()
        try:
            async with self._session.post(url, json=payload) as response:
                await response.read()
                status = response.status
        except asyncio.TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = PostbackAttempt(
            url=url, payload=payload, attempt=attempt, status=status, error=error, time=started
        )
        self.attempts.append(record)
        return record.ok
