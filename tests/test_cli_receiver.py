"""``dokobit-async listen``, ``inbox`` and ``demo`` over real loopback sockets and
real SQLite files.

``main()`` runs its own event loop, so these tests are sync. The listener runs in a
subprocess (it installs signal handlers and serves until SIGTERM); ``inbox`` runs
in-process against the same database file meanwhile. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from _redis import free_port

from dokobit_async._cli.inboxes import inbox_location, opened
from dokobit_async._cli.output import CliError
from dokobit_async._cli.secrets_source import postback_secrets
from dokobit_async.cli import main
from dokobit_async.events import verify_postback_secret
from dokobit_async.testing import postback_url

WAIT = 15.0  # seconds: the bound on every wait in this module
SIGNED = json.dumps({"action": "signer_signed", "token": "tok123456789", "signer": "s1"})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dokobit-async: error: ")
    assert "Traceback" not in err


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    return {**env, **extra}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DOKOBIT_* variables; the working directory is ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith("DOKOBIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def post(url: str, body: str = SIGNED) -> int:
    assert url.startswith("http://127.0.0.1:")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body.encode(), headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fill(where: Path | str, events: list[tuple[str, str, float]]) -> None:
    """Store events ``(id, state, received_at)`` directly in the inbox that ``--inbox
    where`` names (a path, an SQLite URL or a Redis URL)."""

    async def go() -> None:
        async with opened(inbox_location(str(where))) as box:
            for number, (event_id, state, received_at) in enumerate(events, 1):
                body = json.dumps({"action": "signer_signed", "token": f"T{number}abcdef"})
                await box.add(
                    id=event_id,
                    signing_token=f"T{number}abcdef",
                    action="signer_signed",
                    body=body.encode(),
                    content_type="application/json",
                    received_at=received_at,
                )
                if state == "dead":
                    await box.record_failure(
                        event_id, error="boom: handler failed", next_attempt_at=0
                    )
                if state != "pending":
                    await box.set_state(event_id, state)  # type: ignore[arg-type]

    asyncio.run(go())


def states(where: Path | str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        async with opened(inbox_location(str(where))) as box:
            return {e.id: e.state for e in await box.list(limit=1000)}

    return asyncio.run(go())


# ------------------------------------------------------------------ demo


def test_demo_without_arguments_runs_a_whole_signing_offline(
    capsys: pytest.CaptureFixture[str], offline: Path
) -> None:
    """``demo`` with no account: each postback is shown as a handler gets it, the
    signed PDF is saved to ./signed-demo.pdf."""
    code, out, err = run(capsys, "demo")
    assert (code, err) == (0, "")
    handled = re.findall(r"postback handled: (\w+)\s+token (\w+)\.\.\.", out)
    assert [action for action, _ in handled] == [
        "signing_created",
        "signer_signed",
        "signer_signed",
        "signing_completed",
    ]
    assert len({token for _, token in handled}) == 1
    assert (offline / "signed-demo.pdf").read_bytes().startswith(b"%PDF")
    assert re.search(r"done: 2 signers, 4 postbacks handled, .* KiB signed file", out)


def test_demo_in_a_subprocess_with_out_and_more_signers(tmp_path: Path) -> None:
    """``python -m dokobit_async demo`` exits 0 in bounded time; ``--email`` picks the
    (emulated) signers and ``--out`` the file."""
    (tmp_path / "d").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "dokobit_async", "demo", "--out", "d/s.pdf"]
        + [arg for n in range(3) for arg in ("--email", f"p{n}@example.com")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("postback handled: signer_signed") == 3
    assert "postback handled: signing_completed" in done.stdout
    assert "p2@example.com signed" in done.stdout
    assert (tmp_path / "d" / "s.pdf").read_bytes().startswith(b"%PDF")


def test_demo_real_api_options_are_checked_first(
    capsys: pytest.CaptureFixture[str], offline: Path
) -> None:
    """The real-API flow needs --public-url and --email; --public-url alone is a
    usage error (the emulator run needs none). Nothing is contacted."""
    code, _, err = run(capsys, "demo", "--base-url", "http://127.0.0.1:9", "--token", "t0k")
    assert code == 2
    assert_one_error_line(err)
    assert "--public-url" in err
    code, _, err = run(capsys, "demo", "--public-url", "https://example.com")
    assert code == 2
    assert_one_error_line(err)
    code, _, err = run(capsys, "demo", "--out", "no/such/dir/x.pdf")
    assert code == 2
    assert_one_error_line(err)
    assert "no directory no/such/dir" in err


# ------------------------------------------------------------------ listen


def _pump(stream: IO[str], into: list[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        into.append(line)
        lines.put(line.rstrip("\n"))


class Listener:
    """``python -m dokobit_async listen`` in a subprocess, its output read in threads."""

    def __init__(
        self, tmp_path: Path, module: str | None, *extra: str, env: dict[str, str], **popen: Any
    ):
        router = ("--router", f"{module}:router") if module else ()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "dokobit_async", "listen"),
                *(*router, "--port", "0"),
                *("--inbox", str(tmp_path / "pb.db"), *extra),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
            **popen,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.out: list[str] = []
        self.err: list[str] = []
        out_lines: queue.Queue[str] = queue.Queue()
        err_lines: queue.Queue[str] = queue.Queue()
        self._threads = [
            threading.Thread(target=_pump, args=(self.proc.stdout, self.out, out_lines)),
            threading.Thread(target=_pump, args=(self.proc.stderr, self.err, err_lines)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        first = out_lines.get(timeout=WAIT)
        assert first.startswith("postback URL: "), first
        self.url = first.removeprefix("postback URL: ")
        while True:
            line = err_lines.get(timeout=WAIT)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.local = found[1]
                break

    def local_url(self, url: str) -> str:
        """``url``'s postback path on this listener's local address."""
        return self.local + "/dokobit/postback/" + url.rsplit("/", 1)[-1]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=WAIT)
        for thread in self._threads:
            thread.join(timeout=WAIT)
        return code, "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def handlers_module(tmp_path: Path) -> Iterator[str]:
    """A router module in tmp_path whose handler appends each action to handled.txt."""
    name = f"rx_handlers_{uuid.uuid4().hex[:8]}"
    log = tmp_path / "handled.txt"
    (tmp_path / f"{name}.py").write_text(
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "@router.on_any\n"
        "async def note(event):\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(event.action + '\\n')\n"
        "not_a_router = 42\n"
        "def broken():\n"
        "    pass\n"
    )
    yield name
    sys.modules.pop(name, None)


def _listener_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return clean_env(PYTHONPATH=path, **extra)


def test_listen_serves_persists_its_secret_and_stops_on_sigterm(
    tmp_path: Path, handlers_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The listener prints a URL on --public-url; a postback to it is stored (200) and
    handled, a wrong MAC gets 401; ``inbox list`` sees the event while it runs;
    SIGTERM stops it with 0; after a restart on the same inbox the old URL still
    verifies (the generated secret is kept in pb.db.secret, mode 0600, never shown)."""
    env = _listener_env(tmp_path)
    public = ("--public-url", "https://hooks.example.com/")
    listener = Listener(tmp_path, handlers_module, *public, env=env)
    try:
        assert listener.url.startswith("https://hooks.example.com/dokobit/postback/")
        old_url = listener.local_url(listener.url)
        assert post(old_url) == 200
        segment = old_url.rsplit("/", 1)[-1]
        forged = old_url[:-1] + ("0" if segment[-1] != "0" else "1")
        assert post(forged) == 401
        log = tmp_path / "handled.txt"
        wait_until(lambda: log.exists() and log.read_text() == "signer_signed\n", "the handler")

        listed: list[tuple[int, str, str]] = []

        def recorded() -> bool:  # the outcome is written after the handler returns
            listed.append(run(capsys, "inbox", "list", "--inbox", str(tmp_path / "pb.db")))
            return "pending" not in listed[-1][1]

        wait_until(recorded, "the handler's outcome in the inbox")
        code, out, err = listed[-1]
        assert (code, err) == (0, "")
        rows = out.splitlines()
        assert rows[0].split()[:4] == ["SEQ", "ID", "STATE", "ACTION"]
        assert len(rows) == 2
        assert rows[1].split()[2:5] == ["done", "signer_signed", "tok123..."]

        code, out, err = listener.stop()
        assert code == 0, err
        assert "listener stopped" in err
        assert "Traceback" not in err
    finally:
        listener.kill()
    secret_file = tmp_path / "pb.db.secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert "generated a postback secret" in err
    assert secret not in out + err

    listener = Listener(tmp_path, handlers_module, *public, env=env)
    try:
        again = listener.local_url(old_url)
        assert again != old_url  # a new port
        assert post(again, SIGNED.replace("s1", "s2")) == 200
        wait_until(lambda: log.read_text().count("signer_signed") == 2, "the second event")
        code, out, err = listener.stop(signal.SIGINT)
        assert code == 0, err
    finally:
        listener.kill()
    assert "using the postback secret kept in" in err
    assert secret not in out + err


