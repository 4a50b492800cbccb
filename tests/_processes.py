"""Child processes started with asyncio, stopped without losing their exit status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


async def kill_and_reap(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    """SIGKILL ``proc`` unless it is already reaped, wait for it, return its returncode.

    Not ``proc.kill()``: that calls ``Popen.poll()`` first, whose ``waitpid`` can reap a
    child that has just died ahead of asyncio's child watcher; the watcher then finds
    no child and reports 255 instead of the real status (a CI failure of ours).
    ``os.kill`` on a dead but unreaped child is harmless.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    return await asyncio.wait_for(proc.wait(), timeout)
