"""``dokobit-async signing ...``: every call on a signing, run through ``main()`` (and,
for the delete prompt, a real terminal in a subprocess) against a real Emulator on
127.0.0.1.

Each action is checked by what the emulator holds afterwards, not only by what the
command prints. The exit statuses, the token's sources and its masking, and the
progress lines are checked across every API command in ``test_cli_actions_exits``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import test_cli
from _emulator_thread import EmulatorThread
from test_cli import SIGNER, assert_one_error_line, run

WAIT = 15.0  # seconds: the bound on every wait in this module
INTERNAL = ("--internal", "--redirect-uri", "https://app.example/back")
Capsys = pytest.CaptureFixture[str]
emu, env = test_cli.emu, test_cli.env  # the fixtures: an emulator, its token and address set


def create(capsys: Capsys, *extra: str, signer: str = SIGNER) -> tuple[str, dict[str, str]]:
    """A signing made with ``signing create``; its token and the signer tokens by id."""
    code, out, err = run(
        capsys,
        "signing",
        "create",
        "contract.pdf",
        "--name",
        "Contract",
        "--signer",
        signer,
        *extra,
    )
    assert (code, err) == (0, ""), err
    signing = re.search(r"^signing token: (\S+)$", out, re.M)
    assert signing is not None, out
    return signing[1], dict(re.findall(r"^signer (\S+): (\S+)$", out, re.M))


def write_json(path: Path, body: object) -> str:
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ create


def test_create_takes_the_api_body_from_json_and_options_override_it(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    """``--from-json`` gives the API's create body; ``--name`` overrides its name,
    ``--signer`` comes after its signers, and every option reaches the emulator."""
    body = {
        "name": "From JSON",
        "signers": [{"external_id": "j1", "email": "j@example.lt", "name": "Jurga"}],
        "deadline": "2030-01-31T17:00:00+02:00",
        "comment": "please sign",
        "hard_deadline": True,
    }
    token, signers = create(
        capsys, "--from-json", write_json(tmp_path / "b.json", body), "--require-qualified"
    )
    assert set(signers) == {"j1", "u1"}
    signing = env.emulator.signings[token]
    assert signing.name == "Contract"  # the option wins over the file
    assert [p.spec.external_id for p in signing.participants.values()] == ["j1", "u1"]
    assert signing.deadline == datetime(2030, 1, 31, 15, tzinfo=timezone.utc)
    assert signing.options["hard_deadline"] is True
    assert signing.options["require_qualified_signatures"] is True
    assert signing.options["comment"] == "please sign"

    code, out, err = run(
        capsys, "signing", "create", "contract.pdf", "--from-json", "b.json", "--json"
    )
    assert (code, err) == (0, "")
    answer = json.loads(out)  # one JSON document, nothing else on stdout
    assert env.emulator.signings[answer["token"]].name == "From JSON"


def test_create_internal_prints_each_signing_page(env: EmulatorThread, capsys: Capsys) -> None:
    """An internal signing prints each participant's signing page; once signed,
    ``signing status --internal`` and ``signing download --internal`` read it."""
    code, out, err = run(
        capsys,
        "signing",
        "create",
        "contract.pdf",
        "--name",
        "Inside",
        "--signer",
        "external_id=i1,code=38001010000,country_code=lt",
        *INTERNAL,
    )
    assert (code, err) == (0, "")
    found = re.search(r"^signing token: (\S+)\nsigner i1: (\S+)\n  signing URL: (\S+)$", out, re.M)
    assert found is not None, out
    assert found[3] == env.emulator.signing_page_url(found[1], found[2])
    assert env.emulator.signings[found[1]].redirect_uri == INTERNAL[2]

    env.call(env.emulator.sign(found[1], found[2]))
    code, out, err = run(capsys, "signing", "status", found[1], "--internal", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["status"] == "completed"
    code, out, err = run(capsys, "signing", "download", found[1], "--internal", "-o", "s.pdf")
    assert (code, err) == (0, "")
    assert out.startswith("saved the signed file to s.pdf (")
    assert Path("s.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    ("argv", "body", "says"),
    [
        (
            ["--internal", "--redirect-uri", "https://x", "--deadline", "2030-01-01T00:00Z"],
            None,
            "--deadline does not apply to internal signings",
        ),
        (["--deadline", "2030-01-01T00:00"], None, "give the offset too"),
        (["--internal"], None, "--internal needs --redirect-uri"),
        ([], {"name": "X", "files": []}, "'files' not accepted"),
        ([], {"name": "X", "shoe_size": 42}, "'shoe_size' not accepted"),
        ([], {"name": "X", "signers": {"external_id": "a"}}, "must be a list"),
        (
            [],
            {"name": "X", "signers": [{"external_id": "a", "email": "a@b.lt", "x": 1}]},
            "signer #1: x not accepted for external signings",
        ),
        ([], {"signers": []}, "a name is needed"),
        ([], "[1, 2]", "must hold a JSON object"),
        ([], "{not json", "is not JSON"),
    ],
)
def test_create_refuses_bad_input_before_sending(
    env: EmulatorThread,
    capsys: Capsys,
    tmp_path: Path,
    argv: list[str],
    body: object,
    says: str,
) -> None:
    """Options that do not fit the flow, and a ``--from-json`` file that is not the
    API's body: exit 2, one line, nothing sent."""
    if body is not None:
        text = body if isinstance(body, str) else json.dumps(body)
        (tmp_path / "b.json").write_text(text, encoding="utf-8")
        argv = [*argv, "--from-json", "b.json"]
    else:
        argv = [*argv, "--name", "X"]
    code, out, err = run(capsys, "signing", "create", "contract.pdf", *argv)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert says in err
    assert env.emulator.requests == []


