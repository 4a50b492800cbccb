"""Loopback hosts for the client's hardening tests.

:func:`loopback` serves one handler on 127.0.0.1 (plain HTTP, or HTTPS with a
throw-away certificate) and records every request that reaches it: method, raw target
(path and query exactly as sent), headers and body. A test can then assert what did,
and what did not, arrive at a host.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class Seen:
    """One request as the host received it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def text(self) -> str:
        """Everything about the request, as one text to search."""
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.method} {self.target}\n{headers}\n\n" + self.body.decode("utf-8", "replace")


async def ok(request: web.Request) -> web.StreamResponse:
    """The default answer: a JSON ``{"status": "ok"}``."""
    return web.json_response({"status": "ok"})


class Host:
    """A running loopback host: ``url`` (origin, no trailing slash), ``seen`` (every
    request so far) and ``handler`` (may be replaced while the host runs)."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.url = ""
        self.seen: list[Seen] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                method=request.method,
                target=request.raw_path,
                headers=tuple(request.headers.items()),
                body=body,
            )
        )
        return await self.handler(request)


@contextlib.asynccontextmanager
async def loopback(
    handler: Handler = ok, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Host]:
    """Serve ``handler`` for every method and path on 127.0.0.1 (a random port)."""
    host = Host(handler)
    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_route("*", "/{tail:.*}", host._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        host.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        yield host
    finally:
        await runner.cleanup()


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made with the ``openssl`` command: ``(server
    context, client context that trusts it)``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed"
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
