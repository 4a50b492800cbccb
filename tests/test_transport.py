"""The client over real sockets: a loopback aiohttp server, real files, real timeouts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from dokobit_async import (
    ClientClosedError,
    DokobitClient,
    ExternalSigner,
    InvalidArgumentError,
    OutcomeUnknownError,
    RequestTimeoutError,
    RetryPolicy,
    SigningFile,
    Timeout,
    TransportError,
    ValidationError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = "loopback-secret-token"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[str, str, Handler], Awaitable[str]]]:
    """Start a loopback server with the given routes; yields its base URL."""
    runners: list[web.AppRunner] = []

    async def start(method: str, path: str, handler: Handler) -> str:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def client_for(base_url: str, **kwargs: object) -> DokobitClient:
    options: dict[str, object] = {"rate_limit": None, "retry": RetryPolicy(base_delay=0.01)}
    options.update(kwargs)
    return DokobitClient(TOKEN, base_url=base_url, **options)  # type: ignore[arg-type]


def _content_of(body: bytes, encoding: str) -> tuple[bytes, str]:
    if encoding == "form":
        fields = parse_qs(body.decode("ascii"), strict_parsing=True)
        content, digest = fields["files[0][content]"][0], fields["files[0][digest]"][0]
    else:
        file = json.loads(body)["files"][0]
        content, digest = file["content"], file["digest"]
    return base64.b64decode(content, validate=True), digest


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


@pytest.mark.parametrize("encoding", ["form", "json"])
@pytest.mark.parametrize("source", ["path", "bytes", "stream"])
async def test_upload_streams_the_file_with_an_exact_content_length(
    serve: Callable[[str, str, Handler], Awaitable[str]],
    tmp_path: Path,
    encoding: str,
    source: str,
) -> None:
    """A ~1.5 MB file (length not a multiple of 3, with bytes whose base64 has +, /
    and =) arrives intact: exact Content-Length, no chunked encoding, right digest."""
    data = b"%PDF-1.7\n" + os.urandom(1_500_001) + b"\xfb\xff"
    seen: dict[str, object] = {}

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        seen.update(
            length=request.content_length,
            chunked="Transfer-Encoding" in request.headers,
            body=body,
            token=request.query.get("access_token"),
            type=request.content_type,
        )
        return web.json_response({"status": "ok", "token": "S1", "signers": []})

    base = await serve("POST", "/api/signing-external/create.json", create)
    path = tmp_path / "agreement.pdf"
    path.write_bytes(data)
    file = {
        "path": lambda: SigningFile.from_path(path),
        "bytes": lambda: SigningFile.from_bytes(data, name="agreement.pdf"),
        "stream": lambda: SigningFile.from_stream(_chunks(data, 70_001), name="agreement.pdf"),
    }[source]()
    async with client_for(base, body_encoding=encoding) as client:
        created = await client.external.create(
            name="Agreement",
            type="pdf",
            files=[file],
            signers=[ExternalSigner(external_id="u1", email="u1@example.com")],
        )
    assert created.token == "S1"
    body = seen["body"]
    assert isinstance(body, bytes)
    assert seen["length"] == len(body)
    assert seen["chunked"] is False
    assert seen["token"] == TOKEN
    assert seen["type"] == (
        "application/json" if encoding == "json" else "application/x-www-form-urlencoded"
    )
    content, digest = _content_of(body, encoding)
    assert content == data
    assert digest == hashlib.sha256(data).hexdigest()


async def test_spooled_stream_leaves_no_temporary_file(
    serve: Callable[[str, str, Handler], Awaitable[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream is spooled to a temporary file for the request and removed after."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    async def upload(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "ok", "token": "V1"})

    base = await serve("POST", "/api/validation/upload.json", upload)
    async with client_for(base) as client:
        token = await client.validation.upload(
            SigningFile.from_stream(_chunks(b"x" * 100_000, 999), name="signed.asice")
        )
    assert token == "V1"
    assert list(tmp_path.iterdir()) == []


async def _stream_body(
    request: web.Request, data: bytes, pause: float = 0.0
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
    response.content_length = len(data)
    await response.prepare(request)
    for start in range(0, len(data), 256 * 1024):
        await response.write(data[start : start + 256 * 1024])
        if pause:
            await asyncio.sleep(pause)
    await response.write_eof()
    return response


async def test_download_to_a_path_is_atomic_and_complete(
    serve: Callable[[str, str, Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """A 4 MB download lands whole at ``dest``; no partial file is left beside it."""
    data = os.urandom(4 * 1024 * 1024)

    async def download(request: web.Request) -> web.StreamResponse:
        assert request.query["access_token"] == TOKEN
        return await _stream_body(request, data)

    base = await serve("GET", "/api/signing-external/{token}/download", download)
    dest = tmp_path / "signed.pdf"
    async with client_for(base) as client:
        assert await client.external.download("S1", dest) == dest
        async with client.external.open_download("S1") as stream:
            assert stream.content_type == "application/pdf"
            assert stream.content_length == len(data)
            streamed = b"".join([chunk async for chunk in stream])
    assert dest.read_bytes() == data
    assert streamed == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signed.pdf"]


async def test_a_download_cut_off_midway_leaves_no_file(
    serve: Callable[[str, str, Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """The server promises 2 MB, sends 512 KB and hangs up: a TransportError, and
    neither ``dest`` nor a temporary file exists afterwards."""

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 2 * 1024 * 1024
        await response.prepare(request)
        await response.write(b"%PDF" + b"\0" * (512 * 1024))
        assert request.transport is not None
        request.transport.close()
        return response

    base = await serve("GET", "/api/signing-external/{token}/download", download)
    dest = tmp_path / "signed.pdf"
    async with client_for(base) as client:
        with pytest.raises(TransportError) as caught:
            await client.external.download("S1", dest)
    assert TOKEN not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_an_error_envelope_in_place_of_the_file_writes_nothing(
    serve: Callable[[str, str, Handler], Awaitable[str]], tmp_path: Path
) -> None:
    """HTTP 200 with a JSON error body is the matching error, not a file on disk."""

    async def download(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "error",
                "message": "Data validation failed",
                "code": 400,
                "errors": [{"field": "[signer]", "message": "bad", "error_code": 1}],
            }
        )

    base = await serve("GET", "/api/signing-external/{token}/download", download)
    async with client_for(base) as client:
        with pytest.raises(ValidationError):
            await client.external.download("S1", tmp_path / "signed.pdf")
    assert list(tmp_path.iterdir()) == []


async def test_a_slow_trickling_download_is_not_cut_by_a_total_timeout(
    serve: Callable[[str, str, Handler], Awaitable[str]],
) -> None:
    """Only silence counts: chunks every 0.1 s for ~0.8 s pass a 0.4 s read timeout."""
    data = b"%PDF" + b"x" * (2 * 1024 * 1024)

    async def download(request: web.Request) -> web.StreamResponse:
        return await _stream_body(request, data, pause=0.1)

    base = await serve("GET", "/api/signing-external/{token}/download", download)
    async with client_for(base, timeout=Timeout(connect=2, read=0.4)) as client:
        assert await client.external.download("S1") == data


async def test_read_timeout_is_retried_for_status_and_unknown_for_create(
    serve: Callable[[str, str, Handler], Awaitable[str]],
) -> None:
    """A server that never answers: ``status`` (idempotent) is retried and ends in
    RequestTimeoutError; ``create`` is sent once and ends in OutcomeUnknownError."""
    calls: list[str] = []

    async def silent(request: web.Request) -> web.Response:
        calls.append(request.path)
        await asyncio.sleep(5)
        return web.json_response({"status": "ok"})

    app_base = await serve("*", "/{tail:.*}", silent)
    policy = RetryPolicy(max_attempts=2, base_delay=0.01)
    async with client_for(app_base, timeout=Timeout(read=0.2), retry=policy) as client:
        with pytest.raises(RequestTimeoutError) as status_error:
            await client.external.status("S1")
        assert len(calls) == 2
        with pytest.raises(OutcomeUnknownError) as create_error:
            await client.external.create(
                name="A", type="asice", files=[SigningFile.from_bytes(b"x", name="a.txt")]
            )
        assert len(calls) == 3
    for error in (status_error.value, create_error.value):
        assert TOKEN not in str(error)
        assert "access_token=***" in str(error)


async def test_a_borrowed_session_is_used_as_is_and_never_closed(
    serve: Callable[[str, str, Handler], Awaitable[str]],
) -> None:
    """A caller's session that raises for status still gives our error mapping (a 400
    is a ValidationError, sent once), and the client leaves the session open."""
    calls: list[str] = []

    async def status(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response(
            {"status": "error", "message": "Data validation failed", "errors": ["bad"]},
            status=400,
        )

    base = await serve("GET", "/api/signing-external/{token}/status.json", status)
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with client_for(base, session=session) as client:
            with pytest.raises(ValidationError):
                await client.external.status("S1")
        assert not session.closed
    assert len(calls) == 1
    late = client_for(base, session=session)
    with pytest.raises(ClientClosedError):
        await late.external.status("S1")


async def test_a_stream_can_be_sent_only_once(
    serve: Callable[[str, str, Handler], Awaitable[str]],
) -> None:
    """Re-sending a consumed stream would upload an empty file with a valid digest:
    the second use is refused before anything is sent."""
    calls: list[int] = []

    async def upload(request: web.Request) -> web.Response:
        calls.append(len(await request.read()))
        return web.json_response({"status": "ok", "token": "V1"})

    base = await serve("POST", "/api/validation/upload.json", upload)
    file = SigningFile.from_stream(_chunks(b"signed bytes", 4), name="a.asice")
    async with client_for(base) as client:
        assert await client.validation.upload(file) == "V1"
        with pytest.raises(InvalidArgumentError, match="used already"):
            await client.validation.upload(file)
    assert len(calls) == 1


def test_a_base_url_with_a_token_in_it_is_refused_without_echoing_it() -> None:
    """The error names the problem, not the token."""
    with pytest.raises(InvalidArgumentError) as caught:
        DokobitClient(TOKEN, base_url="https://h.example?access_token=SECRET-IN-URL")
    assert "SECRET-IN-URL" not in str(caught.value)
