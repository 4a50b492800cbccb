"""The ``dokobit-async`` command, run against a real Emulator on 127.0.0.1.

``main()`` runs its own event loop (``asyncio.run``), so these tests are sync: the
emulator serves from a second loop in a background thread. One test runs the real
console script and ``python -m dokobit_async`` in subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TypeVar

import pytest
from _emulator_thread import EmulatorThread

from dokobit_async._cli import api as _cli_commands
from dokobit_async._cli.output import Progress, default_name, safe_filename
from dokobit_async.cli import main
from dokobit_async.testing import make_pdf

T = TypeVar("T")
PDF = make_pdf(["Contract"])
WAIT = 15.0  # seconds: the bound on every wait in this module
SIGNER = "external_id=u1,email=jonas@example.lt,name=Jonas,surname=Jonaitis"


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    running = EmulatorThread()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def env(emu: EmulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> EmulatorThread:
    """The emulator's address and token in the environment; cwd is a fresh directory
    holding ``contract.pdf``."""
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", emu.emulator.access_token)
    monkeypatch.setenv("DOKOBIT_BASE_URL", emu.emulator.base_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contract.pdf").write_bytes(PDF)
    return emu


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sign(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, dict[str, str]]:
    """Create a signing with the CLI; returns its token and the signer tokens by id."""
    code, out, err = run(capsys, "sign", "contract.pdf", "--name", "Contract", *extra)
    assert (code, err) == (0, "")
    signing = re.search(r"^signing token: (\S+)$", out, re.M)
    assert signing is not None, out
    return signing[1], dict(re.findall(r"^signer (\S+): (\S+)$", out, re.M))


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dokobit-async: error: ")
    assert "Traceback" not in err


# ------------------------------------------------------------------ round trips


def test_sign_status_sign_download_round_trip(
    env: EmulatorThread, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A signing made by ``sign`` is pending in ``status``; once the emulator signs it,
    ``status`` says completed and ``download`` saves the signed PDF beside the
    original without replacing it."""
    token, signers = sign(capsys, "--signer", SIGNER, "--signer", "email=v@example.lt,role=viewer")
    assert set(signers) == {"u1", "signer2"}
    assert env.emulator.signings[token].name == "Contract"

    code, out, err = run(capsys, "status", token)
    assert (code, err) == (0, "")
    assert "status:   pending" in out
    assert re.search(rf"pending\s+u1\s+Jonas Jonaitis\s+jonas@example.lt\s+{signers['u1']}", out)

    env.call(env.emulator.sign(token, signers["u1"]))

    code, out, _ = run(capsys, "status", token, "--json")
    assert code == 0
    raw = json.loads(out)
    assert raw["status"] == "completed"
    assert {s["external_id"]: s["status"] for s in raw["signers"]}["u1"] == "signed"

    code, out, err = run(capsys, "download", token)
    assert (code, err) == (0, "")
    saved = tmp_path / f"signed-{token}.pdf"  # contract.pdf exists: the fallback name
    assert f"saved the signed file to {saved.name}" in out
    assert saved.read_bytes().startswith(b"%PDF")
    assert saved.read_bytes() != PDF
    assert (tmp_path / "contract.pdf").read_bytes() == PDF
    assert not list(tmp_path.glob(".*.part"))

    code, _, err = run(capsys, "download", token)
    assert code == 1
    assert "already exists" in err
    code, _, err = run(capsys, "download", token, "-o", saved.name)
    assert (code, err) == (0, "")  # an explicit -o is


