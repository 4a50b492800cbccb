"""File names that a server suggests in ``Content-Disposition``, as ``download`` and
``validate`` use them: a name that is ``-``, too long, hidden, ``..`` or holds
control or bidi characters gives way to the default name; stdout only ever gets the
file with an explicit ``-o -``; the saved name is printed, escaped.

The emulator serves the names an uploaded file can carry (``-``, ``..``, 300 bytes).
Names it cannot send (it writes an ASCII ``filename=``) come from a small loopback
server that answers every download with a chosen ``Content-Disposition``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _emulator_thread import EmulatorThread
from aiohttp import web

from dokobit_async import DokobitClient, ExternalSigner, SigningFile
from dokobit_async._cli.output import default_name, human_size, safe_filename
from dokobit_async.cli import main
from dokobit_async.testing import make_pdf

PDF = make_pdf(["Contract"])
WAIT = 15.0  # seconds: the bound on every wait in this module
TOKEN = "T0K3N"


class DispositionServer:
    """A loopback HTTP server, on its own loop in a daemon thread, that answers every
    API download with ``PDF`` under ``disposition`` and a validation upload with a
    token."""

    def __init__(self) -> None:
        self.disposition = 'attachment; filename="plain.pdf"'
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application()
        app.router.add_post("/api/validation/upload.json", self._upload)
        app.router.add_get("/api/{tail:.*}", self._download)
        self._runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=WAIT)

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def _upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "ok", "token": "V4L1D"})

    async def _download(self, request: web.Request) -> web.Response:
        return web.Response(
            body=PDF,
            content_type="application/pdf",
            headers={"Content-Disposition": self.disposition},
        )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=WAIT)
        self.loop.close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DispositionServer]:
    """The disposition server; cwd is a fresh directory holding ``contract.pdf``."""
    running = DispositionServer()
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", "secret-token")
    monkeypatch.delenv("DOKOBIT_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contract.pdf").write_bytes(PDF)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[EmulatorThread]:
    """The emulator, its address and token in the environment; cwd is a fresh
    directory."""
    running = EmulatorThread()
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", running.emulator.access_token)
    monkeypatch.setenv("DOKOBIT_BASE_URL", running.emulator.base_url)
    monkeypatch.chdir(tmp_path)
    try:
        yield running
    finally:
        running.close()


def create_signing(emu: EmulatorThread, file_name: str) -> str:
    """A signing on the emulator whose one PDF was uploaded as ``file_name``; its
    token."""

    async def create() -> str:
        async with DokobitClient(emu.emulator.access_token, base_url=emu.emulator.base_url) as c:
            created = await c.external.create(
                name="Contract",
                type="pdf",
                files=[SigningFile.from_bytes(PDF, name=file_name)],
                signers=[ExternalSigner(external_id="u1", email="u1@example.com")],
            )
        return created.token

    return asyncio.run(asyncio.wait_for(create(), WAIT))


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, bytes]:
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out, err


def saved_line(what: str, name: str, size: int) -> bytes:
    return f"saved {what} to {name} ({human_size(size)})\n".encode()


# ------------------------------------------------------------------ over the emulator


@pytest.mark.parametrize(
    ("uploaded", "kept"),
    [
        ("-", False),  # would have meant stdout
        ("..", False),
        ("x" * 296 + ".pdf", False),  # 300 bytes: over the file-name limit
        ("-rf.pdf", False),  # an option to whatever is run on `*` next
        ("Sutartis 2024.pdf", True),
    ],
    ids=["dash", "dotdot", "300-bytes", "leading-dash", "plain"],
)
def test_download_uses_the_server_name_only_when_it_is_plain(
    emu: EmulatorThread,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    uploaded: str,
    kept: bool,
) -> None:
    """``download`` without ``-o`` saves under the emulator's ``Content-Disposition``
    name when that name is plain, else as ``signed-TOKEN.pdf``; the file never goes
    to stdout, which carries exactly the one ``saved ... to NAME`` line."""
    token = create_signing(emu, uploaded)
    expected = uploaded if kept else f"signed-{token}.pdf"

    code, out, err = run(capsysbinary, "download", token)

    assert (code, err) == (0, b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == [expected]
    assert (tmp_path / expected).read_bytes() == PDF
    assert out == saved_line("the signed file", expected, len(PDF))


def test_a_dash_name_goes_to_stdout_only_with_an_explicit_dash(
    emu: EmulatorThread, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """``-o -`` still writes the file, and nothing else, to stdout."""
    token = create_signing(emu, "-")
    code, out, err = run(capsysbinary, "download", token, "-o", "-")
    assert (code, out, err) == (0, PDF, b"")
    assert list(tmp_path.iterdir()) == []


def test_the_printed_name_of_a_chosen_output_is_escaped(
    emu: EmulatorThread, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """A ``-o`` name with an escape sequence or a bidi override is written as given,
    but printed with those characters escaped, so it cannot drive the terminal."""
    token = create_signing(emu, "contract.pdf")
    chosen = "out\x1b[2J\u202efdp.pdf"
    code, out, err = run(capsysbinary, "download", token, "-o", chosen)
    assert (code, err) == (0, b"")
    assert (tmp_path / chosen).read_bytes() == PDF
    assert out == saved_line("the signed file", "out\\x1b[2J\\u202efdp.pdf", len(PDF))


# ------------------------------------------------------------------ names the emulator cannot send


HOSTILE_DISPOSITIONS = {
    "bidi-override": "attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe",
    "escape-sequence": "attachment; filename*=UTF-8''a%1B%5B2Jb.pdf",
    "newline": "attachment; filename*=UTF-8''a%0Ab.pdf",
    "line-separator": "attachment; filename*=UTF-8''a%E2%80%A8b.pdf",
    "zero-width": "attachment; filename*=UTF-8''%E2%80%8Bcontract.pdf",
    "dash": 'attachment; filename="-"',
    "path-to-dotdot": 'attachment; filename="a/.."',
    "300-bytes-utf8": "attachment; filename*=UTF-8''" + "%C4%85" * 148 + ".pdf",
}


@pytest.mark.parametrize("disposition", HOSTILE_DISPOSITIONS.values(), ids=HOSTILE_DISPOSITIONS)
def test_download_falls_back_on_control_and_bidi_names(
    server: DispositionServer,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    disposition: str,
) -> None:
    """A server name holding a control, bidi, zero-width or separator character (or
    naming stdout or ``..``, or 300 bytes long in UTF-8) is not used: the file lands
    at ``signed-TOKEN.pdf``."""
    server.disposition = disposition
    code, out, err = run(capsysbinary, "--base-url", server.base_url, "download", TOKEN)
    assert (code, err) == (0, b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contract.pdf", f"signed-{TOKEN}.pdf"]
    assert (tmp_path / f"signed-{TOKEN}.pdf").read_bytes() == PDF
    assert out == saved_line("the signed file", f"signed-{TOKEN}.pdf", len(PDF))


def test_download_keeps_a_plain_unicode_server_name(
    server: DispositionServer, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """A plain non-ASCII name (RFC 5987 ``filename*``) is kept and printed as it is."""
    server.disposition = "attachment; filename*=UTF-8''Sutartis%20%C4%85%C4%8D.pdf"
    code, out, err = run(capsysbinary, "--base-url", server.base_url, "download", TOKEN)
    assert (code, err) == (0, b"")
    assert (tmp_path / "Sutartis ąč.pdf").read_bytes() == PDF
    assert out == saved_line("the signed file", "Sutartis ąč.pdf", len(PDF))


@pytest.mark.parametrize("disposition", HOSTILE_DISPOSITIONS.values(), ids=HOSTILE_DISPOSITIONS)
def test_validate_falls_back_on_hostile_report_names(
    server: DispositionServer,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    disposition: str,
) -> None:
    """``validate`` saves a report with an unusable server name as
    ``FILE-KIND.pdf``, never to stdout."""
    server.disposition = disposition
    code, out, err = run(capsysbinary, "--base-url", server.base_url, "validate", "contract.pdf")
    assert (code, err) == (0, b"")
    report = "contract-report-pdf.pdf"
    assert {p.name for p in tmp_path.iterdir()} == {"contract.pdf", report}
    assert out == saved_line("report-pdf", report, len(PDF))


# ------------------------------------------------------------------ the pure rules


def test_safe_filename_refuses_what_cannot_be_shown_or_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names are kept up to the byte limit that leaves room for the temporary file,
    and refused for controls, format characters, dashes, dots and device names."""
    monkeypatch.chdir(tmp_path)
    longest = "n" * 232 + ".pdf"  # 236 bytes: with ".NAME.<12 hex>.part", 255
    assert safe_filename(longest) == longest
    assert safe_filename("n" + longest) is None
    for name in [
        "-", "-x.pdf", ".", "..", "...", ".hidden", "a\x1b[2Jb.pdf", "a\nb.pdf", "a\tb",
        "a\u202eb.pdf", "a\u2066b.pdf", "\ufeffa.pdf", "a\u2028b", "a\u2029b", "a\x85b",
        "a\ud800b", "a\ue000b", "CON", "nul.pdf", "Com1.txt", "", "  ", "___",
    ]:  # fmt: skip
        assert safe_filename(name) is None, repr(name)
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\evil.pdf") == "evil.pdf"
    assert safe_filename("a:b.pdf") == "a_b.pdf"
    assert safe_filename(" console.pdf ") == "console.pdf"


def test_default_name_is_never_stdout_and_always_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback is made safe too: a long or odd stem is cleaned and cut so that the
    name fits, and an existing server name gives way to it."""
    monkeypatch.chdir(tmp_path)
    assert default_name("-", "application/pdf", "signed-t") == "signed-t.pdf"
    assert default_name(None, None, "-") == "download.bin"
    long = default_name(None, "application/pdf", "ą" * 400)
    assert long.endswith(".pdf")
    assert len(long.encode()) <= 236
    assert default_name(None, None, "a\u202eb\x1b") == "a_b_.bin"
    (tmp_path / "taken.pdf").write_bytes(b"")
    assert default_name("taken.pdf", "application/pdf", "s") == "s.pdf"
