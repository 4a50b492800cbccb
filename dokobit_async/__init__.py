"""Asyncio client, postback receiver and test kit for the Dokobit Universal API.

Everything public is re-exported here; ``__all__`` is the public surface.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .client import BETA_URL, PRODUCTION_URL, DokobitClient, Download, Timeout
from .exceptions import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    DecodeError,
    DokobitError,
    FieldError,
    ForeignURLError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    ValidationError,
)
from .models import (
    AddedSigner,
    Annotation,
    AnnotationPosition,
    CreatedSigner,
    CreatedSigning,
    DocumentStatus,
    EDeliveryCreated,
    EDeliveryRecipient,
    ExternalSigner,
    InternalSigner,
    Recipient,
    ReportKind,
    Result,
    Role,
    SignersAdded,
    SignerStatus,
    SigningFile,
    SigningMethod,
    SigningStatus,
    SigningType,
    StatusFile,
    StatusSigner,
)
from .ratelimit import RateLimit
from .retry import RetryPolicy

try:
    __version__ = version("dokobit-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BETA_URL",
    "PRODUCTION_URL",
    "APIError",
    "AddedSigner",
    "Annotation",
    "AnnotationPosition",
    "AuthenticationError",
    "ClientClosedError",
    "ConnectError",
    "CreatedSigner",
    "CreatedSigning",
    "DecodeError",
    "DocumentStatus",
    "DokobitClient",
    "DokobitError",
    "Download",
    "EDeliveryCreated",
    "EDeliveryRecipient",
    "ExternalSigner",
    "FieldError",
    "ForeignURLError",
    "InternalSigner",
    "InvalidArgumentError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RateLimit",
    "RateLimitedError",
    "Recipient",
    "ReportKind",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "Role",
    "ServerError",
    "SignerStatus",
    "SignersAdded",
    "SigningFile",
    "SigningMethod",
    "SigningStatus",
    "SigningType",
    "StatusFile",
    "StatusSigner",
    "Timeout",
    "TransportError",
    "ValidationError",
    "__version__",
]
