"""Typed models: what goes to the API and what comes back.

Request models validate themselves when built, so a mistake raises
:class:`~dokobit_async.exceptions.InvalidArgumentError` (a ``ValueError``) before any
request is sent. Response models keep the whole decoded answer in ``raw``, so fields
that Dokobit adds later are never lost.

Enums are *open*: a value the API sends that this version does not know is kept as a
plain ``str`` instead of failing. Known values are ``str`` enum members, so
``status.status == "completed"`` and ``status.status is DocumentStatus.COMPLETED`` both
work.

The models live in private modules by side (``_models_requests``, ``_models_answers``,
and ``_models_enums`` for the enums both use); this module is their public face.
"""

from __future__ import annotations

from ._models_answers import (
    AddedSigner,
    CreatedSigner,
    CreatedSigning,
    EDeliveryCreated,
    EDeliveryRecipient,
    Result,
    SignersAdded,
    SigningStatus,
    StatusFile,
    StatusSigner,
)
from ._models_answers import TokenResult as TokenResult  # the client's, not public
from ._models_enums import (
    AnnotationPosition,
    DocumentStatus,
    ReportKind,
    Role,
    SignerStatus,
    SigningMethod,
    SigningType,
)
from ._models_requests import (
    Annotation,
    ExternalSigner,
    InternalSigner,
    Recipient,
    SigningFile,
)

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
