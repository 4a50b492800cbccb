"""Asyncio client, postback receiver and test kit for the Dokobit Universal API.

Everything public is re-exported here; ``__all__`` is the public surface. Names are
imported on first use (PEP 562), so importing a pure module such as
``dokobit_async.sansio`` does not pull in aiohttp.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS: dict[str, str] = {
    "APIError": "exceptions",
    "AddedSigner": "models",
    "Annotation": "models",
    "AnnotationPosition": "models",
    "AuthenticationError": "exceptions",
    "BETA_URL": "client",
    "ClientClosedError": "exceptions",
    "ConnectError": "exceptions",
    "CreatedSigner": "models",
    "CreatedSigning": "models",
    "DecodeError": "exceptions",
    "DocumentStatus": "models",
    "DokobitClient": "client",
    "DokobitError": "exceptions",
    "Download": "client",
    "EDeliveryCreated": "models",
    "EDeliveryRecipient": "models",
    "ExternalSigner": "models",
    "FieldError": "exceptions",
    "ForeignURLError": "exceptions",
    "InternalSigner": "models",
    "InvalidArgumentError": "exceptions",
    "NotFoundError": "exceptions",
    "OutcomeUnknownError": "exceptions",
    "PRODUCTION_URL": "client",
    "RateLimit": "ratelimit",
    "RateLimitedError": "exceptions",
    "Recipient": "models",
    "ReportKind": "models",
    "RequestTimeoutError": "exceptions",
    "Result": "models",
    "RetryPolicy": "retry",
    "Role": "models",
    "ServerError": "exceptions",
    "SignerStatus": "models",
    "SignersAdded": "models",
    "SigningFile": "models",
    "SigningMethod": "models",
    "SigningStatus": "models",
    "SigningType": "models",
    "StatusFile": "models",
    "StatusSigner": "models",
    "Timeout": "client",
    "TransportError": "exceptions",
    "ValidationError": "exceptions",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
