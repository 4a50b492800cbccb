"""Nothing a sender controls reaches a log line or the operator's terminal raw.

Postbacks whose ``action`` and ``token`` carry a newline (a forged log line), ESC and
OSC sequences (terminal control), bidi overrides (text shown reordered) and a 1 MiB
action go through a real receiver, a failing handler, the dead letters and the CLI's
``inbox list`` and ``inbox show``: every log record and every line printed is one line,
with those characters escaped and long values cut with a marker."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from _receiver_helpers import start_receiver, wait_until

from dokobit_async import DispatchPolicy
from dokobit_async._redact import printable, shown_token
from dokobit_async.cli import main
from dokobit_async.events import Event
from dokobit_async.inbox import SQLiteInbox
from dokobit_async.routing import Router

HOSTILE = {
    "newline": "signer_signed\ndokobit-async: ERROR: forged line",
    "esc": "signing_created\x1b[2J\x1b[31mred",
    "osc": "x\x1b]0;pwned title\x07\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\",
    "bidi": "signing_completed\u202efdp.exe\u2066isolate\u2069",
    "separators": "a\u2028b\u2029c\x85d\r\x00e",
    "huge": "A" * (1024 * 1024 - 100),
}
RAW = ["\n", "\r", "\x1b", "\x07", "\x00", "\x85", "\u202e", "\u2066", "\u2069", "\u2028"]
LINE_LIMIT = 2500  # the longest line: 2,000 characters of an error, with its context


def assert_clean(text: str, where: str) -> None:
    for char in RAW:
        assert char not in text, f"{char!r} raw in {where}: {text[:200]!r}"
    assert len(text) <= LINE_LIMIT, f"{len(text)} characters in one line of {where}"


def test_printable_escapes_controls_and_cuts_with_a_marker() -> None:
    """The pure function behind it all."""
    assert printable("signer_signed") == "signer_signed"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert printable("x\u202ey") == "x\\u202ey"
    assert printable("back\\slash") == "back\\\\slash"  # an escape cannot be forged
    assert printable("\U000e0001") == "\\U000e0001"  # a tag character (format)
    assert printable("é€😀 ok") == "é€😀 ok"  # printable text stays as it is
    cut = printable("A" * 1000, 10)
    assert cut == "A" * 10 + "…[+990 chars]"
    assert printable("\n" * 100, 8) == "\\x0a\\x0a…[+98 chars]"
    assert shown_token("\x1b[31mtoken") == "\\x1b[31mt..."  # six characters
    assert shown_token(None) == "-"


@pytest.mark.parametrize("field", ["action", "token"])
async def test_hostile_postbacks_leave_clean_log_lines_and_cli_output(
    field: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each hostile value in a postback's ``field``: stored (200), handled by a handler
    that fails with the value in its error until the event is dead, then listed and
    shown by the CLI. No log record and no printed line carries a raw control,
    separator or bidi character, or a line much longer than 2,000 characters."""
    router = Router()

    @router.on_any
    async def echo_and_fail(event: Event) -> None:
        raise RuntimeError(f"cannot handle {event.action!s} for {event.token!s}")

    db = tmp_path / "in.db"
    inbox = SQLiteInbox(db)
    policy = DispatchPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)
    with caplog.at_level(logging.DEBUG, logger="dokobit_async"):
        _, runner, url = await start_receiver(
            router, inbox=inbox, policy=policy, max_body_size=2 * 1024 * 1024
        )
        try:
            async with aiohttp.ClientSession() as session:
                for value in HOSTILE.values():
                    payload = {"action": "signer_signed", "token": "tok-1", "signer": "s"}
                    payload[field] = value
                    payload["signer"] = value[:20]  # distinct events
                    async with session.post(url, data=json.dumps(payload).encode()) as answer:
                        assert answer.status == 200, await answer.text()
            await wait_until(lambda: _all_dead(inbox, len(HOSTILE)), timeout=20)
        finally:
            await runner.cleanup()
    records = [r for r in caplog.records if r.name.startswith("dokobit_async")]
    assert any("dead-lettered" in r.getMessage() for r in records)
    for record in records:
        assert_clean(record.getMessage(), f"log record {record.name}")

    # the CLI runs its own event loop: from a thread here
    code = await asyncio.to_thread(main, ["inbox", "list", "--inbox", str(db)])
    out, err = capsys.readouterr()
    assert code == 0, err
    listed = out.splitlines()
    assert len(listed) == 1 + len(HOSTILE)  # a header and one line per event
    for line in listed:
        assert_clean(line, "inbox list")
    for seq in range(1, len(HOSTILE) + 1):
        assert await asyncio.to_thread(main, ["inbox", "show", str(seq), "--inbox", str(db)]) == 0
        out, _ = capsys.readouterr()
        assert "…[+" in out or seq != len(HOSTILE) or field != "action"  # the 1 MiB one
        for line in out.splitlines():
            assert_clean(line, f"inbox show {seq}")


async def _all_dead(inbox: SQLiteInbox, count: int) -> bool:
    return (await inbox.counts())["dead"] == count


def test_the_cli_log_filter_makes_any_record_one_clean_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What reaches the CLI's handler from aiohttp or asyncio (which may quote raw
    request bytes) is escaped and cut too: one line each."""
    from dokobit_async._cli.logs import log_to_stderr

    with log_to_stderr(verbose=False, secrets=[], serving=True):
        logging.getLogger("aiohttp.server").error(
            "Error handling request: bad line %r\n  next\x1b]0;x\x07 %s", "a\rb", "\u202e" * 5000
        )
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err[:500]
    assert_clean(lines[0], "the CLI's log line")
    assert "…[+" in lines[0]
