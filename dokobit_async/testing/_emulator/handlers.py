"""Small helpers of the emulator's route handlers: the handler type, request bodies,
JSON and file answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .core import CORE
from .forms import read_body

__all__ = ["Handler", "body_of", "file_response", "ok"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""


def ok(**fields: Any) -> web.Response:
    """A ``{"status": "ok", ...}`` JSON response."""
    return web.json_response({"status": "ok", **fields})


async def body_of(request: web.Request) -> dict[str, Any]:
    """The parsed request body, size-capped by the configuration."""
    config = request.app[CORE].config
    return await read_body(
        request, max_bytes=config.max_upload_bytes, max_index=config.max_list_index
    )


def file_response(data: bytes, filename: str, mime: str) -> web.Response:
    """Raw file bytes with a ``Content-Disposition`` attachment name."""
    safe = filename.replace('"', "").encode("ascii", "replace").decode("ascii")
    return web.Response(
        body=data,
        content_type=mime,
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )
