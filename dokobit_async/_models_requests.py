"""The request models: what goes to the API, checked when built.

A mistake raises :class:`~dokobit_async.exceptions.InvalidArgumentError` (a
``ValueError``) before any request is sent. Part of :mod:`dokobit_async.models`, which
re-exports the public names.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable
from pathlib import Path

import attrs

from ._models_enums import Role
from .exceptions import InvalidArgumentError

__all__ = [
    "Annotation",
    "ExternalSigner",
    "InternalSigner",
    "Recipient",
    "SigningFile",
]


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string")


def _check_code_country(owner: str, code: str | None, country_code: str | None) -> None:
    if code is not None and not country_code:
        raise InvalidArgumentError(f"{owner}: a personal code needs a country_code")


@attrs.frozen(kw_only=True)
class SigningFile:
    """A file to upload: build it with :meth:`from_path`, :meth:`from_bytes` or
    :meth:`from_stream`.

    Files are never read into memory whole: the content is base64-encoded into the
    request body chunk by chunk, and the SHA-256 digest is computed in one pass first.
    A stream is spooled to a temporary file during that pass, so it can be used once.
    """

    name: str
    path: Path | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    stream: AsyncIterable[bytes] | None = attrs.field(default=None, repr=False)
    on_progress: Callable[[int, int], object] | None = attrs.field(
        default=None, repr=False, eq=False
    )
    """Called as ``on_progress(sent, total)`` (raw bytes) while the file is sent."""

    def __attrs_post_init__(self) -> None:
        _require_text("SigningFile.name", self.name)
        sources = [s for s in (self.path, self.data, self.stream) if s is not None]
        if len(sources) != 1:
            raise InvalidArgumentError("SigningFile needs exactly one of path, data, stream")

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> SigningFile:
        """A file on disk; ``name`` defaults to the file's own name."""
        resolved = Path(path)
        if not resolved.is_file():
            raise InvalidArgumentError(f"not a readable file: {resolved}")
        return cls(name=name or resolved.name, path=resolved, on_progress=on_progress)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, name: str, on_progress: Callable[[int, int], object] | None = None
    ) -> SigningFile:
        """Content already in memory."""
        return cls(name=name, data=bytes(data), on_progress=on_progress)

    @classmethod
    def from_stream(
        cls,
        stream: AsyncIterable[bytes],
        *,
        name: str,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> SigningFile:
        """An async iterable of byte chunks (e.g. an upload being received)."""
        return cls(name=name, stream=stream, on_progress=on_progress)


@attrs.frozen(kw_only=True)
class Annotation:
    """Placement of a visible signature annotation on a PDF page (defaults: API's)."""

    page: int | None = None
    top: int | None = None
    left: int | None = None
    language: str | None = None


@attrs.frozen(kw_only=True)
class ExternalSigner:
    """A participant of an external signing, invited by e-mail (or SMS).

    ``code`` (personal code) needs ``country_code``; ``email`` or ``phone`` is required.
    """

    external_id: str
    name: str | None = None
    surname: str | None = None
    email: str | None = None
    code: str | None = None
    country_code: str | None = None
    role: Role | str | None = None
    company: str | None = None
    position: str | None = None
    phone: str | None = None
    sequence: int | None = None
    notifications_language: str | None = None
    custom_reason: str | None = None
    annotation: Annotation | None = None

    def __attrs_post_init__(self) -> None:
        _require_text("ExternalSigner.external_id", self.external_id)
        _check_code_country(f"signer {self.external_id!r}", self.code, self.country_code)
        if not self.email and not self.phone:
            raise InvalidArgumentError(f"signer {self.external_id!r} needs an email or a phone")


@attrs.frozen(kw_only=True)
class InternalSigner:
    """A participant of an internal signing, redirected to the signing page by you."""

    external_id: str
    role: Role | str | None = None
    code: str | None = None
    country_code: str | None = None
    phone: str | None = None
    language: str | None = None
    custom_reason: str | None = None
    annotation: Annotation | None = None

    def __attrs_post_init__(self) -> None:
        _require_text("InternalSigner.external_id", self.external_id)
        _check_code_country(f"signer {self.external_id!r}", self.code, self.country_code)


@attrs.frozen(kw_only=True)
class Recipient:
    """An e-delivery recipient; ``country_code`` and an ``email`` or ``phone`` are
    required (SMS is used only when there is no e-mail)."""

    external_id: str
    code: str
    country_code: str
    email: str | None = None
    phone: str | None = None
    notifications_language: str | None = None

    def __attrs_post_init__(self) -> None:
        _require_text("Recipient.external_id", self.external_id)
        _require_text("Recipient.code", self.code)
        _require_text("Recipient.country_code", self.country_code)
        if not self.email and not self.phone:
            raise InvalidArgumentError(f"recipient {self.external_id!r} needs an email or a phone")
