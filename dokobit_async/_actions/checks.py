"""Argument checks and request cores shared by the builders of both signing flows.

Every check raises :class:`~dokobit_async.exceptions.InvalidArgumentError` before
anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import attrs

from .._bodies import FilePart
from .._request import Request
from ..events import is_valid_token
from ..exceptions import InvalidArgumentError
from ..models import ExternalSigner, InternalSigner, SigningFile, SigningType

Flow = Literal["external", "internal"]

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")  # what quote(..., safe="") never escapes
_PDF_ONLY = ("annotation_position", "annotation_personal_code", "flatten_pdf")


def prefix(flow: Flow) -> str:
    """The path prefix of a signing flow: ``/api/signing-external``."""
    return f"/api/signing-{flow}"


def segment(name: str, token: str) -> str:
    """``token`` quoted as one path segment; dot segments and blanks are refused."""
    if not is_valid_token(token):
        raise InvalidArgumentError(f"{name} must be a non-empty string other than . or ..")
    # a token of characters that ``quote`` leaves alone (every token Dokobit issues)
    # is its own quoting: the check costs a fraction of the quoting
    return token if _UNRESERVED.fullmatch(token) else quote(token, safe="")


def aware(name: str, value: datetime | None) -> datetime | None:
    """``value`` if it is ``None`` or a timezone-aware datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{name} must be timezone-aware (a naive datetime is ambiguous)"
        )
    return value


def signing_type(value: SigningType | str) -> SigningType:
    """``value`` as a known :class:`SigningType`."""
    try:
        return SigningType(value)
    except ValueError:
        known = ", ".join(t.value for t in SigningType)
        raise InvalidArgumentError(f"unknown signing type {value!r}; one of: {known}") from None


def files(items: Sequence[SigningFile], *, with_digest: bool) -> list[FilePart]:
    """The body parts of a non-empty list of distinct :class:`SigningFile` objects."""
    if isinstance(items, SigningFile) or not items:
        raise InvalidArgumentError("files must be a non-empty list of SigningFile")
    for file in items:
        if not isinstance(file, SigningFile):
            raise InvalidArgumentError(f"files must hold SigningFile objects, not {file!r}")
    if len({id(f) for f in items}) != len(items):
        raise InvalidArgumentError("the same SigningFile object is listed twice")
    return [FilePart(file=f, with_digest=with_digest) for f in items]


def people(kind: type[Any], items: Iterable[Any], label: str) -> list[dict[str, Any]]:
    """``items`` (all of type ``kind``) as the body's nested dicts."""
    listed = list(items)
    for item in listed:
        if not isinstance(item, kind):
            raise InvalidArgumentError(f"{label} must be {kind.__name__} objects, not {item!r}")
    return [attrs.asdict(p, recurse=True) for p in listed]


def methods(values: Any) -> list[Any] | None:
    """``allowed_signing_methods`` as a list (a bare string is refused)."""
    if values is None:
        return None
    if isinstance(values, str):
        raise InvalidArgumentError("allowed_signing_methods must be a list, not a string")
    return list(values)


def create(
    flow: Flow,
    *,
    name: str,
    type: SigningType | str,
    files_: Sequence[SigningFile],
    signers: Iterable[ExternalSigner | InternalSigner],
    options: dict[str, Any],
) -> Request:
    """The ``create`` request of either flow."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name must be a non-empty string")
    kind = signing_type(type)
    if kind is not SigningType.PDF:
        given = [f for f in _PDF_ONLY if options.get(f) is not None]
        if given:
            raise InvalidArgumentError(f"{', '.join(given)} apply to type='pdf' only")
    signer_kind = ExternalSigner if flow == "external" else InternalSigner
    fields: dict[str, Any] = {
        "type": kind.value,
        "name": name,
        "files": files(files_, with_digest=True),
        "signers": people(signer_kind, signers, "signers") or None,
        **options,
        "allowed_signing_methods": methods(options.get("allowed_signing_methods")),
    }
    return Request(
        operation=f"{flow}.create",
        method="POST",
        path=f"{prefix(flow)}/create.json",
        fields=fields,
    )


def add_signers(
    flow: Flow, token: str, added: list[dict[str, Any]], fields: dict[str, Any]
) -> Request:
    """The ``add_signers`` request of either flow."""
    if not added:
        raise InvalidArgumentError("signers must not be empty")
    return Request(
        operation=f"{flow}.add_signers",
        method="POST",
        fields={"signers": added, **fields},
        path=f"{prefix(flow)}/{segment('token', token)}/signers/add.json",
    )


def update(flow: Flow, token: str, fields: dict[str, Any]) -> Request:
    """The ``update`` request of either flow: at least one option must be given."""
    if "allowed_signing_methods" in fields:
        fields["allowed_signing_methods"] = methods(fields["allowed_signing_methods"])
    if all(v is None for v in fields.values()):
        raise InvalidArgumentError("update needs at least one option to change")
    return Request(
        operation=f"{flow}.update",
        method="POST",
        fields=fields,
        idempotent=True,
        path=f"{prefix(flow)}/{segment('token', token)}/update.json",
    )
