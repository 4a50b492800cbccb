"""The receiver's side of the OpenTelemetry extra: a SERVER span per postback request,
a CONSUMER span per handler run, and the receiver's counters and backlog gauge
(docs/architecture.md#postbacks-and-handlers).

One trace from the create call to the handler, across processes: the postback's
span takes its parent from the ``traceparent`` the client put in the postback URL's
query (Dokobit calls that URL as given), else from the request's headers (the
global propagator), else it is a root; the sender's context is read only once the
URL's secret verified (a sender who does not know it chooses no trace: refused
before, the span is a root); its own context is stored with the event
(``StoredEvent.traceparent``), and whichever process runs a handler makes that
context both the parent of the handler's span and a link of it.

What is recorded never holds a secret: the route is the template (``{secret}``,
never the path), the query is read for ``traceparent`` only, refusals are short
codes (never the sender's text), and an exception is recorded by its type alone
(its message may quote what a sender sent, or a token). Nothing OpenTelemetry raises
reaches the receiver, the dispatcher or a worker (``_otel_common``). While no provider
is in effect (``_otel_common.InEffect``), each hook answers the shared span that does
nothing: no span, no context read or attached, no counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from time import time_ns
from typing import TYPE_CHECKING

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import Observation
from opentelemetry.trace import INVALID_SPAN, Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__, _telemetry
from ._otel_common import (
    NOTHING,
    Current,
    InEffect,
    Nothing,
    error_type,
    guarded,
    started,
    swallowed,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ._telemetry import StoredContext

__all__ = ["ReceiverTelemetry"]

_SCOPE = "dokobit_async"
_W3C = TraceContextTextMapPropagator()
_ROOT = trace.set_span_in_context(trace.INVALID_SPAN)  # a parent that makes a root
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)

_backlogs: dict[int, Callable[[], int]] = {}
"""Every running dispatcher's backlog, whichever ``instrument()`` it started under:
module-wide, since a meter provider gives a second ``instrument()`` the gauge the
first registered, with the first's callback."""


def _stored_context(traceparent: str | None) -> Context | None:
    """The context a stored ``traceparent`` names, or None (none, or not a valid one)."""
    if not traceparent:
        return None
    context = _W3C.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


class _Postback(Current):
    """:class:`~dokobit_async._telemetry.PostbackSpan` over one SERVER span.

    The span starts (at the time the request arrived) once its parent is known: the
    sender's, from the URL's query or the headers, once the URL's secret verified
    (:meth:`verified`); a root for a refusal before that, so that an unauthenticated
    sender cannot choose the trace it joins."""

    __slots__ = ("_arrived", "_headers", "_method", "_query", "_route", "_telemetry")

    def __init__(
        self,
        telemetry: ReceiverTelemetry,
        method: str,
        route: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ):
        super().__init__(INVALID_SPAN)
        self._telemetry = telemetry
        self._method = method
        self._route = route
        self._query: Mapping[str, str] | None = query
        self._headers = headers
        self._arrived = time_ns()

    def __enter__(self) -> _Postback:
        return self  # current from its start

    def _start(self, parent: Context) -> None:
        if self._query is None:  # (started already)
            return
        self._query = None
        span = started(
            lambda: self._telemetry.tracer.start_span(
                f"{self._method} {self._route}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": self._method, "http.route": self._route},
                start_time=self._arrived,
            )
        )
        if span is INVALID_SPAN:  # (OpenTelemetry failed: nothing to attach)
            return
        self._span = span
        self._attach()

    def verified(self) -> None:
        query = self._query
        if query is None:
            return
        try:  # the URL's own context first: it is the create call's (module docstring)
            parent = _stored_context(query.get("traceparent")) or propagate.extract(self._headers)
        except Exception as error:
            swallowed("context extract", error)
            parent = _ROOT
        self._start(parent)

    def _ending(self, exc: BaseException | None) -> None:
        self._start(_ROOT)  # (refused before it verified: its own trace)

    @guarded
    def parsed(self, *, action: str, signing_token: str) -> None:
        attributes = {"dokobit.postback.action": action}
        if signing_token:
            attributes["dokobit.signing.token"] = signing_token
        self._span.set_attributes(attributes)

    @guarded
    def stored(self, *, duplicate: bool) -> None:
        self._told = True
        self._start(_ROOT)
        outcome = "duplicate" if duplicate else "stored"
        self._span.set_attributes(
            {"dokobit.postback.outcome": outcome, "http.response.status_code": 200}
        )
        self._telemetry.acknowledged.add(1, {"dokobit.postback.outcome": outcome})

    @guarded
    def refused(self, reason: str, status: int) -> None:
        self._told = True
        self._start(_ROOT)
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
        return self._traceparent()


