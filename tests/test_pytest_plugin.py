"""The pytest plugin works for a user's own suite, installed as it is.

Each test runs a fresh pytest (or Python) in a subprocess, so the plugin is found
through the ``pytest11`` entry point named ``dokobit_async``, as in a user's project.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_CONFTEST = """
import pytest

from dokobit_async.testing import EmulatorConfig


@pytest.fixture
def dokobit_emulator_config():
    return EmulatorConfig(time_scale=0.5)
"""

USER_TESTS = """
import pytest

from dokobit_async import ExternalSigner, SigningFile
from dokobit_async.testing import make_pdf


@pytest.mark.asyncio
async def test_a_signing_on_the_fixtures(dokobit_client, dokobit_emulator):
    created = await dokobit_client.external.create(
        name="Agreement",
        type="pdf",
        files=[SigningFile.from_bytes(make_pdf(["Agreement"]), name="a.pdf")],
        signers=[ExternalSigner(external_id="u1", email="jonas@example.com")],
    )
    await dokobit_emulator.sign(created.token, created.signers[0].token)
    status = await dokobit_client.external.status(created.token)
    assert status.status == "completed"


def test_the_config_fixture_is_overridden(dokobit_emulator_config):
    assert dokobit_emulator_config.time_scale == 0.5
"""


def _pytest(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (folder / "conftest.py").write_text(USER_CONFTEST, encoding="utf-8")
    (folder / "test_user.py").write_text(USER_TESTS, encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
    return subprocess.run(
        [*command, "-o", "asyncio_default_fixture_loop_scope=function", *options],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_users_suite_gets_the_fixtures_from_the_entry_point(tmp_path: Path) -> None:
    """``dokobit_client`` and ``dokobit_emulator`` run a signing; the config fixture
    can be overridden in the user's ``conftest.py``."""
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_entry_point_is_named_dokobit_async(tmp_path: Path) -> None:
    """``-p no:dokobit_async`` switches the plugin off: the name users may rely on."""
    done = _pytest(tmp_path, "-p", "no:dokobit_async")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fixture 'dokobit_client' not found" in done.stdout


def test_loading_the_plugin_does_not_import_aiohttp() -> None:
    """pytest loads the plugin in every run: a suite that never uses the fixtures pays
    for neither the emulator nor aiohttp."""
    code = (
        "import sys\n"
        "import dokobit_async.testing.pytest_plugin\n"
        "print('aiohttp' in sys.modules, 'dokobit_async.testing._emulator' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "False"]
