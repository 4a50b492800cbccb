"""Typed models: what goes to the API and what comes back.

Request models validate themselves when built, so a mistake raises
:class:`~dokobit_async.exceptions.InvalidArgumentError` (a ``ValueError``) before any
request is sent. Response models keep the whole decoded answer in ``raw``, so fields
that Dokobit adds later are never lost.

Enums are *open*: a value the API sends that this version does not know is kept as a
plain ``str`` instead of failing. Known values are ``str`` enum members, so
``status.status == "completed"`` and ``status.status is DocumentStatus.COMPLETED`` both
work.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from .exceptions import InvalidArgumentError

__all__ = [
    "AddedSigner",
    "Annotation",
    "AnnotationPosition",
    "CreatedSigner",
    "CreatedSigning",
    "DocumentStatus",
    "EDeliveryCreated",
    "EDeliveryRecipient",
    "ExternalSigner",
    "InternalSigner",
    "Recipient",
    "ReportKind",
    "Result",
    "Role",
    "SignerStatus",
    "SignersAdded",
    "SigningFile",
    "SigningMethod",
    "SigningStatus",
    "SigningType",
    "StatusFile",
    "StatusSigner",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _OpenEnum(str, enum.Enum):
    """A ``str`` enum whose fields also accept values it does not know."""

    def __str__(self) -> str:
        return str(self.value)


class SigningType(_OpenEnum):
    """Document or container type of a signing (``type``)."""

    PDF = "pdf"
    ASICE = "asice"
    BDOC = "bdoc"
    EDOC = "edoc"
    ADOC = "adoc"
    ADOC_CEDOC = "adoc.cedoc"


class Role(_OpenEnum):
    """A participant's role; viewers never sign and never block completion."""

    SIGNER = "signer"
    VIEWER = "viewer"


class AnnotationPosition(_OpenEnum):
    """Where the signature annotation goes on a PDF (``annotation_position``)."""

    FIRST_TOP = "first_top"
    FIRST_BOTTOM = "first_bottom"
    LAST_TOP = "last_top"
    LAST_BOTTOM = "last_bottom"
    NONE = "none"


class SigningMethod(_OpenEnum):
    """Values of ``allowed_signing_methods``."""

    MOBILE = "mobile"
    SMARTID = "smartid"
    SMARTCARD = "smartcard"
    EPARAKSTS_MOBILE = "eparaksts_mobile"
    BANKID_NO = "bankid_no"
    BANKID_SE = "bankid_se"
    AUDKENNI_APP = "audkenni_app"
    FTN = "ftn"
    MITID = "mitid"
    ELECTRONIC_ID = "electronic_id"
    ITSME = "itsme"
    IDIN = "idin"
    SWISSCOM = "swisscom"
    SMS_OTP = "sms_otp"


class DocumentStatus(_OpenEnum):
    """A signing's status as the status endpoint reports it (open: more may come)."""

    PENDING = "pending"
    COMPLETED = "completed"
    ARCHIVED = "archived"
    FAILED = "failed"


class SignerStatus(_OpenEnum):
    """A participant's status in a status response (open: more may come)."""

    PENDING = "pending"
    SIGNED = "signed"
    DECLINED = "declined"
    FAILED = "failed"


class ReportKind(_OpenEnum):
    """The four validation reports."""

    REPORT_PDF = "report-pdf"
    DETAILED_REPORT_PDF = "detailed-report-pdf"
    REPORT_XML = "report-xml"
    DIAGNOSTIC_DATA_XML = "diagnostic-data-xml"


# ---------------------------------------------------------------- request models


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


# --------------------------------------------------------------- response models
# Field names are the API's own. Every field but tokens is optional, and ``raw`` holds
# the whole decoded object, including fields this version does not know.


def _raw() -> Any:
    return attrs.field(default=_EMPTY, repr=False, eq=False)


@attrs.frozen(kw_only=True)
class Result:
    """The answer of an action that returns only ``{"status": "ok"}`` (and maybe more)."""

    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class TokenResult:
    """An answer that carries one new token (e.g. a validation upload)."""

    token: str
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class CreatedSigner:
    """A participant as the create call returns it.

    For internal signings ``redirect_uri`` is the URL of the signing page to send the
    person to (also available as :attr:`signing_url`), not your own return URL.
    """

    token: str
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    code: str | None = None
    country: str | None = None
    email: str | None = None
    redirect_uri: str | None = None
    raw: Mapping[str, Any] = _raw()

    @property
    def signing_url(self) -> str | None:
        """The signing page of an internal signing (the wire's ``redirect_uri``)."""
        return self.redirect_uri


@attrs.frozen(kw_only=True)
class CreatedSigning:
    """The answer of ``create``: the signing token and the participants' tokens."""

    token: str
    signers: tuple[CreatedSigner, ...] = ()
    raw: Mapping[str, Any] = _raw()

    def signer(self, external_id: str) -> CreatedSigner:
        """The created participant with this ``external_id``."""
        for signer in self.signers:
            if signer.external_id == external_id:
                return signer
        raise KeyError(external_id)


@attrs.frozen(kw_only=True)
class StatusFile:
    """A file of a signing; fetch ``url`` with ``client.download_file``."""

    name: str | None = None
    url: str | None = None
    mime_type: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class StatusSigner:
    """A participant in a status response."""

    token: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    code: str | None = None
    country: str | None = None
    email: str | None = None
    type: str | None = None
    status: SignerStatus | str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class SigningStatus:
    """The status endpoint's answer; ``status`` is the document state."""

    status: DocumentStatus | str
    name: str | None = None
    type: SigningType | str | None = None
    date_created: datetime | None = None
    deadline: datetime | None = None
    filename: str | None = None
    files: tuple[StatusFile, ...] = ()
    signers: tuple[StatusSigner, ...] = ()
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class AddedSigner:
    """A participant as ``add_signers`` returns it (note: ``name``/``surname`` here)."""

    token: str
    external_id: str | None = None
    name: str | None = None
    surname: str | None = None
    email: str | None = None
    code: str | None = None
    country_code: str | None = None
    role: Role | str | None = None
    company: str | None = None
    position: str | None = None
    phone: str | None = None
    notifications_language: str | None = None
    redirect_uri: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class SignersAdded:
    """The answer of ``add_signers``."""

    signers: tuple[AddedSigner, ...] = ()
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class EDeliveryRecipient:
    """A recipient as e-delivery ``create`` returns it."""

    token: str
    external_id: str | None = None
    code: str | None = None
    country: str | None = None
    email: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(kw_only=True)
class EDeliveryCreated:
    """The answer of e-delivery ``create``."""

    token: str
    recipients: tuple[EDeliveryRecipient, ...] = ()
    raw: Mapping[str, Any] = _raw()
