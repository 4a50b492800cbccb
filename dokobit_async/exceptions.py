"""Every error that dokobit-async raises.

One root, structured attributes, builtin mix-ins where they fit::

    DokobitError
    ├── InvalidArgumentError (ValueError)      bad input, raised before any request
    │   └── ForeignURLError                    download_file() refused a URL (another
    │                                          host, or not a well-formed URL)
    ├── InvalidPostbackError (ValueError)      a request body that is not a postback
    ├── HandlerError                           handlers failed (Router.receive), together
    ├── ClientClosedError (RuntimeError)       the client was used after aclose()
    ├── ReceiverNotRunningError (RuntimeError) the receiver's app is not running
    ├── InboxError                             the postback inbox failed
    │   ├── InboxClosedError (RuntimeError)    used before open() or after close()
    │   └── EventNotFoundError (LookupError)   no event with that id
    ├── TransportError                         the request did not get a usable answer
    │   ├── ConnectError (ConnectionError)     could not connect; nothing was sent
    │   ├── RequestTimeoutError (TimeoutError) connect or read timed out
    │   └── OutcomeUnknownError                a write may or may not have taken effect
    │                                          (answer lost, or a gateway's 502/504)
    ├── DecodeError                            the answer was not what the API sends
    └── APIError                               the API answered with an error
        ├── RedirectError                      3xx: never trusted, never a success
        ├── ValidationError                    400, with per-field ``errors``
        ├── AuthenticationError                401 or 403 (bad or missing access token)
        ├── NotFoundError                      404 (or an unknown signing token)
        ├── RateLimitedError                   429, with ``retry_after``
        └── ServerError                        5xx

No exception from aiohttp ever reaches the caller: aiohttp's exceptions embed the full
request URL, and the access token travels in that URL's query string. Our errors carry
URLs only in redacted form (``access_token=***``), and an aiohttp error is never
chained to them as cause or context, so not even a traceback shows its message. Every
other string an error carries (message, field errors, ``body``, ``excerpt``,
``reason``) has the token masked in every spelling a server may echo it in.

Every error raised for an API call carries that call as ``request`` (as httpx's
errors do): a :class:`~dokobit_async.sansio.Request`, whose ``operation``, ``method``
and ``path`` say which call failed. The access token is never part of a ``Request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._request import Request

__all__ = [
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "ConnectError",
    "DecodeError",
    "DokobitError",
    "EventNotFoundError",
    "FieldError",
    "ForeignURLError",
    "HandlerError",
    "InboxClosedError",
    "InboxError",
    "InvalidArgumentError",
    "InvalidPostbackError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RateLimitedError",
    "ReceiverNotRunningError",
    "RedirectError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "ValidationError",
]


class DokobitError(Exception):
    """Root of every error raised by dokobit-async.

    Attributes:
        request: The API call the error came from (``request.operation``,
            ``request.method``, ``request.path``), set on every error raised once a
            call was built: by the API's answer, the transport, a redirect, decoding,
            a file check. ``None`` for an error raised before there was a call (a bad
            argument to an action, a refused file URL) or by no call at all (the
            receiver, the inbox).
    """

    request: Request | None = None


class InvalidArgumentError(DokobitError, ValueError):
    """An argument is invalid; raised before any request is sent."""


class ForeignURLError(InvalidArgumentError):
    """A file URL points at a host other than the configured API host, or is not a
    well-formed http(s) URL under the API's base URL (a bad port, ``https:host/x``,
    ``javascript:``, whitespace, a ``..`` segment).

    The access token is appended to file URLs, so it is only ever sent to the API host.
    """


class InvalidPostbackError(DokobitError, ValueError):
    """A body sent to the postback receiver is not a postback.

    Attributes:
        reason: Why it is not.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HandlerError(DokobitError):
    """One or more handlers failed for an event: :meth:`Router.receive
    <dokobit_async.Router.receive>` runs every handler, then reports every failure
    together, in one error.

    Attributes:
        event: The event the handlers were given.
        errors: Each failed handler's exception, by handler name, in registration
            order.
    """

    def __init__(self, message: str, *, event: Any, errors: Mapping[str, BaseException]):
        super().__init__(message)
        self.event = event
        self.errors = dict(errors)


class ClientClosedError(DokobitError, RuntimeError):
    """The client was used after :meth:`~dokobit_async.DokobitClient.aclose`."""


class ReceiverNotRunningError(DokobitError, RuntimeError):
    """The postback receiver is not running (its application is not started, or it
    stopped) for something that needs it running, such as
    :meth:`PostbackReceiver.wait_idle <dokobit_async.PostbackReceiver.wait_idle>`."""


class InboxError(DokobitError):
    """The inbox cannot do what was asked (storage error, unusable database file)."""