def test_listen_takes_the_secret_from_the_named_variable(
    tmp_path: Path, handlers_module: str
) -> None:
    """``--secret-env`` names the variable; its value is never printed and no secret
    file is made."""
    secret = "env-secret-" + uuid.uuid4().hex
    env = _listener_env(tmp_path, MY_POSTBACK_SECRET=secret)
    listener = Listener(tmp_path, handlers_module, "--secret-env", "MY_POSTBACK_SECRET", env=env)
    try:
        assert post(listener.local_url(listener.url)) == 200
        code, out, err = listener.stop()
    finally:
        listener.kill()
    assert code == 0
    assert secret not in out + err
    assert not (tmp_path / "pb.db.secret").exists()
    assert "is not set" not in err


OLD_SECRET = "Kq3vW/Zz8pQ+Rt5mJ=Yx2nL%Hb7cX-old"
NEW_SECRET = "Ab9Dk/Gh4Jm+Np6Qr=St8Uv%Wx5Yz-new"


def assert_no_secret_in(shown: str, *secrets: str) -> None:
    """Nothing of ``secrets`` in ``shown``, in any spelling: no run of 4+ of their
    letters and digits (what raw, percent- or JSON-escaped forms all keep)."""
    for secret in secrets:
        for fragment in re.findall(r"[A-Za-z0-9]{4,}", secret):
            assert fragment not in shown, f"{fragment!r} of a secret is shown"


