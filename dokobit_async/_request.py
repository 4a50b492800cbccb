"""``Request``: one API call as data. Pure; public as ``dokobit_async.sansio.Request``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._bodies import file_parts
from .models import SigningFile

__all__ = ["Request"]


def _field_names(fields: Mapping[str, Any] | None) -> str:
    # names only: values may hold personal data or a postback URL's secret segment
    return "None" if fields is None else "<" + ", ".join(map(str, fields)) + ">"


@attrs.frozen(kw_only=True)
class Request:
    """One API call as data: the client sends it, the tests inspect it.

    Its ``repr`` shows the names of the fields, never their values. The access token
    is never part of it (the client adds it on the wire).

    Attributes:
        operation: The action's name (``"external.create"``, ``"download_file"``).
        method: The HTTP method.
        path: The URL path, starting with ``/api/``, with any query.
        fields: The body as nested dicts and lists (``None`` values are dropped on
            encoding); ``None`` for a call without a body.
        idempotent: Whether the call may be repeated after its outcome became unknown.
        returns_file: Whether the answer is a file (a download).
    """

    operation: str
    method: str
    path: str
    fields: Mapping[str, Any] | None = attrs.field(default=None, repr=_field_names)
    idempotent: bool = False
    returns_file: bool = False

    @property
    def files(self) -> tuple[SigningFile, ...]:
        """The files this request uploads, in body order."""
        return tuple(part.file for part in file_parts(self.fields))