# ------------------------------------------------------------------ changes


def test_add_and_remove_signers(env: EmulatorThread, capsys: Capsys) -> None:
    """``add-signers`` invites the new person (with the comment) and prints their
    token; ``remove-signers`` takes them off again."""
    token, _ = create(capsys)
    code, out, err = run(
        capsys,
        "signing",
        "add-signers",
        token,
        "--signer",
        "external_id=u2,email=b@example.lt",
        "--comment",
        "welcome",
    )
    assert (code, err) == (0, "")
    added = re.fullmatch(r"signer u2: (\S+)\n", out)
    assert added is not None, out
    assert added[1] in env.emulator.signings[token].participants
    invitation = env.emulator.outbox[-1]
    assert (invitation.signer_token, invitation.message) == (added[1], "welcome")

    code, out, err = run(capsys, "signing", "remove-signers", token, added[1], "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"status": "ok"}
    assert added[1] not in env.emulator.signings[token].participants
    assert len(env.emulator.signings[token].participants) == 1


def test_add_signers_to_an_internal_signing_prints_their_pages(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    """Internal participants come from ``--from-json`` too; ``--comment`` is external
    only (exit 2)."""
    token, _ = create(capsys, *INTERNAL, signer="external_id=i9,code=1,country_code=lt")
    path = write_json(tmp_path / "s.json", {"signers": [{"code": "2", "country_code": "lt"}]})
    code, out, err = run(
        capsys, "signing", "add-signers", token, "--internal", "--from-json", path
    )
    assert (code, err) == (0, "")
    found = re.fullmatch(r"signer signer1: (\S+)\n  signing URL: (\S+)\n", out)
    assert found is not None, out
    assert found[2] == env.emulator.signing_page_url(token, found[1])

    code, out, err = run(capsys, "signing", "add-signers", token, "--internal", "--comment", "x")
    assert (code, out) == (2, "")
    assert "--comment does not apply to internal signings" in err


def test_update_sends_only_the_options_given(env: EmulatorThread, capsys: Capsys) -> None:
    """``update`` changes the deadline and the options named, and refuses an empty
    update and an option of the other flow (exit 2, nothing sent)."""
    token, _ = create(capsys)
    before = len(env.emulator.requests)
    code, out, err = run(
        capsys,
        "signing",
        "update",
        token,
        "--deadline",
        "2031-05-01T12:00:00Z",
        "--no-hard-deadline",
        "--signing-method",
        "smartid",
        "--signing-method",
        "mobile",
    )
    assert (code, err) == (0, "")
    assert out == f"updated allowed_signing_methods, deadline, hard_deadline: signing {token}\n"
    signing = env.emulator.signings[token]
    assert signing.deadline == datetime(2031, 5, 1, 12, tzinfo=timezone.utc)
    assert signing.options["hard_deadline"] is False
    assert signing.options["allowed_signing_methods"] == ["smartid", "mobile"]

    for argv in ([], ["--internal", "--document-saving"]):
        code, out, err = run(capsys, "signing", "update", token, *argv)
        assert (code, out) == (2, "")
        assert_one_error_line(err)
    assert len(env.emulator.requests) == before + 1


def test_remind_and_seal(env: EmulatorThread, capsys: Capsys) -> None:
    """``remind`` puts a reminder with the message in the outbox; ``seal`` applies the
    organisation's seal with its reason."""
    token, signers = create(capsys)
    code, out, err = run(capsys, "signing", "remind", token, signers["u1"], "--message", "nudge")
    assert (code, err) == (0, "")
    assert out == f"reminded {signers['u1']}: signing {token}\n"
    reminder = env.emulator.outbox[-1]
    assert (reminder.kind, reminder.message) == ("reminder", "nudge")

    code, out, err = run(
        capsys,
        "signing",
        "seal",
        token,
        "--reason",
        "Approved",
        "--annotation",
        "page=1,top=10,left=20",
        "--json",
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"status": "ok"}
    (mark,) = env.emulator.signings[token].marks
    assert (mark.kind, mark.reason) == ("seal", "Approved")


# ------------------------------------------------------------------ delete


def test_delete_with_yes_deletes_without_asking(env: EmulatorThread, capsys: Capsys) -> None:
    token, _ = create(capsys)
    code, out, err = run(capsys, "signing", "delete", token, "--yes")
    assert (code, out, err) == (0, f"deleted: signing {token}\n", "")
    assert token not in env.emulator.signings


def test_delete_without_a_terminal_or_yes_refuses(
    env: EmulatorThread, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With stdin not a terminal, even one that says ``y``, nothing is deleted: exit 2
    before any request."""
    import io

    token, _ = create(capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    before = len(env.emulator.requests)
    code, out, err = run(capsys, "signing", "delete", token)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert "--yes" in err
    assert token in env.emulator.signings
    assert len(env.emulator.requests) == before


@pytest.mark.parametrize(
    ("answer", "code", "deleted"), [("y", 0, True), ("n", 1, False), ("", 1, False)]
)
def test_delete_asks_on_the_terminal(
    env: EmulatorThread, capsys: Capsys, answer: str, code: int, deleted: bool
) -> None:
    """On a terminal (a real pty), ``delete`` names the signing and deletes only after
    ``y``."""
    token, _ = create(capsys)
    with delete_on_a_terminal(token) as (proc, master):
        os.write(master, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == code, err
    assert f"about to delete the external signing {token}: 'Contract', pending" in err.decode()
    assert "delete it? [y/N]" in err.decode()
    assert (token not in env.emulator.signings) is deleted
    assert out == (f"deleted: signing {token}\n".encode() if deleted else b"")


def test_ctrl_c_at_the_prompt_ends_at_once(env: EmulatorThread, capsys: Capsys) -> None:
    """Ctrl-C while the prompt waits for an answer: exit 130 without an Enter,
    nothing deleted."""
    token, _ = create(capsys)
    with delete_on_a_terminal(token) as (proc, _):
        assert proc.stderr is not None
        seen, deadline = b"", time.monotonic() + WAIT
        while b"[y/N]" not in seen:
            left = deadline - time.monotonic()
            assert select.select([proc.stderr], [], [], max(left, 0))[0], seen
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, seen
            seen += chunk
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert b"error: interrupted" in err
    assert token in env.emulator.signings


@contextlib.contextmanager
def delete_on_a_terminal(token: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``signing delete TOKEN`` in a subprocess whose stdin is a real terminal (a pty);
    yields the process and the terminal's other end, to type on."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dokobit_async", "signing", "delete", token],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            yield proc, master
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=WAIT)
    finally:
        os.close(master)
        os.close(slave)


def test_create_deadline_needs_an_offset_in_json_too(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    deadline = (datetime.now(timezone.utc) + timedelta(days=3)).replace(tzinfo=None)
    path = write_json(tmp_path / "b.json", {"name": "N", "deadline": deadline.isoformat()})
    code, out, err = run(capsys, "signing", "create", "contract.pdf", "--from-json", path)
    assert (code, out) == (2, "")
    assert "--from-json: deadline: give the offset too" in err