def segment_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# a refusal must come before the listener serves; should it not, binding this (TEST-NET)
# address fails at once instead of serving in-process until the test times out
UNSERVABLE = ("--host", "192.0.2.1", "--port", "0")


def test_listen_rotates_the_secret_through_a_secret_file(
    tmp_path: Path, handlers_module: str
) -> None:
    """``--secret-file``, three runs on one inbox: with ``[old]`` it mints a URL; with
    ``[new, old]`` (two lines, a comment, a blank line) that URL still gets 200 and
    the URL it prints is minted with the new secret; with ``[new]`` the old URL gets
    401 and the new one 200. It says how many secrets it holds, and shows none."""
    secrets_file = tmp_path / "postback.secrets"
    shown: list[str] = []

    def serve(text: str, *posts: tuple[str, str]) -> tuple[str, list[int]]:
        secrets_file.write_text(text)
        secrets_file.chmod(0o600)
        options = ("--secret-file", str(secrets_file))
        listener = Listener(tmp_path, handlers_module, *options, env=_listener_env(tmp_path))
        try:
            body = SIGNED.replace
            answers = [post(listener.local_url(url), body("s1", who)) for url, who in posts]
            code, out, err = listener.stop()
        finally:
            listener.kill()
        assert code == 0, err
        shown.append(out + err)
        return listener.url, answers

    old_url, _ = serve(f"{OLD_SECRET}\n")
    assert "postback secrets" not in shown[-1]  # one: nothing to say
    overlap_url, answers = serve(f"# new first\n{NEW_SECRET}\n\n{OLD_SECRET}\n", (old_url, "s2"))
    assert answers == [200]
    assert "2 postback secrets: the first mints new URLs, any verifies" in shown[-1]
    assert verify_postback_secret(NEW_SECRET.encode(), segment_of(overlap_url))
    assert not verify_postback_secret(OLD_SECRET.encode(), segment_of(overlap_url))
    _, answers = serve(f"{NEW_SECRET}\n", (old_url, "s3"), (overlap_url, "s4"))
    assert answers == [401, 200]
    assert len(states(tmp_path / "pb.db")) == 2  # s2 and s4: the refused one not stored
    assert not (tmp_path / "pb.db.secret").exists()
    assert_no_secret_in("".join(shown), OLD_SECRET, NEW_SECRET)