class InboxClosedError(InboxError, RuntimeError):
    """The inbox was used before :meth:`~Inbox.open` or after :meth:`~Inbox.close`."""


class EventNotFoundError(InboxError, LookupError):
    """No event with this id is in the inbox (never added, or purged).

    Attributes:
        id: The id asked for.
    """

    def __init__(self, id: str):
        super().__init__(f"no event with id {id!r} in the inbox")
        self.id = id


class TransportError(DokobitError):
    """The request did not produce a usable HTTP answer.

    Attributes:
        method: The HTTP method of the failed request.
        url: Its URL, redacted (``access_token=***``).
        reason: A short, redacted description of the underlying failure.
        request: The call (see :class:`DokobitError`).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        reason: str = "",
        request: Request | None = None,
    ):
        super().__init__(message)
        self.method = method
        self.url = url
        self.reason = reason
        self.request = request


class ConnectError(TransportError, ConnectionError):
    """The connection could not be made, so the request was never sent."""


class RequestTimeoutError(TransportError, TimeoutError):
    """Connecting or reading the answer took longer than the configured timeout."""


class OutcomeUnknownError(TransportError):
    """A non-idempotent call may or may not have taken effect.

    Raised when a write (``create``, ``add_signers``, ``remind``, ``seal``, e-delivery,
    validation upload) was sent but no answer arrived, or a gateway answered 502 or
    504 in the API's place (it may have passed the request on). It is never resent
    blindly, because that could create a second signing; check the state (e.g. with
    ``status``) before trying again.

    The :class:`ServerError` built from a gateway's answer is the ``__cause__``.

    Attributes:
        status: The gateway's HTTP status (502 or 504), ``None`` when no answer
            arrived.
    """

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.status = status


class DecodeError(DokobitError):
    """The answer could not be decoded as the API's JSON.

    Attributes:
        status: The HTTP status.
        excerpt: A short, redacted start of the body.
        url: The request's URL, redacted.
        request: The call (see :class:`DokobitError`).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        excerpt: str,
        url: str = "",
        request: Request | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.excerpt = excerpt
        self.url = url
        self.request = request


@attrs.frozen(kw_only=True)
class FieldError:
    """One entry of the error envelope's ``errors`` list.

    Attributes:
        message: What is wrong.
        error_code: The entry's code, when given.
        field: The API's bracket path (e.g. ``[signers][0][email]``), when given.
    """

    message: str
    error_code: int | None = None
    field: str | None = None


class APIError(DokobitError):
    """The API answered with an error envelope or an error HTTP status.

    Attributes:
        status: The HTTP status.
        message: The envelope's message (or ``HTTP <status>``).
        error_code: The envelope's ``error_code`` or ``code``.
        errors: The envelope's field errors, a tuple of :class:`FieldError`.
        method: The HTTP method of the request.
        url: The request's URL, redacted (``access_token=***``).
        body: The decoded envelope, if any (redacted).
        request: The call (see :class:`DokobitError`).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_code: int | None = None,
        errors: tuple[FieldError, ...] = (),
        method: str = "",
        url: str = "",
        body: Mapping[str, Any] | None = None,
        request: Request | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.errors = errors
        self.method = method
        self.url = url
        self.body = body
        self.request = request

    def __str__(self) -> str:
        text = f"{self.message} (HTTP {self.status}"
        if self.error_code is not None:
            text += f", error_code {self.error_code}"
        text += ")"
        if self.method and self.url:
            text += f" on {self.method} {self.url}"
        for item in self.errors:
            where = f"{item.field}: " if item.field else ""
            text += f"; {where}{item.message}"
        return text


class RedirectError(APIError):
    """The API answered with a redirect (3xx), which was not followed.

    JSON actions never follow a redirect: its target's answer could be anything (and a
    307/308 would resend the body there). Downloads follow at most three, and only on
    the base URL's own origin (same scheme, host and port, under its path); this is
    raised for any other, or for one more. A write answered with a redirect may or may
    not have taken effect (a 303 usually means it did): check the state before
    trying again.

    Attributes:
        location_origin: The ``scheme://host[:port]`` of the ``Location`` header
            (``""`` when it is missing or unreadable), never its path or query.
    """

    def __init__(self, message: str, *, location_origin: str = "", **kwargs: Any):
        super().__init__(message, **kwargs)
        self.location_origin = location_origin


class ValidationError(APIError):
    """HTTP 400: the API rejected the data; ``errors`` says which fields."""


class AuthenticationError(APIError):
    """HTTP 401 or 403: the access token is missing, wrong or not allowed this action."""


class NotFoundError(APIError):
    """HTTP 404, or the API's "Signing with such token not found." error."""


class RateLimitedError(APIError):
    """HTTP 429: too many requests.

    Attributes:
        retry_after: Seconds to wait, when the API said (``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """HTTP 5xx: the API failed on its side."""
