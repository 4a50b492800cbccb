"""What both sides of the OpenTelemetry extra share: the span made current for a
block, the names it records, and the guard that keeps telemetry from changing what
the library does (docs/architecture.md#tracing).

Fail-safe: an OpenTelemetry implementation runs code of its own, and its users', in
the calls the library makes (``start_span`` runs the span processors' ``on_start``
and the sampler, ``end`` their ``on_end`` and a synchronous exporter, a counter's
``add`` the views and the exemplar filter, ``attach`` and ``detach`` the context's
runtime). An exception from any of them must not answer a stored postback with a
5xx, count against a handler that succeeded, turn a call that succeeded on the
server into an error (a retrying caller would create the signing twice), or stall a
signing's queue. So every call into OpenTelemetry goes through :func:`swallowed`'s
guard: the exception is dropped and logged once per kind, at WARNING, by its type
alone (its message may quote a span's attributes), and the library goes on exactly as
without telemetry.

Free while nothing would record (docs/architecture.md#tracing): until a tracer or a
meter provider is in effect (one given to ``instrument()``, or OpenTelemetry's global
one once an SDK set it), every hook answers :data:`NOTHING` at once, so a postback, a
handler run or a call costs what it does uninstrumented, give or take the check
(two module attribute reads). The check is made per hook, so recording starts with
the first call after the application sets a global provider, without another
``instrument()``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from opentelemetry import context, trace
from opentelemetry.trace import ProxyTracerProvider, Status, StatusCode

try:  # where OpenTelemetry's proxies look for the global providers (private, stable)
    from opentelemetry.metrics import _internal as _metrics_globals

    _READABLE = hasattr(trace, "_TRACER_PROVIDER") and hasattr(_metrics_globals, "_METER_PROVIDER")
    _PROXIES: tuple[type, ...] = (ProxyTracerProvider, _metrics_globals._ProxyMeterProvider)
except (ImportError, AttributeError):  # pragma: no cover (another OpenTelemetry)
    _READABLE, _PROXIES = False, ()

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, SpanContext, TracerProvider

__all__ = [
    "NOTHING",
    "Current",
    "InEffect",
    "Nothing",
    "error_type",
    "forget_warnings",
    "format_traceparent",
    "guarded",
    "started",
    "swallowed",
]

logger = logging.getLogger("dokobit_async.otel")

_warned: set[str] = set()


def started(start: Callable[[], Span]) -> Span:
    """The span ``start()`` starts, or the invalid span (which records nothing) when
    OpenTelemetry raised starting it (a processor's ``on_start``, a sampler)."""
    try:
        return start()
    except Exception as error:
        swallowed("span start", error)
        return trace.INVALID_SPAN


def swallowed(kind: str, error: Exception) -> None:
    """OpenTelemetry raised ``error`` in a call of ``kind`` (``span end``, a method's
    name, ...): say so once per kind, by the error's type only, and go on."""
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(
            "OpenTelemetry failed (%s in %s); ignored, telemetry may be incomplete: "
            "the library goes on as if not instrumented (said once per kind)",
            error_type(error),
            kind,
        )


_P = ParamSpec("_P")


def guarded(method: Callable[_P, None]) -> Callable[_P, None]:
    """``method`` under the guard: what OpenTelemetry raises in it is
    :func:`swallowed` (its kind: the method's name)."""
    kind = method.__qualname__

    @functools.wraps(method)
    def guard(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception as error:
            swallowed(kind, error)

    return guard


def forget_warnings() -> None:
    """Each kind of failure is said again (a new ``instrument()``)."""
    _warned.clear()


def error_type(error: BaseException) -> str:
    """``error.type`` as the semantic conventions want it: the class's canonical name
    (``dokobit_async.exceptions.ServerError``; a builtin's bare name)."""
    kind, module = type(error), type(error).__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def format_traceparent(context: SpanContext) -> str | None:
    """``context`` as a W3C ``traceparent`` (version 00), or None when it is not valid
    (a span that records nothing and has no parent)."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


_Span = TypeVar("_Span", bound="Current")


class Current:
    """A span made current while the block runs, ended after it: one step less than
    ``start_as_current_span`` per call, postback and handler run. An exception that
    leaves the block untold is recorded by its type alone. Nothing OpenTelemetry
    raises leaves it (see the module docstring)."""

    __slots__ = ("_attached", "_span", "_told")

    def __init__(self, span: Span):
        self._span = span
        self._told = False
        self._attached: Token[Context] | None = None

    def __enter__(self: _Span) -> _Span:
        self._attach()
        return self

    def _attach(self) -> None:
        try:
            self._attached = context.attach(trace.set_span_in_context(self._span))
        except Exception as error:
            swallowed("context attach", error)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._ending(exc)
            if exc is not None and not self._told:  # cancelled, say
                self._span.set_attribute("error.type", error_type(exc))
                self._span.set_status(Status(StatusCode.ERROR))
        except Exception as error:
            swallowed("span attributes", error)
        if self._attached is not None:
            try:
                context.detach(self._attached)
            except Exception as error:
                swallowed("context detach", error)
        try:
            self._span.end()
        except Exception as error:  # a span processor's on_end, a synchronous exporter
            swallowed("span end", error)

    def _ending(self, exc: BaseException | None) -> None:
        """What a subclass records last, before the span ends (``exc``: what left the
        block, if anything did)."""

    def _traceparent(self) -> str | None:
        try:
            return format_traceparent(self._span.get_span_context())
        except Exception as error:
            swallowed("span context", error)
            return None


class InEffect:
    """Whether anything would record now: a provider was given to ``instrument()``
    (not the global proxy itself), or a global tracer or meter provider was set,
    before or after ``instrument()``. One answer for spans and metrics alike: with
    either provider in effect every hook runs, the other signal going to
    OpenTelemetry's own no-op (docs/architecture.md#tracing).

    Reads the two globals that OpenTelemetry's proxy tracer and meter read to find
    the real provider (``trace.get_tracer_provider()`` would look an environment
    variable up per call, about 50 times as slow); with an OpenTelemetry that has
    them no more, it always answers yes (recording as before, at its cost).

    Args:
        tracer_provider: The one given to ``instrument()``, if any.
        meter_provider: Likewise.
    """

    __slots__ = ("_given",)

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ):
        given = any(
            provider is not None and not isinstance(provider, _PROXIES)
            for provider in (tracer_provider, meter_provider)
        )
        self._given = given or not _READABLE

    def __call__(self) -> bool:
        return (
            self._given
            or trace._TRACER_PROVIDER is not None
            or _metrics_globals._METER_PROVIDER is not None
        )


class Nothing:
    """Every span of ``_telemetry`` that records nothing and does nothing: what the
    hooks answer while no provider is in effect (stateless, so one is shared)."""

    __slots__ = ()

    def __enter__(self) -> Nothing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def _nothing(self, *args: object, **kwargs: object) -> None:
        return None

    signing = answered = failed = verified = parsed = stored = refused = _nothing
    finished = looked = _nothing

    def traceparent(self) -> None:
        return None


NOTHING = Nothing()
"""The shared span that does nothing."""