def test_listen_takes_several_secrets_from_the_variable(
    tmp_path: Path, handlers_module: str
) -> None:
    """The variable may hold several secrets, separated by commas or whitespace: a URL
    minted under any of them is accepted, under another refused; the printed URL is
    minted with the first."""
    third = "Wx5YzCe3FgIj7KlMn1Op=Qs7E"
    value = f" {NEW_SECRET},{OLD_SECRET}\n\t{third} "
    env = _listener_env(tmp_path, MY_POSTBACK_SECRETS=value)
    listener = Listener(tmp_path, handlers_module, "--secret-env", "MY_POSTBACK_SECRETS", env=env)
    try:
        answers = [
            post(listener.local_url(postback_url("https://x.example", secret)))
            for secret in (OLD_SECRET, third, "a-stranger-secret-0123456789")
        ]
        code, out, err = listener.stop()
    finally:
        listener.kill()
    assert code == 0, err
    assert answers == [200, 200, 401]
    assert verify_postback_secret(NEW_SECRET.encode(), segment_of(listener.url))
    assert "$MY_POSTBACK_SECRETS: 3 postback secrets" in err
    assert_no_secret_in(out + err, NEW_SECRET, OLD_SECRET, third)


def test_the_kept_secret_file_may_hold_several_lines_and_must_stay_private(
    tmp_path: Path,
) -> None:
    """``INBOX.secret`` (used when no variable is set) is read like ``--secret-file``:
    several lines rotate its secret, and once opened to others it is refused."""
    kept = tmp_path / "pb.db.secret"
    kept.write_text(f"{NEW_SECRET}\n# the one before\n{OLD_SECRET}\n")
    kept.chmod(0o600)
    where = inbox_location(str(tmp_path / "pb.db"))
    keys, told = postback_secrets(None, None, where)
    assert keys == (NEW_SECRET.encode(), OLD_SECRET.encode())
    assert told is not None
    assert told.endswith(
        f"kept in {kept} (2 postback secrets: the first mints new URLs, any verifies)"
    )
    kept.chmod(0o644)
    with pytest.raises(CliError, match=r"permissions 0644 are too open .*: chmod 600 ") as caught:
        postback_secrets(None, None, where)
    assert_no_secret_in(str(caught.value), NEW_SECRET, OLD_SECRET)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644], ids=lambda m: f"{m:04o}")
