"""Group add for the Redis inbox: the ``add()`` calls that queue up while one batch is
on its way to Redis go together in the next one, a single script call.

Why: on one core, redis-py spends far more of the process's time on each command
(connection checkout, packing, a socket write, parsing, timeouts) than Redis spends
running it. A profile of 64 concurrent adds, one script call each, showed the load
process busy in redis-py's command path (~50 % of samples) at ~5,000 adds/s; one
script call for 64 events stores ~20,000/s on the same machine (a pipeline of 64
calls: ~11,000/s). As with the SQLite inbox's group commit there is no timer: a lone
add is sent at once, and only the adds that arrive while a batch is in flight wait
for the next one (as Redis with ``appendfsync always`` fsyncs once for every write
of an event-loop turn, the batch also shares one fsync).

An error fails every add of the batch (each gets its own ``InboxError``); some of
them may have been stored, which is safe: Dokobit sends the postback again and the
copy is a duplicate. The reverse, an add that returned but was not stored, cannot
happen: a batch's results come from the script's own answer.
"""

from __future__ import annotations

import asyncio
import builtins
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .exceptions import InboxError

__all__ = ["BATCH_MAX", "AddBatcher"]

BATCH_MAX = 256
"""Adds sent in one script call at most."""

Send = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]
"""Sends one batch's arguments (each add's, one after the other); the results, one
per add, in order."""


class AddBatcher:
    """Queues adds and sends them in batches, one batch in flight at a time."""

    def __init__(self, send: Send, *, batch_max: int = BATCH_MAX):
        self._send = send
        self._batch_max = batch_max
        self._queue: deque[tuple[Sequence[Any], asyncio.Future[Any]]] = deque()
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, args: Sequence[Any]) -> Any:
        """Send ``args`` (one add's) with the next batch; its result, or the batch's
        error (an ``InboxError`` of its own)."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, waiter))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return await waiter

    async def drain(self) -> None:
        """Wait until nothing is queued nor on its way (for ``close()``)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        batch: builtins.list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self._batch_max:
                    args, waiter = self._queue.popleft()
                    if not waiter.done():  # (an add cancelled while it waited)
                        batch.append((args, waiter))
                if batch:
                    await self._settle(batch)
        except BaseException:  # cancelled (the loop is closing): nobody is left hanging
            for _, waiter in [*batch, *self._queue]:
                waiter.cancel()
            self._queue.clear()
            raise
        finally:
            self._flushing = None

    async def _settle(
        self, batch: builtins.list[tuple[Sequence[Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            results = builtins.list(await self._send([arg for args, _ in batch for arg in args]))
            if len(results) != len(batch):
                raise InboxError(f"{len(results)} results for {len(batch)} adds")
        except Exception as exc:
            for _, waiter in batch:
                if not waiter.done():
                    error = InboxError(str(exc))
                    error.__cause__ = exc
                    waiter.set_exception(error)
            return
        for (_, waiter), result in zip(batch, results, strict=True):  # (lengths checked)
            if not waiter.done():
                waiter.set_result(result)