class _HandlerRun(Current):
    """:class:`~dokobit_async._telemetry.HandlerSpan` over one CONSUMER span."""

    __slots__ = ("_handler", "_telemetry")

    def __init__(self, span: Span, telemetry: ReceiverTelemetry, handler: str):
        super().__init__(span)
        self._telemetry = telemetry
        self._handler = handler

    @guarded
    def finished(self, error: BaseException | None, *, dead: bool = False) -> None:
        self._told = True
        span = self._span
        if error is None:
            span.set_attribute("dokobit.outcome", "ok")
            return
        span.set_attributes(
            {"dokobit.outcome": "dead" if dead else "failed", "error.type": error_type(error)}
        )
        span.set_status(Status(StatusCode.ERROR))
        self._telemetry.handler_failures.add(1, {"dokobit.handler": self._handler})


class _Poll(Current):
    """:class:`~dokobit_async._telemetry.PollSpan` over one INTERNAL span, a root
    (docs/architecture.md#reconciliation)."""

    __slots__ = ()

    @guarded
    def looked(self, outcome: str, *, missed: int) -> None:
        self._told = True
        self._span.set_attributes(
            {"dokobit.reconcile.outcome": outcome, "dokobit.reconcile.missed": missed}
        )
        if outcome in ("failed", "not_stored"):
            self._span.set_status(Status(StatusCode.ERROR))


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
        self._in_effect = InEffect(tracer_provider, meter_provider)
        self.tracer: Tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
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
        meter.create_observable_gauge(  # (a second instrument() gets the first's)
            "dokobit.inbox.backlog",
            callbacks=[_observe_backlog],
            unit="{event}",
            description="Events the running dispatchers hold that are not finished.",
        )

    def postback(
        self, *, method: str, route: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> _Postback | Nothing:
        if not self._in_effect():
            return NOTHING
        method = method if method in _METHODS else "_OTHER"
        return _Postback(self, method, route, query, headers)

    def handler(self, name: str, stored: StoredContext, attempt: int) -> _HandlerRun | Nothing:
        if not self._in_effect():
            return NOTHING
        span = started(lambda: self._handler_span(name, stored, attempt))
        return _HandlerRun(span, self, name)

    def _handler_span(self, name: str, stored: StoredContext, attempt: int) -> Span:
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
        if stored.replays:  # (a replayed event: docs/architecture.md#replay-and-export)
            attributes["dokobit.replay"] = stored.replays
        return self.tracer.start_span(
            f"dokobit handle {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )

    def poll(self, signing_token: str, flow: str) -> _Poll | Nothing:
        if not self._in_effect():
            return NOTHING
        span = started(
            lambda: self.tracer.start_span(
                "dokobit reconcile poll",
                context=_ROOT,
                kind=SpanKind.INTERNAL,
                attributes={"dokobit.signing.token": signing_token, "dokobit.flow": flow},
            )
        )
        return _Poll(span)

    @guarded
    def dead_letter(self, stored: StoredContext) -> None:
        if self._in_effect():
            self.dead_letters.add(1, {"dokobit.postback.action": stored.action})

    def watch_backlog(self, size: Callable[[], int]) -> Callable[[], None]:
        key = id(size)
        _backlogs[key] = size

        def unwatch() -> None:
            _backlogs.pop(key, None)

        return unwatch


def _observe_backlog(options: CallbackOptions) -> Iterator[Observation]:
    """The gauge's callback: the backlog of every running dispatcher, while the
    library is instrumented (nothing after ``uninstrument()``, nor with no
    dispatcher running)."""
    if _backlogs and _telemetry.receiver is not None:
        try:
            total = sum(size() for size in list(_backlogs.values()))
        except Exception as error:
            swallowed("backlog", error)
            return
        yield Observation(total)