def test_listen_refuses_a_secret_file_others_may_read(
    capsys: pytest.CaptureFixture[str], offline: Path, handlers_module: str, mode: int
) -> None:
    """A secrets file its group or others may read or write is refused, as ssh refuses
    such a key: one line that says ``chmod 600``, exit 2, nothing created."""
    secrets_file = offline / "postback.secrets"
    secrets_file.write_text(f"{NEW_SECRET}\n{OLD_SECRET}\n")
    secrets_file.chmod(mode)
    router = f"{handlers_module}:router"
    argv = ("--router", router, "--secret-file", str(secrets_file), *UNSERVABLE)
    code, out, err = run(capsys, "listen", *argv)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert f"permissions {mode:04o} are too open" in err
    assert f"chmod 600 {secrets_file}" in err
    assert_no_secret_in(err, NEW_SECRET, OLD_SECRET)
    assert not list(offline.glob("postbacks.db*"))


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--secret", NEW_SECRET], {}, "--secret is not accepted"),
        ([f"--secret={NEW_SECRET}"], {}, "--secret is not accepted"),
        (["--secret-env", NEW_SECRET], {}, "the variable --secret-env names is not set"),
        (["--postback-secret", NEW_SECRET], {}, "unrecognized arguments: --postback-secret ***"),
        ([], {"DOKOBIT_POSTBACK_SECRET": f"{NEW_SECRET} tooShort12"}, "secret 2 must be at"),
        ([], {"DOKOBIT_POSTBACK_SECRET": f"{NEW_SECRET},{NEW_SECRET}"}, "secret 2 is the same"),
        (["--secret-env", "X", "--secret-file", "f"], {"X": NEW_SECRET}, "give the postback"),
    ],
)
def test_listen_secret_mistakes_are_one_line_that_shows_no_secret(
    capsys: pytest.CaptureFixture[str],
    offline: Path,
    handlers_module: str,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    says: str,
) -> None:
    """A secret on the command line, a variable that is not set, a secret too short or
    given twice: exit 2, one line naming the secret by its place, never its value."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    router = ("--router", f"{handlers_module}:router")
    code, out, err = run(capsys, "listen", *router, *argv, *UNSERVABLE)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert says in err
    assert_no_secret_in(err, NEW_SECRET, "tooShort12")
    assert not list(offline.glob("postbacks.db*"))


def test_events_retried_from_the_cli_reach_a_running_listener(
    tmp_path: Path, handlers_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``inbox retry`` while a listener runs: the retried event reaches its handlers."""
    db = tmp_path / "pb.db"
    fill(db, [("dead-1", "dead", time.time())])
    listener = Listener(tmp_path, handlers_module, env=_listener_env(tmp_path))
    log = tmp_path / "handled.txt"
    try:
        # a live postback handled means the start-up sweep is over and found nothing due
        assert post(listener.local_url(listener.url)) == 200
        wait_until(lambda: _lines(log) == 1, "the live postback's handler")
        code, out, _ = run(capsys, "inbox", "retry", "--inbox", str(db))
        assert (code, out) == (0, "1 event back to pending\n")
        try:
            # a dispatch takes milliseconds; 3 s keeps this expected failure short
            wait_until(lambda: _lines(log) == 2, "the retried event's handler", timeout=3.0)
        finally:
            listener.stop()
    finally:
        listener.kill()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:router", "no module named 'no_such_module_xyz'"),
        ("{mod}:missing", "has no attribute 'missing'"),
        ("{mod}:not_a_router", "not a dokobit_async Router but 'int'"),
        ("{mod}:broken", "not a dokobit_async Router but 'function'"),
        ("{mod}", "must look like module:attribute"),
        ("raises_on_import:router", "importing raises_on_import failed: RuntimeError: nope"),
    ],
)
def test_listen_router_problems_are_one_line_usage_errors(
    capsys: pytest.CaptureFixture[str],
    offline: Path,
    handlers_module: str,
    spec: str,
    message: str,
) -> None:
    """A --router that cannot be loaded is exit 2 with one line, before anything is
    created (no secret file, no inbox)."""
    (offline / "raises_on_import.py").write_text("raise RuntimeError('nope')\n")
    code, out, err = run(
        capsys, "listen", "--router", spec.format(mod=handlers_module), "--port", "0"
    )
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert message in err
    assert not list(offline.glob("postbacks.db*"))


def test_listen_reports_a_busy_port_and_a_bad_public_url(
    capsys: pytest.CaptureFixture[str], offline: Path, handlers_module: str
) -> None:
    """A taken port is one line, exit 1; a --public-url that is no http(s) URL is a
    usage error."""
    router = f"{handlers_module}:router"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        code, _, err = run(capsys, "listen", "--router", router, "--port", port)
    assert code == 1
    assert_one_error_line(err.splitlines()[-1] + "\n")
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "listen", "--router", router, "--public-url", "ftp://x")
    assert code == 2
    assert_one_error_line(err.splitlines()[-1] + "\n")


