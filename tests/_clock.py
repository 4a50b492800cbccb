"""A controlled event-loop clock for tests of time-based behaviour."""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _SteppingSelector:
    """Wraps the real selector: instead of sleeping until the next timer, it moves
    the loop's virtual clock forward to the next whole second past it."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualClockLoop):
        self._real = real
        self._loop = loop
        self._spins = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual clock: nothing scheduled and nothing ready (deadlock)")
        if timeout > 0:
            self._loop.now = math.ceil(self._loop.now + timeout)
            self._spins = 0
        else:
            self._spins += 1
            if self._spins > 1_000_000:
                raise RuntimeError("virtual clock: the loop spins without time passing")
        return self._real.select(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is an integer-stepped virtual clock.

    Timers fire in order without real waiting; the clock only ever holds whole
    seconds (a limiter that waits for the float residue of its level can spin forever
    under a clock that advances by it: aiolimiter, our limiter's former base, did).
    """

    # set by SelectorEventLoop.__init__; typeshed does not declare it
    _selector: selectors.BaseSelector

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        # the stepping selector stands in for the real one (it delegates the rest)
        self._selector = cast(selectors.BaseSelector, _SteppingSelector(self._selector, self))

    def time(self) -> float:
        return float(self.now)


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh :class:`VirtualClockLoop`."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
