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
    from ._serve import (
        ConnectionGuard,
        GuardedSite,
        raise_open_files_limit,
    )
    from .client import (
        BETA_URL,
        PRODUCTION_URL,
        DokobitClient,
        Download,
        Timeout,
    )
    from .events import (
        DocumentReceived,
        Event,
        SignerDeclined,
        SignerInfo,
        SignerSigned,
        SigningArchived,
        SigningArchiveFailed,
        SigningCompleted,
        SigningCreated,
        UnknownEvent,
        parse_postback,
    )
    from .exceptions import (
        APIError,
        AuthenticationError,
        ClientClosedError,
        ConnectError,
        DecodeError,
        DokobitError,
        EventNotFoundError,
        FieldError,
        ForeignURLError,
        InboxClosedError,
        InboxError,
        InvalidArgumentError,
        InvalidPostbackError,
        NotFoundError,
        OutcomeUnknownError,
        RateLimitedError,
        RedirectError,
        RequestTimeoutError,
        ServerError,
        TransportError,
        ValidationError,
    )
    from .inbox import (
        Inbox,
        InboxState,
        MemoryInbox,
        SQLiteInbox,
        StoredEvent,
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
    from .ratelimit import (
        RateLimit,
    )
    from .receiver import (
        Delivery,
        PostbackReceiver,
        RedactingAccessLogger,
    )
    from .retry import (
        RetryPolicy,
    )
    from .routing import (
        Router,
    )

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
    "Delivery": "receiver",
    "DocumentReceived": "events",
    "ConnectionGuard": "_serve",
    "DocumentStatus": "models",
    "DokobitClient": "client",
    "DokobitError": "exceptions",
    "Download": "client",
    "EDeliveryCreated": "models",
    "EDeliveryRecipient": "models",
    "Event": "events",
    "EventNotFoundError": "exceptions",
    "ExternalSigner": "models",
    "FieldError": "exceptions",
    "ForeignURLError": "exceptions",
    "Inbox": "inbox",
    "InboxClosedError": "exceptions",
    "InboxError": "exceptions",
    "InboxState": "inbox",
    "InternalSigner": "models",
    "InvalidArgumentError": "exceptions",
    "InvalidPostbackError": "exceptions",
    "MemoryInbox": "inbox",
    "NotFoundError": "exceptions",
    "OutcomeUnknownError": "exceptions",
    "PRODUCTION_URL": "client",
    "PostbackReceiver": "receiver",
    "GuardedSite": "_serve",
    "RateLimit": "ratelimit",
    "RateLimitedError": "exceptions",
    "Recipient": "models",
    "RedactingAccessLogger": "receiver",
    "RedirectError": "exceptions",
    "ReportKind": "models",
    "RequestTimeoutError": "exceptions",
    "Result": "models",
    "RetryPolicy": "retry",
    "Role": "models",
    "Router": "routing",
    "SQLiteInbox": "inbox",
    "ServerError": "exceptions",
    "SignerDeclined": "events",
    "SignerInfo": "events",
    "SignerSigned": "events",
    "SignerStatus": "models",
    "SignersAdded": "models",
    "SigningArchiveFailed": "events",
    "SigningArchived": "events",
    "SigningCompleted": "events",
    "SigningCreated": "events",
    "SigningFile": "models",
    "SigningMethod": "models",
    "SigningStatus": "models",
    "SigningType": "models",
    "StatusFile": "models",
    "StatusSigner": "models",
    "StoredEvent": "inbox",
    "Timeout": "client",
    "TransportError": "exceptions",
    "UnknownEvent": "events",
    "ValidationError": "exceptions",
    "parse_postback": "events",
    "raise_open_files_limit": "_serve",
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
    "ConnectionGuard",
    "CreatedSigner",
    "CreatedSigning",
    "DecodeError",
    "Delivery",
    "DocumentReceived",
    "DocumentStatus",
    "DokobitClient",
    "DokobitError",
    "Download",
    "EDeliveryCreated",
    "EDeliveryRecipient",
    "Event",
    "EventNotFoundError",
    "ExternalSigner",
    "FieldError",
    "ForeignURLError",
    "GuardedSite",
    "Inbox",
    "InboxClosedError",
    "InboxError",
    "InboxState",
    "InternalSigner",
    "InvalidArgumentError",
    "InvalidPostbackError",
    "MemoryInbox",
    "NotFoundError",
    "OutcomeUnknownError",
    "PostbackReceiver",
    "RateLimit",
    "RateLimitedError",
    "Recipient",
    "RedactingAccessLogger",
    "RedirectError",
    "ReportKind",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "Role",
    "Router",
    "SQLiteInbox",
    "ServerError",
    "SignerDeclined",
    "SignerInfo",
    "SignerSigned",
    "SignerStatus",
    "SignersAdded",
    "SigningArchiveFailed",
    "SigningArchived",
    "SigningCompleted",
    "SigningCreated",
    "SigningFile",
    "SigningMethod",
    "SigningStatus",
    "SigningType",
    "StatusFile",
    "StatusSigner",
    "StoredEvent",
    "Timeout",
    "TransportError",
    "UnknownEvent",
    "ValidationError",
    "__version__",
    "parse_postback",
    "raise_open_files_limit",
]