# ------------------------------------------------------------------ inbox


@pytest.fixture(params=["path", "sqlite-url", "redis"])
def inbox_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An ``--inbox`` value of each kind: a file path, ``sqlite:///`` with an absolute
    path, and a real Redis server's URL."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    path = tmp_path / "in.db"
    return str(path) if request.param == "path" else f"sqlite:///{path}"


def test_inbox_list_show_retry_purge(capsys: pytest.CaptureFixture[str], inbox_at: str) -> None:
    """``list`` filters by state and limit, ``show`` takes a seq number or an id
    prefix and prints the body as JSON, ``retry`` moves dead events back to pending
    (one or all), ``purge`` deletes done events (optionally only old ones): on an
    SQLite file and on Redis alike."""
    db = inbox_at
    now = time.time()
    fill(
        db,
        [
            ("aaaa1111", "dead", now),
            ("bbbb2222", "dead", now),
            ("cccc3333", "done", now - 7200),
            ("dddd4444", "done", now),
            ("eeee5555", "pending", now),
        ],
    )
    inbox = ("--inbox", db)

    code, out, _ = run(capsys, "inbox", "list", "--state", "dead", *inbox)
    assert code == 0
    rows = out.splitlines()[1:]
    assert [r.split()[:3] for r in rows] == [["1", "aaaa1111", "dead"], ["2", "bbbb2222", "dead"]]
    assert all(r.split()[5] == "1" and r.endswith("boom: handler failed") for r in rows)
    code, out, _ = run(capsys, "inbox", "list", "--limit", "1", *inbox)
    assert len(out.splitlines()) == 2
    code, out, _ = run(capsys, "inbox", "list", "--state", "unconfirmed", *inbox)
    assert (code, out) == (0, "no events in state unconfirmed\n")

    for ref in ("1", "aaaa", "aaaa1111"):
        code, out, err = run(capsys, "inbox", "show", ref, *inbox)
        assert (code, err) == (0, "")
        assert "id:           aaaa1111" in out
        assert "state:        dead" in out
        assert "last error:   boom: handler failed" in out
        assert '    "action": "signer_signed",' in out

    code, out, _ = run(capsys, "inbox", "retry", "2", *inbox)
    assert (code, out) == (0, "1 event back to pending\n")
    assert states(db)["bbbb2222"] == "pending"
    code, out, _ = run(capsys, "inbox", "retry", *inbox)
    assert (code, out) == (0, "1 event back to pending\n")
    assert states(db)["aaaa1111"] == "pending"

    code, out, _ = run(capsys, "inbox", "purge", "--older-than", "3600", *inbox)
    assert (code, out) == (0, "1 done event purged\n")
    assert "cccc3333" not in states(db)
    code, out, _ = run(capsys, "inbox", "purge", *inbox)  # keeps the last two days
    assert (code, out) == (0, "0 done events purged\n")
    code, out, _ = run(capsys, "inbox", "purge", "--older-than", "0", *inbox)
    assert (code, out) == (0, "1 done event purged\n")
    assert sorted(states(db).values()) == ["pending"] * 3


