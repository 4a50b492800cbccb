"""The seam between the library and OpenTelemetry: two slots, empty unless
:func:`dokobit_async.otel.instrument` filled them.

Pure on purpose, the standard library its only import (docs/architecture.md#tracing):
the client, the receiver, the dispatcher and the workers read :data:`client` or
:data:`receiver` once per call, postback or handler run, and do nothing more while it
is ``None``. So
without the ``otel`` extra, or with it installed but never switched on, no
OpenTelemetry module is imported and the hot paths pay one attribute read each.
Switched on while no provider is in effect, the implementations answer a shared span
that does nothing, at once (``_otel_common.InEffect``).

The protocols below say what those paths tell the telemetry; the implementations live
in ``dokobit_async._otel_client`` and ``dokobit_async._otel_receiver``, reached only
through :mod:`dokobit_async.otel`. What they are told never holds the access token or
a postback URL's secret: URLs are given as shown (redacted), routes as templates.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from .sansio import Request

__all__ = [
    "CallSpan",
    "ClientHooks",
    "HandlerSpan",
    "PostbackSpan",
    "ReceiverHooks",
    "StoredContext",
    "client",
    "receiver",
    "with_traceparent",
]


class CallSpan(Protocol):
    """One API call as the telemetry sees it, from before its first attempt to its
    result (retries and rate-limit waits included)."""

    def signing(self, token: str) -> None:
        """The call is about this signing (known from the path, or from a create's
        answer)."""

    def answered(self, status: int | None) -> None:
        """An attempt ended: with an HTTP answer of this status, or with none (the
        connection failed)."""

    def failed(self, error: BaseException) -> None:
        """The call ended with ``error`` (after its last attempt; the context manager
        tells it when the call raises)."""

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of this call's span (for a postback URL), or
        ``None`` when nothing is recorded."""


class ClientHooks(Protocol):
    """What the client tells the telemetry."""

    propagate_to_postbacks: bool
    """Whether a create call adds its ``traceparent`` to the postback URL it sends."""

    def call(self, request: Request, base_url: str) -> AbstractContextManager[CallSpan]:
        """A span around one API call to ``base_url`` (its URL is ``base_url`` and
        ``request.path``; the access token is never given)."""

    def rate_limit_waited(self, seconds: float) -> None:
        """A request waited this long for a rate-limit slot (0 when one was free)."""


class PostbackSpan(Protocol):
    """One postback request as the telemetry sees it."""

    def verified(self) -> None:
        """The URL's secret verified (or the receiver has none): the sender may now
        choose the span's parent (the URL's ``traceparent``, its headers). A refusal
        before this starts a trace of its own."""

    def parsed(self, *, action: str, signing_token: str) -> None:
        """The body was read: the postback's action and signing."""

    def stored(self, *, duplicate: bool) -> None:
        """The postback was stored (or was a duplicate of a stored one) and is
        acknowledged."""

    def refused(self, reason: str, status: int) -> None:
        """The postback was refused with ``status``; ``reason`` is a short code
        (never the sender's text)."""

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of this postback's span, to store with the event."""


class StoredContext(Protocol):
    """What the telemetry reads of a stored event (an inbox's ``StoredEvent`` is one;
    a protocol, so that this pure module imports nothing of the receiver)."""

    @property
    def id(self) -> str:
        """The event's dedupe key."""

    @property
    def signing_token(self) -> str:
        """Its signing's token ("" when it has none)."""

    @property
    def action(self) -> str:
        """Its postback's action."""

    @property
    def traceparent(self) -> str | None:
        """The context of the span that received it, if any."""

    @property
    def replays(self) -> int:
        """How many times it was replayed (0: a first delivery)."""


class HandlerSpan(Protocol):
    """One handler's run for one event."""

    def finished(self, error: BaseException | None, *, dead: bool = False) -> None:
        """The run ended: ``error`` is ``None`` on success; ``dead`` when this
        failure made the event a dead letter."""


class PollSpan(Protocol):
    """One reconciler look at a tracked signing."""

    def looked(self, outcome: str, *, missed: int) -> None:
        """How it ended (``changed``, ``unchanged``, ``final``, ``gone``, ``failed``,
        ``not_stored``), and how many missed postbacks it stored."""


class ReceiverHooks(Protocol):
    """What the receiver, the dispatcher and the workers tell the telemetry."""

    def postback(
        self, *, method: str, route: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> AbstractContextManager[PostbackSpan]:
        """A span around one postback request. ``route`` is the path template (the
        secret segment never shows); once :meth:`PostbackSpan.verified`, the parent
        context is the ``traceparent`` of the URL's ``query`` (read for nothing else),
        else what the ``headers`` carry."""

    def handler(
        self, name: str, stored: StoredContext, attempt: int
    ) -> AbstractContextManager[HandlerSpan]:
        """A span around ``name``'s run for ``stored`` (its parent and link: the
        span that received the postback, from ``stored.traceparent``)."""

    def dead_letter(self, stored: StoredContext) -> None:
        """``stored`` became a dead letter."""

    def watch_backlog(self, size: Callable[[], int]) -> Callable[[], None]:
        """Report ``size()`` as the backlog while registered; returns the function
        that unregisters it."""

    def poll(self, signing_token: str, flow: str) -> AbstractContextManager[PollSpan]:
        """A span around one reconciler look (its status call is a child of it)."""


_Add = TypeVar("_Add", bound=Callable[..., Any])
_TAKES_TRACEPARENT: dict[Any, bool] = {}  # by ``add``'s function (an inbox class's)


def with_traceparent(add: _Add, traceparent: str | None) -> _Add:
    """An inbox's ``add`` that stores ``traceparent`` with the event, when there is
    one and ``add`` takes it: an inbox written to the older protocol (no
    ``traceparent`` parameter) keeps working instrumented, its handlers' spans roots.
    Whether it takes it is decided once per ``add`` function."""
    if traceparent is None:
        return add
    function = getattr(add, "__func__", add)
    takes = _TAKES_TRACEPARENT.get(function)
    if takes is None:
        try:
            parameters = list(inspect.signature(add).parameters.values())
        except (TypeError, ValueError):  # (no signature to read: do not guess)
            parameters = []
        if len(_TAKES_TRACEPARENT) > 64:  # (a cache: a process has few inbox classes)
            _TAKES_TRACEPARENT.clear()
        takes = _TAKES_TRACEPARENT[function] = any(
            p.name == "traceparent" or p.kind is p.VAR_KEYWORD for p in parameters
        )
    return cast(_Add, functools.partial(add, traceparent=traceparent)) if takes else add


client: ClientHooks | None = None
"""The client's telemetry, or ``None`` (the default: nothing is recorded)."""

receiver: ReceiverHooks | None = None
"""The receiver's, the dispatcher's and the workers' telemetry, or ``None``."""
