"""``dokobit-async inbox replay`` and ``inbox export`` end to end: against a running
listener (a subprocess on loopback, its SQLite file), and on SQLite files and a real
Redis server alike. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_cli_receiver import (
    Listener,
    _listener_env,
    assert_one_error_line,
    fill,
    post,
    run,
    states,
    wait_until,
)
from test_inbox_traceparent import schema_of
from test_redact import spellings
from test_replay import older_file

from dokobit_async._cli.inboxes import inbox_location, opened

TOKEN = "cli-access-token-0123456789"


@pytest.fixture
def replay_handlers(tmp_path: Path) -> str:
    """A router module in tmp_path with two handlers, email and audit, that append
    ``<name> <action> <event.replay>`` to handled.txt."""
    name = f"replay_handlers_{uuid.uuid4().hex[:8]}"
    log = tmp_path / "handled.txt"
    (tmp_path / f"{name}.py").write_text(
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "def note(name):\n"
        "    async def handler(event):\n"
        f"        with open({str(log)!r}, 'a') as f:\n"
        "            f.write(f'{name} {event.action} {event.replay}\\n')\n"
        "    return handler\n"
        "router.add(None, note('email'), name='email')\n"
        "router.add(None, note('audit'), name='audit')\n"
    )
    return name


def handled(tmp_path: Path) -> list[str]:
    path = tmp_path / "handled.txt"
    return sorted(path.read_text().splitlines()) if path.exists() else []


def test_replay_and_export_against_a_running_listener(
    tmp_path: Path,
    replay_handlers: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A postback handled by a running listener is replayed from the CLI: to every
    handler (event.replay 1), then by time to email only (replay 2); ``show`` tells
    the replays; ``export -o FILE`` writes the event with its replays, and neither the
    access token its body carried (``$DOKOBIT_ACCESS_TOKEN``) nor the listener's
    postback secret or URL segment."""
    db = str(tmp_path / "pb.db")
    listener = Listener(tmp_path, replay_handlers, env=_listener_env(tmp_path))
    try:
        body = json.dumps(
            {"action": "signer_signed", "token": "sig123456789", "note": f"?access_token={TOKEN}"}
        )
        assert post(listener.local_url(listener.url), body) == 200
        wait_until(lambda: len(handled(tmp_path)) == 2, "the first delivery")
        code, out, err = run(capsys, "inbox", "replay", "1", "--inbox", db)
        assert (code, out, err) == (0, "1 event replayed (every handler)\n", "")
        wait_until(lambda: len(handled(tmp_path)) == 4, "the replay to both handlers")
        since = datetime.fromtimestamp(time.time() - 3600, tz=timezone.utc).isoformat()
        code, out, _ = run(
            capsys, "inbox", "replay", "--since", since, "--handler", "email", "--inbox", db
        )
        assert (code, out) == (0, "1 event replayed (handler email only)\n")
        wait_until(lambda: len(handled(tmp_path)) == 5, "the replay to email")
        wait_until(lambda: set(states(db).values()) == {"done"}, "done again")
    finally:
        listener.stop()
        listener.kill()
    assert handled(tmp_path) == [
        "audit signer_signed 0",
        "audit signer_signed 1",
        "email signer_signed 0",
        "email signer_signed 1",
        "email signer_signed 2",
    ]
    code, out, _ = run(capsys, "inbox", "show", "1", "--inbox", db)
    assert "replays:      2 (the last for email only)" in out
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", TOKEN)
    exported = tmp_path / "events.jsonl"
    code, out, err = run(capsys, "inbox", "export", "-o", str(exported), "--inbox", db)
    assert (code, out, err) == (0, "", "1 event exported\n")
    text = exported.read_text()
    (record,) = [json.loads(line) for line in text.splitlines()]
    assert (record["state"], record["replays"], record["replay_handler"]) == ("done", 2, "email")
    assert record["handlers_done"] == ["audit", "email"]
    assert record["body"]["note"] == "?access_token=***"
    secret = (tmp_path / "pb.db.secret").read_text().strip()
    for hidden in (TOKEN, secret, listener.url.rsplit("/", 1)[-1]):
        assert hidden not in text


