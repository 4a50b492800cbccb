"""``dokobit-async reconcile`` in a real subprocess, against the emulator, with a
SQLite inbox that also holds the tracked signings."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

from _receiver_helpers import wait_until
from test_cli_work import child
from test_reconcile import NOW_SCHEDULE, completed_signings

from dokobit_async import SQLiteInbox, SQLiteTracker, parse_postback
from dokobit_async.cli import main
from dokobit_async.testing import Emulator


async def run_cli(emu: Emulator, *argv: str) -> tuple[int, str]:
    """``python -m dokobit_async ARGV`` with the emulator's token in the environment:
    its exit status and everything it wrote."""
    env = {
        **os.environ,
        "DOKOBIT_ACCESS_TOKEN": emu.access_token,
        "DOKOBIT_BASE_URL": emu.base_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dokobit_async",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_reconcile_once_stores_the_missed_postbacks_into_the_inbox(
    tmp_path: Path,
) -> None:
    """The application tracks into the inbox's file; ``reconcile --once`` stores each
    completed signing's events once (marked as the reconciler's) and stops tracking
    them; a second run finds nothing to do. The token appears in no output."""
    db = tmp_path / "postbacks.db"
    async with Emulator() as emu:
        tracker = SQLiteTracker(db, schedule=NOW_SCHEDULE)
        created = await completed_signings(emu, tracker, 12)
        once = ["reconcile", "--inbox", str(db), "--once", "--share", "1"]
        code, out = await run_cli(emu, *once)
        assert code == 0, out
        assert "looked at 12 tracked signing(s)" in out
        code, again = await run_cli(emu, *once)
        assert code == 0, again
        assert "looked at 0 tracked signing(s)" in again
        assert emu.access_token not in out + again
    async with SQLiteInbox(db) as inbox:
        stored = await inbox.list(limit=100)
    assert Counter(e.action for e in stored) == Counter(
        {"signer_signed": 12, "signing_completed": 12}
    )
    assert {parse_postback(e.body).via for e in stored} == {"reconciler"}
    for signing in created:
        assert await tracker.get(signing.token) is None
    await tracker.close()


def test_a_share_outside_zero_to_one_is_a_usage_error() -> None:
    """``--share 0`` and ``--share 2`` are refused before anything runs (exit 2)."""
    for share in ("0", "2", "x"):
        assert main(["reconcile", "--inbox", "x.db", "--share", share]) == 2


async def test_listen_reconcile_runs_each_missed_postback_through_the_handlers_once(
    tmp_path: Path,
) -> None:
    """``listen --reconcile``: the listener's own reconciler finds the completed
    signings whose postbacks went nowhere, and its dispatcher runs the handler once
    per event, seen as the reconciler's."""
    (tmp_path / "reconciled_handlers.py").write_text(
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "@router.on_any\n"
        "async def handle(event):\n"
        f"    with open({str(tmp_path / 'handled.txt')!r}, 'a') as f:\n"
        "        f.write(f'{event.action} {event.token} {event.via}\\n')\n"
    )
    db = tmp_path / "postbacks.db"
    async with Emulator() as emu:
        tracker = SQLiteTracker(db, schedule=NOW_SCHEDULE)
        created = await completed_signings(emu, tracker, 3)
        argv = ["listen", "--router", "reconciled_handlers:router", "--inbox", str(db)]
        argv += ["--port", "0", "--no-confirm", "--reconcile", "--share", "1", "--idle", "0.1"]
        env = {"DOKOBIT_ACCESS_TOKEN": emu.access_token, "DOKOBIT_BASE_URL": emu.base_url}
        async with child(tmp_path, *argv, **env) as listener:
            handled = tmp_path / "handled.txt"

            async def all_handled() -> bool:
                return handled.exists() and len(handled.read_text().splitlines()) >= 6

            await wait_until(all_handled, timeout=60)
            assert await listener.stop() == 0
            assert emu.access_token not in listener.output()
    lines = sorted(handled.read_text().splitlines())
    assert lines == sorted(
        f"{action} {s.token} reconciler"
        for s in created
        for action in ("signer_signed", "signing_completed")
    )
