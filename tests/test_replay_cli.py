"""``dokobit-async inbox replay`` and ``inbox export`` end to end: against a running
listener (a subprocess on loopback, its SQLite file), and on SQLite files and a real
Redis server alike. Every wait is bounded."""

from __future__ import annotations

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