@pytest.fixture(params=["path", "redis"])
def inbox_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An ``--inbox``: an SQLite file's path, or a real Redis server's URL."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return str(tmp_path / "in.db")


def test_replay_chooses_by_id_time_and_action_on_sqlite_and_redis(
    capsys: pytest.CaptureFixture[str], inbox_at: str
) -> None:
    """IDs (seq number or id prefix), --since and --until (ISO 8601 or unix seconds)
    and --action choose what is replayed; only done events move; without IDs or a
    condition, or with a time that is no time, it is a one-line usage error."""
    fill(
        inbox_at,
        [
            ("aaaa1111", "done", 1000.0),
            ("bbbb2222", "done", 2000.0),
            ("cccc3333", "dead", 2000.0),
            ("dddd4444", "done", 3000.0),
            ("eeee5555", "pending", 3000.0),
        ],
    )
    inbox = ("--inbox", inbox_at)
    code, out, err = run(capsys, "inbox", "replay", *inbox)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert "--since 0 replays every done event" in err
    for bad in ("yesterday", "nan", "2030-13-01"):
        code, _, err = run(capsys, "inbox", "replay", "--since", bad, *inbox)
        assert code == 2
        assert "not a time" in err
    code, out, _ = run(capsys, "inbox", "replay", "cccc", "eeee5555", *inbox)
    assert (code, out) == (0, "0 events replayed (every handler)\n")
    code, out, _ = run(capsys, "inbox", "replay", "1", "--until", "1500", *inbox)
    assert (code, out) == (0, "1 event replayed (every handler)\n")
    iso = datetime.fromtimestamp(2000, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    code, out, _ = run(
        capsys, "inbox", "replay", "--since", iso, "--action", "signing_completed", *inbox
    )
    assert (code, out) == (0, "0 events replayed (every handler)\n")
    code, out, _ = run(
        capsys, "inbox", "replay", "--since", iso, "--action", "signer_signed", *inbox
    )
    assert (code, out) == (0, "2 events replayed (every handler)\n")
    assert states(inbox_at) == {
        "aaaa1111": "pending",
        "bbbb2222": "pending",
        "cccc3333": "dead",
        "dddd4444": "pending",
        "eeee5555": "pending",
    }


def test_export_writes_json_lines_to_stdout_or_a_file(
    capsys: pytest.CaptureFixture[str], inbox_at: str, tmp_path: Path
) -> None:
    """``export`` writes one JSON object per event to stdout (``-o -``, the default) or
    to a file, chosen by --state, --since, --until and --action, the count on stderr;
    a file that cannot be written is a one-line usage error."""
    fill(inbox_at, [("aaaa1111", "done", 1000.0), ("bbbb2222", "dead", 2000.0)])
    inbox = ("--inbox", inbox_at)
    code, out, err = run(capsys, "inbox", "export", *inbox)
    assert (code, err) == (0, "2 events exported\n")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["state"], r["seq"]) for r in records] == [
        ("aaaa1111", "done", 1),
        ("bbbb2222", "dead", 2),
    ]
    assert records[1]["last_error"] == "boom: handler failed"
    assert records[0]["body"] == {"action": "signer_signed", "token": "T1abcdef"}
    code, out, err = run(capsys, "inbox", "export", "--format", "jsonl", "--state", "dead", *inbox)
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["bbbb2222"]
    code, out, err = run(capsys, "inbox", "export", "--since", "1500", "-o", "-", *inbox)
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["bbbb2222"]
    target = tmp_path / "out.jsonl"
    code, out, err = run(
        capsys,
        "inbox",
        "export",
        "--until",
        "1500",
        "--action",
        "signer_signed",
        "-o",
        str(target),
        *inbox,
    )
    assert (code, out, err) == (0, "", "1 event exported\n")
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == ["aaaa1111"]
    code, out, err = run(capsys, "inbox", "export", "-o", str(tmp_path / "no" / "x"), *inbox)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert "cannot write" in err


