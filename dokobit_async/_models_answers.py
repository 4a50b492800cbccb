"""The answer models: what comes back from the API.

Field names are the API's own. Every field but tokens is optional, and ``raw`` holds
the whole decoded object, including fields this version does not know. Part of
:mod:`dokobit_async.models`, which re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from ._models_enums import DocumentStatus, Role, SignerStatus, SigningType

__all__ = [
    "AddedSigner",
    "CreatedSigner",
    "CreatedSigning",
    "EDeliveryCreated",
    "EDeliveryRecipient",
    "Result",
    "SignersAdded",
    "SigningStatus",
    "StatusFile",
    "StatusSigner",
    "TokenResult",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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
