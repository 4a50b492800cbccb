"""The receiver's side of the OpenTelemetry extra: a SERVER span per postback request,
a CONSUMER span per handler run, and the receiver's counters and backlog gauge
(docs/architecture.md#postbacks-and-handlers).

One trace from the create call to the handler, across processes: the postback's
span takes its parent from the ``traceparent`` the client put in the postback URL's
query (Dokobit calls that URL as given), else from the request's headers (the
global propagator), else it is a root; its own context is stored with the event
(``StoredEvent.traceparent``), and whichever process runs a handler makes that
context both the parent of the handler's span and a link of it.

What is recorded never holds a secret: the route is the template (``{secret}``,
never the path), the query is read for ``traceparent`` only, refusals are short
codes (never the sender's text), and an exception is recorded by its type alone
(its message may quote what a sender sent, or a token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.metrics import Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider
    from opentelemetry.trace import Span, SpanContext, TracerProvider

    from ._telemetry import StoredContext

__all__ = ["ReceiverTelemetry", "format_traceparent"]

_SCOPE = "dokobit_async"
_W3C = TraceContextTextMapPropagator()
_ROOT = trace.set_span_in_context(trace.INVALID_SPAN)  # a parent that makes a root
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


def format_traceparent(context: SpanContext) -> str | None:
    """``context`` as a W3C ``traceparent`` (version 00), or None when it is not valid
    (a span that records nothing and has no parent)."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _stored_context(traceparent: str | None) -> Context | None:
    """The context a stored ``traceparent`` names, or None (none, or not a valid one)."""
    if not traceparent:
        return None
    context = _W3C.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


_Span = TypeVar("_Span", bound="_Current")


class _Current:
    """A span made current while the block runs, ended after it: one step less than
    ``start_as_current_span`` per postback and handler run. An exception that leaves
    the block untold is recorded by its type alone."""

    __slots__ = ("_attached", "_span", "_told")

    def __init__(self, span: Span):
        self._span = span
        self._told = False
        self._attached: Token[Context] | None = None

    def __enter__(self: _Span) -> _Span:
        self._attached = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and not self._told:  # cancelled, say
                self._span.set_attribute("error.type", _error_type(exc))
                self._span.set_status(Status(StatusCode.ERROR))
        finally:
            if self._attached is not None:
                context.detach(self._attached)
            self._span.end()


class _Postback(_Current):
    """:class:`~dokobit_async._telemetry.PostbackSpan` over one SERVER span."""

    __slots__ = ("_telemetry",)

    def __init__(self, span: Span, telemetry: ReceiverTelemetry):
        super().__init__(span)
        self._telemetry = telemetry

    def parsed(self, *, action: str, signing_token: str) -> None:
        attributes = {"dokobit.postback.action": action}
        if signing_token:
            attributes["dokobit.signing.token"] = signing_token
        self._span.set_attributes(attributes)

    def stored(self, *, duplicate: bool) -> None:
        self._told = True
        outcome = "duplicate" if duplicate else "stored"
        self._span.set_attributes(
            {"dokobit.postback.outcome": outcome, "http.response.status_code": 200}
        )
        self._telemetry.acknowledged.add(1, {"dokobit.postback.outcome": outcome})

    def refused(self, reason: str, status: int) -> None:
        self._told = True
        attributes: dict[str, str | int] = {
            "dokobit.postback.outcome": "refused",
            "dokobit.postback.refusal": reason,
            "http.response.status_code": status,
        }
        if status >= 500:  # (a 4xx is the sender's fault, not the server's: no error)
            attributes["error.type"] = str(status)
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.set_attributes(attributes)
        self._telemetry.refused.add(
            1, {"dokobit.postback.refusal": reason, "http.response.status_code": status}
        )

    def traceparent(self) -> str | None:
        return format_traceparent(self._span.get_span_context())


class _HandlerRun(_Current):
    """:class:`~dokobit_async._telemetry.HandlerSpan` over one CONSUMER span."""

    __slots__ = ("_handler", "_telemetry")

    def __init__(self, span: Span, telemetry: ReceiverTelemetry, handler: str):
        super().__init__(span)
        self._telemetry = telemetry
        self._handler = handler

    def finished(self, error: BaseException | None, *, dead: bool = False) -> None:
        self._told = True
        span = self._span
        if error is None:
            span.set_attribute("dokobit.outcome", "ok")
            return
        span.set_attributes(
            {"dokobit.outcome": "dead" if dead else "failed", "error.type": _error_type(error)}
        )
        span.set_status(Status(StatusCode.ERROR))
        self._telemetry.handler_failures.add(1, {"dokobit.handler": self._handler})


def _error_type(error: BaseException) -> str:
    kind, module = type(error), type(error).__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class ReceiverTelemetry:
    """:class:`~dokobit_async._telemetry.ReceiverHooks` on OpenTelemetry's API.

    Args:
        tracer_provider: Where spans go (default: the global provider).
        meter_provider: Where metrics go (default: the global provider).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ):
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self.acknowledged = meter.create_counter(
            "dokobit.postbacks.acknowledged",
            unit="{postback}",
            description="Postbacks answered 200: stored, or a duplicate of a stored one.",
        )
        self.refused = meter.create_counter(
            "dokobit.postbacks.refused",
            unit="{postback}",
            description="Postbacks refused, by reason.",
        )
        self.handler_failures = meter.create_counter(
            "dokobit.handler.failures", unit="{run}", description="Handler runs that failed."
        )
        self.dead_letters = meter.create_counter(
            "dokobit.dead_letters",
            unit="{event}",
            description="Events that failed their last attempt.",
        )
        self._backlogs: dict[int, Callable[[], int]] = {}
        meter.create_observable_gauge(
            "dokobit.inbox.backlog",
            callbacks=[self._observe_backlog],
            unit="{event}",
            description="Events the running dispatchers hold that are not finished.",
        )

    def postback(
        self, *, method: str, route: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> _Postback:
        method = method if method in _METHODS else "_OTHER"
        # the URL's own context first: it is the create call's (see the module docstring)
        parent = _stored_context(query.get("traceparent")) or propagate.extract(headers)
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        return _Postback(span, self)

    def handler(self, name: str, stored: StoredContext, attempt: int) -> _HandlerRun:
        parent = _stored_context(stored.traceparent)
        links: tuple[Link, ...]
        if parent is None:  # a root, not a child of whatever runs the dispatch
            parent, links = _ROOT, ()
        else:
            links = (Link(trace.get_current_span(parent).get_span_context()),)
        attributes: dict[str, str | int] = {
            "dokobit.handler": name,
            "dokobit.attempt": attempt,
            "dokobit.postback.action": stored.action,
            "dokobit.event.id": stored.id,
        }
        if stored.signing_token:
            attributes["dokobit.signing.token"] = stored.signing_token
        span = self._tracer.start_span(
            f"dokobit handle {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        return _HandlerRun(span, self, name)

    def dead_letter(self, stored: StoredContext) -> None:
        self.dead_letters.add(1, {"dokobit.postback.action": stored.action})

    def watch_backlog(self, size: Callable[[], int]) -> Callable[[], None]:
        key = id(size)
        self._backlogs[key] = size

        def unwatch() -> None:
            self._backlogs.pop(key, None)

        return unwatch

    def _observe_backlog(self, options: CallbackOptions) -> Iterator[Observation]:
        if self._backlogs:  # (no dispatcher runs: nothing to observe)
            yield Observation(sum(size() for size in list(self._backlogs.values())))
