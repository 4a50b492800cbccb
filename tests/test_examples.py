"""Every example runs as it is, against the emulator, on a machine with no account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run an example as a user would, with no DOKOBIT_* settings but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("script", "output"),
    [
        ("external_signing.py", "signed-agreement.pdf"),
        ("internal_signing.py", "signed-contract.pdf"),
    ],
)
def test_example_runs_against_the_emulator_and_saves_a_signed_pdf(
    tmp_path: Path, script: str, output: str
) -> None:
    """With no DOKOBIT_* variables set, the example completes a signing on the
    emulator and writes the signed PDF to the working directory."""
    result = run_example(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "status: completed" in result.stdout
    signed = tmp_path / output
    assert signed.read_bytes().startswith(b"%PDF-")
    assert f"signed file saved to {output}" in result.stdout


def test_webhook_listener_example_saves_the_document_its_handler_downloads(
    tmp_path: Path,
) -> None:
    """With no DOKOBIT_* variables, the listener example drives one signing on the
    emulator, its handlers see each postback, the completion handler downloads the
    signed PDF into signed-documents/, and the script exits 0."""
    result = run_example("webhook_listener.py", tmp_path)
    assert result.returncode == 0, result.stderr
    for action in ("signing_created", "signer_signed", "signing_completed"):
        assert f"postback: {action} " in result.stdout
    (signed,) = (tmp_path / "signed-documents").iterdir()
    assert signed.read_bytes().startswith(b"%PDF-")
    assert f"done: the listener saved signed-documents/{signed.name}" in result.stdout
    assert (tmp_path / "postbacks.db").is_file()


def test_example_refuses_half_a_configuration(tmp_path: Path) -> None:
    """A base URL without a token (or the reverse) is a clear error, not a guess."""
    result = run_example(
        "external_signing.py", tmp_path, DOKOBIT_BASE_URL="https://beta.dokobit.com"
    )
    assert result.returncode != 0
    assert "set both DOKOBIT_BASE_URL and DOKOBIT_ACCESS_TOKEN" in result.stderr