def test_inbox_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A missing inbox file is a usage error and is not created; a file that is no
    database, an unknown event and an ambiguous prefix are one line each."""
    missing = tmp_path / "nope.db"
    code, out, err = run(capsys, "inbox", "list", "--inbox", str(missing))
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert f"no inbox at {missing}" in err
    assert not missing.exists()

    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello, I am not SQLite\n" * 100)
    code, _, err = run(capsys, "inbox", "list", "--inbox", str(not_db))
    assert code == 1
    assert_one_error_line(err)
    assert not_db.read_text() == "hello, I am not SQLite\n" * 100

    db = tmp_path / "in.db"
    fill(db, [("abc1", "dead", time.time()), ("abc2", "dead", time.time())])
    code, _, err = run(capsys, "inbox", "show", "99", "--inbox", str(db))
    assert code == 1
    assert_one_error_line(err)
    assert "no event '99'" in err
    code, _, err = run(capsys, "inbox", "retry", "abc", "--inbox", str(db))
    assert code == 2
    assert_one_error_line(err)
    assert "ambiguous" in err


@pytest.mark.parametrize(
    ("value", "code", "says"),
    [
        ("http://127.0.0.1/inbox", 2, "http:// is not an inbox"),
        ("redis://", 2, "needs a host"),
        ("redis://127.0.0.1:notaport/0", 2, "port is not a number"),
        ("sqlite:///", 2, "needs a path"),
        ("redis://user:hunter2-not-shown@127.0.0.1:{port}/0", 1, "127.0.0.1:{port}/0"),
    ],
)
def test_an_inbox_url_that_cannot_work_is_one_line(
    capsys: pytest.CaptureFixture[str], value: str, code: int, says: str
) -> None:
    """A URL that names no inbox is a usage error; a Redis server that refuses the
    connection is one error line, which shows where without the password."""
    port = str(free_port())
    value, says = value.replace("{port}", port), says.replace("{port}", port)
    got, out, err = run(capsys, "inbox", "list", "--inbox", value)
    assert (got, out) == (code, "")
    assert_one_error_line(err)
    assert says in err
    assert "hunter2" not in err


def test_listen_on_redis_stores_and_answers_only_with_no_dispatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str, handlers_module: str
) -> None:
    """``listen --inbox redis://... --no-dispatch`` (no router): a postback is stored in
    Redis and answered 200, a duplicate stored once, nothing runs it here (pending,
    for ``work`` processes); the secret must come from the environment."""
    code, _, err = run(capsys, "listen", "--inbox", redis_url, "--no-dispatch")
    assert code == 2
    assert_one_error_line(err)
    assert "needs the postback secret in $DOKOBIT_POSTBACK_SECRET" in err
    code, _, err = run(capsys, "listen", "--inbox", str(tmp_path / "x.db"))
    assert code == 2
    assert_one_error_line(err)
    assert "--router is required (or --no-dispatch" in err
    code, _, err = run(capsys, "listen", "--inbox", str(tmp_path / "x.db"), "--no-dispatch")
    assert code == 2
    assert_one_error_line(err)
    assert "--no-dispatch needs a Redis inbox" in err

    env = _listener_env(tmp_path, DOKOBIT_POSTBACK_SECRET="shared-by-every-replica-0123")
    listener = Listener(tmp_path, None, "--inbox", redis_url, "--no-dispatch", env=env)
    try:
        url = listener.local_url(listener.url)
        assert post(url) == 200
        assert post(url) == 200  # the same postback again: a duplicate
        code, _, err = listener.stop()
    finally:
        listener.kill()
    assert code == 0, err
    assert "inbox redis://127.0.0.1:" in err
    assert not (tmp_path / "pb.db").exists()
    code, out, _ = run(capsys, "inbox", "list", "--inbox", redis_url)
    assert code == 0
    rows = out.splitlines()[1:]
    assert [row.split()[2:4] for row in rows] == [["pending", "signer_signed"]]
    dispatching = Listener(tmp_path, handlers_module, "--inbox", redis_url, env=env)
    try:  # a listener that dispatches from a shared inbox says it must be the only one
        code, _, err = dispatching.stop()  # (it runs the event)
    finally:
        dispatching.kill()
    assert code == 0, err
    assert "no other listener nor `work` may dispatch from it" in err


def test_listen_on_a_redis_that_refuses_is_one_line_at_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``listen`` with a Redis inbox whose server refuses the connection stops at
    start with one error line (exit 1) that says where, without the URL's password."""
    monkeypatch.setenv("DOKOBIT_POSTBACK_SECRET", "shared-by-every-replica-0123")
    port = free_port()
    inbox = f"redis://:hunter2-not-shown@127.0.0.1:{port}/0"
    code, out, err = run(capsys, "listen", "--inbox", inbox, "--no-dispatch", "--port", "0")
    assert (code, out) == (1, "")
    assert_one_error_line(err)
    assert f"127.0.0.1:{port}/0" in err
    assert "hunter2" not in err
