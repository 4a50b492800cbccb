"""An emulator serving from its own event loop in a background thread.

Used where the test's own loop must not share time with the server: a synchronous
``main()`` under test (the CLI), or measuring when requests really arrive (a server in
the test's loop only sees a request when the client's work yields to it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from dokobit_async.testing import Emulator, EmulatorConfig

T = TypeVar("T")
WAIT = 15.0


class EmulatorThread:
    """An :class:`Emulator` serving from its own event loop in a daemon thread."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.emulator = Emulator(config=config or EmulatorConfig(time_scale=0.0001))
        self.call(self.emulator.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the emulator's loop and wait (bounded) for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=WAIT)

    def close(self) -> None:
        """Stop the emulator, then its loop and thread."""
        try:
            self.call(self.emulator.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=WAIT)
            self.loop.close()

    def __enter__(self) -> EmulatorThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