def test_download_to_stdout(
    env: EmulatorThread, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """``-o -`` writes the file's bytes, and nothing else, to stdout."""
    assert main(["sign", "contract.pdf", "--name", "C", "--signer", SIGNER]) == 0
    token = re.search(rb"signing token: (\S+)", capsysbinary.readouterr().out)
    assert token is not None
    assert main(["download", token[1].decode(), "-o", "-"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == PDF
    assert err == b""


def test_internal_signing_prints_signing_urls(
    env: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--internal`` signings print each signer's signing page; ``status --internal``
    reads them."""
    code, out, err = run(
        capsys,
        "sign",
        "contract.pdf",
        "--name",
        "Internal",
        "--internal",
        "--redirect-uri",
        "https://app.example/back",
        "--signer",
        "external_id=i1,code=38001010000,country_code=lt",
        "--json-body",
    )
    assert (code, err) == (0, "")
    token = re.search(r"^signing token: (\S+)$", out, re.M)
    signer = re.search(r"^signer i1: (\S+)\n  signing URL: (\S+)$", out, re.M)
    assert token is not None
    assert signer is not None
    assert signer[2] == env.emulator.signing_page_url(token[1], signer[1])
    code, out, _ = run(capsys, "status", token[1], "--internal")
    assert code == 0
    assert "i1" in out


def test_validate_writes_the_chosen_report(
    env: EmulatorThread, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``validate`` uploads the file and saves the report: the PDF one by default,
    another with ``--report``, to ``-o`` when given."""
    code, out, err = run(capsys, "validate", "contract.pdf")
    assert (code, err) == (0, "")
    (report,) = tmp_path.glob("report-pdf*.pdf")
    assert report.read_bytes().startswith(b"%PDF")
    assert f"to {report.name}" in out

    code, out, err = run(
        capsys, "validate", "contract.pdf", "--report", "report-xml", "-o", "r.xml"
    )
    assert (code, err) == (0, "")
    assert b"<ValidationReport" in (tmp_path / "r.xml").read_bytes()
    assert len(env.emulator.validations) == 2


# ------------------------------------------------------------------ errors


def test_wrong_token_is_one_line_exit_3_without_the_token(
    env: EmulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejected token gives one error line, exit 3 (the API refused; 1 before the
    exit statuses were told apart), and the token appears nowhere."""
    secret = "wrong_secret_token_0123456789"
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", secret)
    code, out, err = run(capsys, "status", "abc", "-v")
    assert code == 3
    assert out == ""
    assert secret not in err
    error_lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(error_lines) == 1
    assert "access token" in error_lines[0]

    code, out, err = run(capsys, "status", "abc")  # without -v: exactly one line
    assert code == 3
    assert out == ""
    assert_one_error_line(err)
    assert secret not in err


def test_token_option_is_never_echoed(
    env: EmulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--token`` values (even under a mistyped option name that argparse would echo
    back) are masked in every message."""
    monkeypatch.delenv("DOKOBIT_ACCESS_TOKEN")
    secret = "cli_secret_token_abcdef"
    code, out, err = run(
        capsys, "status", "x", "--token", secret, "--base-url", f"http://h/?{secret}"
    )
    assert code == 2
    assert secret not in out + err
    assert_one_error_line(err)

    code, out, err = run(capsys, "status", "x", f"--token={secret}")
    assert code == 3  # the API refused it (1 before the exit statuses were told apart)
    assert secret not in out + err
    warning, error = err.splitlines()  # --token warns that ps shows it
    assert warning.startswith("dokobit-async: warning: --token is visible")
    assert_one_error_line(error)

    code, out, err = run(capsys, "--tok", secret, "status", "x")
    assert code == 2
    assert secret not in out + err
    assert_one_error_line(err)


def test_missing_token_is_a_usage_error(
    env: EmulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No token anywhere: exit 2 and a line that says how to give one."""
    monkeypatch.delenv("DOKOBIT_ACCESS_TOKEN")
    code, out, err = run(capsys, "status", "abc")
    assert code == 2
    assert out == ""
    assert_one_error_line(err)
    assert "DOKOBIT_ACCESS_TOKEN" in err
    assert env.emulator.requests == []


@pytest.mark.parametrize(
    ("signer", "extra", "expected"),
    [
        ("external_id", (), "expected key=value"),
        ("external_id=u1,shoe_size=42", (), "unknown signer field"),
        ("external_id=u1,email=a@b.lt,email=c@d.lt", (), "given twice"),
        ("external_id=u1", (), "needs an email or a phone"),
        ("email=a@b.lt,code=3800", (), "needs a country_code"),
        ("email=a@b.lt,sequence=first", (), "whole number"),
        ("external_id=u1,email=a@b.lt", ("--internal", "--redirect-uri", "https://x"), "email"),
        ("email=a@b.lt", ("--internal",), "--redirect-uri"),
    ],
)
def test_bad_signer_is_a_usage_error(
    env: EmulatorThread,
    capsys: pytest.CaptureFixture[str],
    signer: str,
    extra: tuple[str, ...],
    expected: str,
) -> None:
    """Malformed or impossible ``--signer`` options exit 2 before any request."""
    code, out, err = run(capsys, "sign", "contract.pdf", "--name", "X", "--signer", signer, *extra)
    assert code == 2
    assert out == ""
    assert_one_error_line(err)
    assert expected in err
    assert env.emulator.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["sign", "contract.pdf"],
        ["sign", "missing.pdf", "--name", "X"],
        ["validate", "contract.pdf", "--report", "nope"],
        ["emulate", "--port", "70000"],
        ["status", "x", "--base-url", "ftp://example.com"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    env: EmulatorThread, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Bad command lines and bad local input: one line, exit 2."""
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_error_line(err)


def test_ctrl_c_exits_130(
    env: EmulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during a command: one line, exit 130, no traceback."""

    async def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli_commands, "status", interrupted)
    code, _, err = run(capsys, "status", "abc")
    assert code == 130
    assert_one_error_line(err)


def test_emulate_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    """``emulate`` on a port already in use: one line, exit 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run(capsys, "emulate", "--port", str(busy.getsockname()[1]))
    assert code == 1
    assert_one_error_line(err)
    assert "cannot listen" in err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` and ``--version`` print and return 0."""
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "emulate" in out
    assert "DOKOBIT_ACCESS_TOKEN" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("dokobit-async ")


# ------------------------------------------------------------------ progress


def test_progress_bar_when_stderr_is_a_terminal(
    env: EmulatorThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal, uploads and downloads draw a ``\\r`` bar on stderr that ends at
    100% on its own line; stdout is untouched by it."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, "sign", "contract.pdf", "--name", "C", "--signer", SIGNER)
    assert code == 0
    assert "\r" not in out
    assert "\ruploading contract.pdf [" in err
    assert "100%" in err
    assert err.endswith("\n")
    token = re.search(r"signing token: (\S+)", out)
    assert token is not None
    code, out, err = run(capsys, "download", token[1], "-o", "signed.pdf")
    assert code == 0
    assert "\rdownloading signed.pdf [" in err
    assert "100%" in err


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    env: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped or captured stderr stays empty on success."""
    token, _ = sign(capsys, "--signer", SIGNER)
    code, _, err = run(capsys, "download", token, "-o", "signed.pdf")
    assert (code, err) == (0, "")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_are_throttled() -> None:
    """Many updates within the interval draw once, and the last state is drawn at the
    end, padded over the longer line before it."""
    now = [0.0]
    tty = _Tty()
    with Progress("up", stream=tty, interval=0.1, clock=lambda: now[0]) as bar:
        for done in range(0, 1000, 10):
            bar.update(done, 1000)
        assert tty.getvalue().count("\r") == 1
        now[0] = 0.2
        bar.update(995, None)
    assert tty.getvalue().count("\r") == 2
    assert tty.getvalue().endswith("\n")
    assert "995 B" in tty.getvalue()


def test_file_names_from_the_server_are_made_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths, hidden names and control characters never come from Content-Disposition."""
    monkeypatch.chdir(tmp_path)
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\evil.pdf") == "evil.pdf"
    assert safe_filename(".bashrc") is None
    assert safe_filename("a\x1b[2Jb.pdf") is None  # the default name instead
    assert default_name(None, "application/pdf", "signed-t") == "signed-t.pdf"
    assert default_name(".x", "application/vnd.etsi.asic-e+zip", "s") == "s.asice"
    assert default_name(None, None, "s") == "s.bin"


# ------------------------------------------------------------------ real processes


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """The lines of ``stream``, read in a daemon thread, so each wait can be bounded."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    __import__("threading").Thread(target=pump, daemon=True).start()
    return lines


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_emulate_subprocess_serves_then_stops_cleanly(
    stop: signal.Signals, tmp_path: Path
) -> None:
    """``python -m dokobit_async emulate`` prints its URL, token and an export hint,
    serves the console script's requests, and exits 0 on SIGINT or SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dokobit_async", "emulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        lines = _lines(proc.stdout)
        first = lines.get(timeout=WAIT)
        assert first.startswith("emulator running at http://127.0.0.1:")
        base_url = first.split()[-1]
        token = lines.get(timeout=WAIT).split()[-1]
        hint = lines.get(timeout=WAIT)
        assert f"DOKOBIT_BASE_URL={base_url} DOKOBIT_ACCESS_TOKEN={token}" in hint

        (tmp_path / "c.pdf").write_bytes(PDF)
        script = shutil.which("dokobit-async", path=str(Path(sys.executable).parent))
        assert script is not None
        done = subprocess.run(
            [script, "sign", "c.pdf", "--name", "C", "--signer", SIGNER],
            capture_output=True,
            text=True,
            timeout=WAIT,
            cwd=tmp_path,
            env={**_clean_env(), "DOKOBIT_BASE_URL": base_url, "DOKOBIT_ACCESS_TOKEN": token},
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.startswith("signing token: ")

        proc.send_signal(stop)
        assert proc.wait(timeout=WAIT) == 0
        stderr = proc.stderr.read()
        assert "emulator stopped" in stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_emulate_verbose_logs_one_line_per_request_without_the_token(tmp_path: Path) -> None:
    """``emulate -v``: every request it serves is one line on stderr (method, path,
    status), the access token never among them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dokobit_async", "emulate", "-v", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        lines = _lines(proc.stdout)
        base_url = lines.get(timeout=WAIT).split()[-1]
        token = lines.get(timeout=WAIT).split()[-1]
        script = shutil.which("dokobit-async", path=str(Path(sys.executable).parent))
        assert script is not None
        env = {**_clean_env(), "DOKOBIT_BASE_URL": base_url, "DOKOBIT_ACCESS_TOKEN": token}
        (tmp_path / "c.pdf").write_bytes(PDF)
        for argv in (["sign", "c.pdf", "--name", "C", "--signer", SIGNER], ["status", "nope"]):
            subprocess.run(
                [script, *argv], capture_output=True, timeout=WAIT, cwd=tmp_path, env=env
            )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    requests = [line for line in stderr.splitlines() if " -> " in line]
    assert any("POST /api/signing-external/create.json?... -> 200" in r for r in requests)
    assert any(
        re.search(r"GET /api/signing-(external|internal)/nope/status\.json\?\.\.\. -> 40\d", r)
        for r in requests
    ), requests
    assert all(r.startswith("dokobit-async: INFO: ") for r in requests)
    assert token not in stderr
    assert "Traceback" not in stderr