PLANTED_TOKEN = "planted/token+0123456789ab"  # ('/' and '+': every spelling differs)
PLANTED_SECRET = "planted-postback-secret-0123456789"


def plant(where: str) -> None:
    """A dead event whose body holds the access token and the postback secret in
    every spelling (one per line of ``show``), bare (no ``access_token=`` before
    them, which the library masks whatever it is), and whose last error quotes both."""
    shown = [s for secret in (PLANTED_TOKEN, PLANTED_SECRET) for s in spellings(secret).values()]

    async def go() -> None:
        async with opened(inbox_location(where)) as box:
            await box.add(
                id="planted1",
                signing_token="sig-planted",
                action="signer_signed",
                body=json.dumps({"notes": shown}).encode(),
                content_type="application/json",
                received_at=1000.0,
            )
            error = f"{PLANTED_TOKEN} {PLANTED_SECRET}: handler failed"
            await box.record_failure("planted1", error=error, next_attempt_at=0)
            await box.set_state("planted1", "dead")

    asyncio.run(go())


def test_export_show_and_list_mask_a_planted_token_and_postback_secret(
    capsys: pytest.CaptureFixture[str], inbox_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access token (``$DOKOBIT_ACCESS_TOKEN``) and the postback secret
    (``$DOKOBIT_POSTBACK_SECRET``) planted in a stored body and last error are in no
    spelling in the output of ``inbox export``, ``show`` and ``list``. Without the
    variables the same commands show them (the plant reaches the output: the check
    can fail)."""
    plant(inbox_at)
    commands = [
        ("export", "--inbox", inbox_at),
        ("show", "planted1", "--inbox", inbox_at),
        ("list", "--inbox", inbox_at),
    ]
    for name in ("DOKOBIT_ACCESS_TOKEN", "DOKOBIT_POSTBACK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for command in commands:
        code, out, _ = run(capsys, "inbox", *command)
        assert code == 0
        assert PLANTED_TOKEN in out.replace("\\/", "/"), command[0]  # (JSON may escape /)
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", PLANTED_TOKEN)
    monkeypatch.setenv("DOKOBIT_POSTBACK_SECRET", PLANTED_SECRET)
    for command in commands:
        code, out, err = run(capsys, "inbox", *command)
        assert code == 0
        assert "***" in out, command[0]
        for secret in (PLANTED_TOKEN, PLANTED_SECRET):
            for name, spelled in spellings(secret).items():
                assert spelled not in out + err, (command[0], secret[:8], name)


@pytest.mark.parametrize("version", [1, 2])
def test_inbox_commands_refuse_an_older_schema_and_leave_the_file_as_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, version: int
) -> None:
    """``inbox list|show|export|replay`` on a file of an older schema (which an older
    listener may still serve) do not upgrade it: a one-line error that says to upgrade
    the listener first, and the file keeps its version and columns. A listener's
    open upgrades it (test_replay.py), after which ``inbox list`` reads it."""
    path = older_file(tmp_path / f"v{version}.db", version)
    before = schema_of(path)
    for command in (("list",), ("show", "old"), ("export",), ("replay", "old")):
        code, out, err = run(capsys, "inbox", *command, "--inbox", str(path))
        assert (code, out) == (1, ""), command
        assert_one_error_line(err)
        assert f"schema version {version}, older than" in err
        assert "upgrade and restart the listener that serves it first" in err
    assert schema_of(path) == before
    assert before[0] == version

    async def as_the_listener_opens_it() -> None:
        async with opened(inbox_location(str(path))):
            pass

    asyncio.run(as_the_listener_opens_it())
    code, out, _ = run(capsys, "inbox", "list", "--inbox", str(path))
    assert code == 0
    assert "old" in out


def test_inbox_commands_refuse_a_database_that_is_not_an_inbox(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An SQLite file with no schema of ours (another program's database, an empty
    file) is refused as no inbox, and no table is created in it."""
    path = tmp_path / "other.db"
    path.write_bytes(b"")
    code, out, err = run(capsys, "inbox", "list", "--inbox", str(path))
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert "is not an inbox" in err
    assert schema_of(path) == (0, [])
