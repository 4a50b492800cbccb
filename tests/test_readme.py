"""The README's quick start is what CI runs, and what it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    """The command lines of the quick start's ``sh`` blocks (comments left out)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_quick_start_has_two_commands_main_job_then_tests() -> None:
    """One command installs and runs the main job, one installs and runs the tests."""
    main_job, tests = quick_start_commands()
    assert main_job.endswith("dokobit-async demo")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """``.ci/run`` calls the very command a newcomer copies from the README."""
    _, tests = quick_start_commands()
    assert tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_examples_named_in_the_readme_exist() -> None:
    """Every bare script name the README lists (```name.py```) is in ``examples/``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"`(\w+\.py)`", text)
    assert len(named) >= 3
    for name in named:
        assert (ROOT / "examples" / name).is_file(), name
