"""What the emulator records for tests to inspect: requests, postbacks, outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import frozen

__all__ = ["OutboxMessage", "PostbackAttempt", "RequestRecord"]


@frozen(kw_only=True)
class RequestRecord:
    """One API request the emulator received (the access token is never kept)."""

    method: str
    """HTTP method."""
    path: str
    """URL path, without the query string."""
    operation: str
    """Operation name, e.g. ``"signing-external/create"`` (``"unknown"`` off-route)."""
    status: int | None
    """HTTP status answered; ``None`` when the connection was dropped."""
    fault: str | None
    """The injected fault kind (a :class:`FaultKind` value), if any."""
    time: datetime
    """When the request arrived."""


@frozen(kw_only=True)
class PostbackAttempt:
    """One delivery attempt of a postback."""

    url: str
    """The ``postback_url`` posted to."""
    payload: dict[str, Any]
    """The JSON body sent."""
    attempt: int
    """1 for the first delivery, 2..4 for the retries."""
    status: int | None
    """HTTP status the receiver answered, or ``None`` on a connection error."""
    error: str | None
    """Error text when no HTTP status was received."""
    time: datetime
    """When the attempt was made."""

    @property
    def ok(self) -> bool:
        """True if the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> int | str:
        """The HTTP status, or the error text."""
        return self.status if self.status is not None else (self.error or "error")

    @property
    def action(self) -> str:
        """The postback ``action``."""
        return str(self.payload.get("action", ""))


@frozen(kw_only=True)
class OutboxMessage:
    """An "e-mail" (or SMS) the emulator would have sent to a participant."""

    kind: str
    """``"invitation"``, ``"reminder"`` or ``"delivery"``."""
    email: str | None
    """Recipient e-mail address."""
    phone: str | None
    """Recipient phone (used when there is no e-mail)."""
    signing_token: str
    """Signing (or e-delivery) token."""
    signer_token: str
    """Participant (or recipient) token."""
    url: str
    """Link in the message: the signing page or the delivery page."""
    message: str | None
    """Free text sent along (``comment`` or reminder ``message``)."""
    time: datetime
    """When it was "sent"."""
