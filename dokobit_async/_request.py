"""``Request``: one API call as data. Pure; public as ``dokobit_async.sansio.Request``.

:func:`with_traceparent` is the one change the client makes to a request while
tracing: the trace context rides in the postback URL's query, the only thing of ours
that Dokobit sends back (docs/architecture.md#tracing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs

from ._bodies import file_parts
from .models import SigningFile

__all__ = ["Request", "with_traceparent"]


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


def with_traceparent(request: Request, traceparent: str | None) -> Request:
    """``request`` with ``traceparent=`` added to the query of its ``postback_url``
    field, if it has one whose query has no ``traceparent`` yet; else ``request``
    itself. The caller's request and fields are left as they were (a new request with
    a copy of the fields).

    The receiver checks only the URL's path (its secret segment), so the parameter
    never changes which postbacks are accepted; Dokobit calls the URL as given, so it
    comes back with each postback (inferred: docs/architecture.md#on-the-client).
    """
    fields = request.fields
    if traceparent is None or not fields:
        return request
    url = fields.get("postback_url")
    if not isinstance(url, str) or not url:
        return request
    base, hash_, fragment = url.partition("#")
    query = urlsplit(base).query
    if any(name == "traceparent" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return request
    joint = "&" if query else ("" if base.endswith("?") else "?")
    added = f"{base}{joint}traceparent={traceparent}{hash_}{fragment}"
    return attrs.evolve(request, fields={**fields, "postback_url": added})
