"""``dokobit-async delivery create`` and ``dokobit-async validation upload|report``
(and ``--json`` on the file-moving commands), run through ``main()`` against a real
Emulator on 127.0.0.1.

Their exit statuses for a refusal and for no answer, and the token's masking, are
checked with every other API command in ``test_cli_actions``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import test_cli
from _emulator_thread import EmulatorThread
from test_cli import PDF, assert_one_error_line, run

from dokobit_async.cli import main
from dokobit_async.models import ReportKind

Capsys = pytest.CaptureFixture[str]
emu, env = test_cli.emu, test_cli.env  # the fixtures: an emulator, its token and address set
R1 = "external_id=r1,code=38001010000,country_code=lt,email=r1@example.lt"
R2 = "code=38001010001,country_code=lt,phone=+37060000000"


def test_delivery_create_from_options(env: EmulatorThread, capsys: Capsys) -> None:
    """Recipients from ``--recipient`` (``external_id`` defaults to ``recipient2``),
    the comment and postback address reach the emulator; each token is printed."""
    code, out, err = run(
        capsys, "delivery", "create", "contract.pdf", "--name", "Notice",
        "--recipient", R1, "--recipient", R2, "--comment", "read me",
        "--postback-url", "https://app.example/pb",
    )  # fmt: skip
    assert (code, err) == (0, "")
    found = re.fullmatch(
        r"delivery token: (\S+)\nrecipient r1: (\S+)\nrecipient recipient2: (\S+)\n", out
    )
    assert found is not None, out
    delivery = env.emulator.deliveries[found[1]]
    assert (delivery.name, delivery.comment, delivery.postback_url) == (
        "Notice",
        "read me",
        "https://app.example/pb",
    )
    assert sorted(delivery.recipients) == sorted([found[2], found[3]])
    assert delivery.recipients[found[3]].phone == "+37060000000"


def test_delivery_create_from_json_prints_the_answer(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    """``--from-json`` holds the API's body without files; ``--json`` prints the
    API's answer and nothing else."""
    body = {
        "name": "From JSON",
        "recipients": [{"code": "1", "country_code": "lt", "email": "a@b.lt"}],
    }
    (tmp_path / "d.json").write_text(json.dumps(body), encoding="utf-8")
    code, out, err = run(
        capsys, "delivery", "create", "contract.pdf", "--from-json", "d.json", "--json"
    )
    assert (code, err) == (0, "")
    answer = json.loads(out)
    delivery = env.emulator.deliveries[answer["token"]]
    assert delivery.name == "From JSON"
    assert [r.external_id for r in delivery.recipients.values()] == ["recipient1"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--name", "N"], "no recipient"),
        (["--recipient", R1], "a name is needed"),
        (["--name", "N", "--recipient", "external_id=r,email=a@b.lt"], "--recipient #1"),
        (["--name", "N", "--recipient", "shoe=1"], "unknown recipient field 'shoe'"),
    ],
)
def test_delivery_create_refuses_bad_input(
    env: EmulatorThread, capsys: Capsys, argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, "delivery", "create", "contract.pdf", *argv)
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert says in err
    assert env.emulator.requests == []


def test_delivery_of_a_file_that_is_no_pdf_is_bad_input(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("plain text\n", encoding="utf-8")
    code, out, err = run(
        capsys, "delivery", "create", "notes.txt", "--name", "N", "--recipient", R1
    )
    assert (code, out) == (2, "")
    assert_one_error_line(err)
    assert env.emulator.requests == []


def upload(capsys: Capsys) -> str:
    code, out, err = run(capsys, "validation", "upload", "contract.pdf")
    assert (code, err) == (0, "")
    found = re.fullmatch(r"validation token: (\S+)\n", out)
    assert found is not None, out
    return found[1]


@pytest.mark.parametrize("kind", [k.value for k in ReportKind])
def test_validation_report_saves_each_kind(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path, kind: str
) -> None:
    """Upload once, then any of the four reports to ``-o``."""
    token = upload(capsys)
    assert token in env.emulator.validations
    code, out, err = run(capsys, "validation", "report", token, "--report", kind, "-o", "r")
    assert (code, err) == (0, "")
    assert out.startswith(f"saved {kind} to r (")
    saved = (tmp_path / "r").read_bytes()
    assert saved.startswith(b"%PDF") if kind.endswith("pdf") else saved.lstrip().startswith(b"<")


def test_validation_report_all_with_json(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    """``--report all`` saves the four under their own names; ``--json`` lists them,
    each with its size as written."""
    code, out, err = run(capsys, "validation", "upload", "contract.pdf", "--json")
    assert (code, err) == (0, "")
    token = json.loads(out)["token"]
    code, out, err = run(capsys, "validation", "report", token, "--report", "all", "--json")
    assert (code, err) == (0, "")
    saved = json.loads(out)["saved"]
    assert [s["kind"] for s in saved] == [k.value for k in ReportKind]
    for item in saved:
        assert (tmp_path / item["file"]).stat().st_size == item["bytes"] > 0
    assert len(env.emulator.validations) == 1


def test_validation_report_refuses_conflicting_outputs(
    env: EmulatorThread, capsys: Capsys
) -> None:
    """``-o`` with ``--report all``, and ``--json`` with ``-o -``: exit 2, nothing
    fetched."""
    token = upload(capsys)
    before = len(env.emulator.requests)
    for argv in (["--report", "all", "-o", "x"], ["-o", "-", "--json"]):
        code, out, err = run(capsys, "validation", "report", token, *argv)
        assert (code, out) == (2, "")
        assert_one_error_line(err)
    assert len(env.emulator.requests) == before


def test_report_to_stdout_is_the_file_alone(
    env: EmulatorThread, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["validation", "upload", "contract.pdf", "--json"]) == 0
    token = json.loads(capsysbinary.readouterr().out)["token"]
    assert main(["validation", "report", token, "-o", "-"]) == 0
    out, err = capsysbinary.readouterr()
    assert out.startswith(b"%PDF")
    assert err == b""


def test_download_and_validate_print_json_when_asked(
    env: EmulatorThread, capsys: Capsys, tmp_path: Path
) -> None:
    """The older ``download`` and ``validate`` take ``--json`` too: what was saved."""
    token, signers = test_cli.sign(capsys, "--signer", test_cli.SIGNER)
    env.call(env.emulator.sign(token, signers["u1"]))
    code, out, err = run(capsys, "download", token, "-o", "s.pdf", "--json")
    assert (code, err) == (0, "")
    (item,) = json.loads(out)["saved"]
    assert (item["file"], item["bytes"]) == ("s.pdf", (tmp_path / "s.pdf").stat().st_size)
    assert (tmp_path / "s.pdf").read_bytes() != PDF

    code, out, err = run(capsys, "validate", "s.pdf", "--json")
    assert (code, err) == (0, "")
    (item,) = json.loads(out)["saved"]
    assert item["kind"] == "report-pdf"
    assert item["validation_token"] in env.emulator.validations
