"""Exit statuses, the access token's sources and masking, and progress, across every
API command of ``dokobit-async``, run through ``main()`` against a real Emulator on
127.0.0.1 (or a closed port).

0 success, 2 bad input (in ``test_cli_actions`` and ``test_cli_actions_services``,
per command), 3 the API refused, 4 no usable answer.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import test_cli
from _emulator_thread import EmulatorThread
from _redis import free_port
from test_cli import SIGNER, assert_one_error_line, run
from test_cli_actions import create
from test_redact import spellings

from dokobit_async import DokobitClient, RetryPolicy
from dokobit_async._cli import access
from dokobit_async.testing import EmulatorConfig, FaultKind, Faults

Capsys = pytest.CaptureFixture[str]
emu, env = test_cli.emu, test_cli.env  # the fixtures: an emulator, its token and address set

COMMANDS = [
    ["signing", "create", "contract.pdf", "--name", "X", "--signer", SIGNER],
    ["signing", "status", "{token}"],
    ["signing", "download", "{token}", "-o", "out.pdf"],
    ["signing", "add-signers", "{token}", "--signer", "external_id=n,email=n@example.lt"],
    ["signing", "remove-signers", "{token}", "{signer}"],
    ["signing", "update", "{token}", "--hard-deadline"],
    ["signing", "delete", "{token}", "--yes"],
    ["signing", "remind", "{token}", "{signer}"],
    ["signing", "seal", "{token}"],
    ["sign", "contract.pdf", "--name", "X", "--signer", SIGNER],
    ["status", "{token}"],
    ["download", "{token}", "-o", "out.pdf"],
    ["validate", "contract.pdf", "-o", "r.pdf"],
    [
        "delivery",
        "create",
        "contract.pdf",
        "--name",
        "D",
        "--recipient",
        "code=1,country_code=lt,email=r@example.lt",
    ],
    ["validation", "upload", "contract.pdf"],
    ["validation", "report", "{token}", "--report", "all"],
]
IDS = [" ".join(a for a in argv[:2] if not a.startswith("{")) for argv in COMMANDS]


def filled(argv: list[str], token: str, signer: str) -> list[str]:
    return [a.format(token=token, signer=signer) for a in argv]


@pytest.mark.parametrize("argv", COMMANDS, ids=IDS)
def test_api_refusal_exits_3_and_never_shows_the_token(
    env: EmulatorThread,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    """A token the API refuses, read from ``--token-file``, with ``-v`` logging every
    request: exit 3, one error line, and the token in none of its spellings (raw,
    percent- and form-encoded, JSON, HTML, base64) on stdout or stderr."""
    token, signers = create(capsys)
    secret = 'wr0ng/t0k+en&x=1%zz "q" <ü>'
    (tmp_path / "token").write_text(f"{secret}\n", encoding="utf-8")
    monkeypatch.delenv("DOKOBIT_ACCESS_TOKEN")
    code, out, err = run(
        capsys, "--token-file", "token", "-v", *filled(argv, token, signers["u1"])
    )
    assert (code, out) == (3, "")
    assert len([line for line in err.splitlines() if ": error: " in line]) == 1
    assert "check the access token" in err
    shown = [*spellings(secret).values(), base64.b64encode(secret.encode()).decode()]
    assert not [s for s in shown if s in out + err]


@pytest.mark.parametrize("argv", COMMANDS, ids=IDS)
def test_no_answer_exits_4(
    env: EmulatorThread, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """Nothing listens at the API's address: exit 4, one line. (One attempt per call
    here, to keep the test short; ``test_no_answer_after_the_retries_exits_4`` keeps
    the default retries.)"""
    token, signers = create(capsys)
    monkeypatch.setattr(
        access,
        "DokobitClient",
        lambda *a, **k: DokobitClient(*a, **k, retry=RetryPolicy(max_attempts=1)),
    )
    monkeypatch.setenv("DOKOBIT_BASE_URL", f"http://127.0.0.1:{free_port()}")
    code, out, err = run(capsys, *filled(argv, token, signers["u1"]))
    assert (code, out) == (4, "")
    assert_one_error_line(err)


def test_no_answer_after_the_retries_exits_4(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", "any-token")
    monkeypatch.setenv("DOKOBIT_BASE_URL", f"http://127.0.0.1:{free_port()}")
    code, out, err = run(capsys, "signing", "status", "abc")
    assert (code, out) == (4, "")
    assert_one_error_line(err)


def test_unknown_signing_exits_3(env: EmulatorThread, capsys: Capsys) -> None:
    for argv in (["signing", "status", "nosuch"], ["signing", "delete", "nosuch", "--yes"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (3, "")
        assert_one_error_line(err)


def test_token_sources(
    env: EmulatorThread, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--token-file`` works without a word on stderr; ``--token`` works but warns;
    both at once, and unusable files, are usage errors that never show the file's
    content."""
    secret = env.emulator.access_token
    monkeypatch.delenv("DOKOBIT_ACCESS_TOKEN")
    (tmp_path / "token").write_text(f"  {secret}\n\n", encoding="utf-8")
    token, _ = create(capsys, "--token-file", "token")
    code, out, err = run(capsys, "signing", "status", token, "--token", secret)
    assert code == 0
    assert "status:   pending" in out
    assert err == (
        "dokobit-async: warning: --token is visible to every user of this machine (ps); "
        "set DOKOBIT_ACCESS_TOKEN or use --token-file PATH\n"
    )
    (tmp_path / "two").write_text(f"{secret}\n{secret}\n", encoding="utf-8")
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    for argv in (
        ["--token-file", "token", "--base-url", f"http://h/?{secret}"],  # echoed by the client
        ["--token-file", "token", "--token", secret],
        ["--token-file", "two"],
        ["--token-file", "empty"],
        ["--token-file", "missing"],
    ):
        code, out, err = run(capsys, "signing", "status", token, *argv)
        assert (code, out) == (2, ""), argv
        assert_one_error_line(err)
        assert secret not in err


