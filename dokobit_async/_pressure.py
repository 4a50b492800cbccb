"""Back-pressure: the receiver holds its answers while dispatch is behind them.

The receiver answers a postback once it is stored; the dispatcher runs its handlers
later. When postbacks come faster than the handlers finish, the events ready to run
pile up: in memory up to a bound, then in the inbox, and the time from an answer to
its handlers grows without end. Holding the answer of each new postback (it is
stored already: holding loses nothing) while more than ``high_water`` events are
ready and not started slows a sender that waits for its answers (a connection pool,
a closed loop) to the dispatch rate: one held answer goes per event finished, all of
them once dispatch is no longer behind, each at the latest after ``max_ack_hold``
seconds. A sender's retry of a held postback is a duplicate: it is answered at once.

It never holds while dispatch finishes nothing (a hung handler, an inbox that
cannot record outcomes): for ``max_ack_hold`` seconds without a finished event,
answers go out at once, so a stuck handler never turns answers into timeouts.
See docs/architecture.md#back-pressure.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ._policy import DispatchPolicy

__all__ = ["BackPressure"]


class BackPressure:
    """The answers held for one dispatcher; ``waiting`` is how many events are ready
    to run and not started (:attr:`Backlog.waiting`)."""

    def __init__(self, policy: DispatchPolicy):
        self._limit = policy.high_water
        self._max_hold = policy.max_ack_hold
        self._held: deque[tuple[asyncio.Future[None], Callable[[], bool]]] = deque()
        self._finished_at = float("-inf")  # when an event last finished (loop time)
        self.holds = 0  # answers held so far

    def start(self) -> None:
        """Dispatch begins: it counts as progress (nothing could finish before)."""
        self._finished_at = asyncio.get_running_loop().time()

    async def hold(self, waiting: int, gone: Callable[[], bool] = lambda: False) -> None:
        """Return once dispatch has room, or after ``max_ack_hold`` seconds; at once
        when it is not behind, or when nothing finished for ``max_ack_hold`` seconds
        (holding would slow the sender and speed up nothing). ``gone`` tells whether
        the sender hung up: its answer then takes no finished event's turn."""
        if self._limit is None or waiting <= self._limit or self._max_hold <= 0:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._finished_at >= self._max_hold:
            return
        held = loop.create_future()
        self._held.append((held, gone))
        self.holds += 1
        timer = loop.call_later(self._max_hold, _resolve, held)
        try:
            await held
        finally:
            timer.cancel()

    def close(self) -> None:
        """Shutting down: every held answer goes now, and none is held again."""
        self._limit = None
        for future, _ in self._held:
            _resolve(future)
        self._held.clear()

    def finished(self, waiting: int) -> None:
        """An event finished: every held answer goes if dispatch is no longer behind,
        else the oldest one (an answer per finished event)."""
        self._finished_at = asyncio.get_running_loop().time()
        behind = self._limit is not None and waiting > self._limit
        held = self._held
        while held:
            future, gone = held.popleft()
            if _resolve(future) and behind and not gone():
                return


def _resolve(future: asyncio.Future[None]) -> bool:
    """Complete ``future`` unless it is done (its request was cancelled, say); whether
    it was completed now."""
    if future.done():
        return False
    future.set_result(None)
    return True