def test_progress_only_on_a_terminal_or_when_asked(env: EmulatorThread, capsys: Capsys) -> None:
    """stderr here is no terminal: no progress, unless ``--progress``, which writes
    one line per redraw (no carriage returns) ending at 100%."""
    token, _ = create(capsys)  # asserts an empty stderr
    code, _, err = run(
        capsys, "signing", "create", "contract.pdf", "--name", "P", "--progress", "--json"
    )
    assert code == 0
    assert "\r" not in err
    assert re.search(r"^uploading contract\.pdf \[#{24}\] 100% ", err, re.M), err
    code, _, err = run(capsys, "signing", "download", token, "-o", "d.pdf", "--progress")
    assert code == 0
    assert re.search(r"^downloading d\.pdf \[#{24}\] 100% ", err, re.M), err
    code, _, err = run(capsys, "signing", "download", token, "-o", "e.pdf")
    assert (code, err) == (0, "")


def test_help_states_the_exit_statuses_and_token_sources(capsys: Capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "2 bad input (nothing sent), 3 the API refused (an error answer), 4 no usable" in text
    assert "--token-file PATH (--token works but warns" in text


@pytest.mark.parametrize(
    ("fault", "code", "says"),
    [
        (FaultKind.BAD_GATEWAY, 4, "it may have taken effect: check before repeating"),
        (FaultKind.SERVER_ERROR, 3, "HTTP 500"),
    ],
)
def test_a_reminder_that_the_emulator_breaks(
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capsys,
    tmp_path: Path,
    fault: FaultKind,
    code: int,
    says: str,
) -> None:
    """A reminder answered by a gateway's 502 (its outcome unknown: it may have been
    sent) is exit 4 with a warning to check first, and is never resent; a 500 from the
    API is a refusal, exit 3."""
    faults = Faults(rate=1.0, weights={fault: 1.0}, operations={"signing-external/remind"})
    with EmulatorThread(EmulatorConfig(time_scale=0.0001, faults=faults)) as broken:
        monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", broken.emulator.access_token)
        monkeypatch.setenv("DOKOBIT_BASE_URL", broken.emulator.base_url)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "contract.pdf").write_bytes(test_cli.PDF)
        token, signers = create(capsys)
        got, out, err = run(capsys, "signing", "remind", token, signers["u1"])
        assert (got, out) == (code, "")
        assert_one_error_line(err)
        assert says in err
        sent = [r for r in broken.emulator.requests if r.operation == "signing-external/remind"]
        assert len(sent) == 1


def test_demo_refuses_a_token_file_it_would_ignore(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``demo`` without ``--base-url`` runs on the emulator: a ``--token-file`` there
    would be ignored, so it is a usage error (as ``--token`` is), said in one line."""
    token_file = tmp_path / "token"
    token_file.write_text("t0k-from-a-file\n")
    code, _, err = run(capsys, "demo", "--token-file", str(token_file))
    assert code == 2
    assert_one_error_line(err)
    assert "--token-file apply with --base-url" in err
    assert "t0k-from-a-file" not in err
