"""The client's OpenTelemetry: one CLIENT span per API call, and the rate-limit wait.

Reached only through :func:`dokobit_async.otel.instrument`, which fills
``_telemetry.client`` with a :class:`ClientTelemetry` (docs/architecture.md#tracing).
A call's span covers the whole call (every attempt, every retry and rate-limit wait,
and a download's body), so its duration is what the caller waited; its attributes are
the stable HTTP client conventions plus ``dokobit.operation`` and the signing's token.

What it records never holds a secret: ``url.full`` is the base URL and the request's
path, to which the client adds the access token only on the wire; the request body
(which may hold a postback URL's secret segment) is never read, but for a create's
``postback_url``, which only gets our ``traceparent`` added; an error's message (an
answer may echo a field's value) is neither recorded nor put in the status, only its
class name, and no exception event is recorded. Nothing OpenTelemetry raises reaches
the caller (``_otel_common``): a call ends as it would without telemetry. While no
provider is in effect (``_otel_common.InEffect``), a call gets the shared span that
does nothing, and no wait is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode

from . import __version__
from ._otel_common import (
    NOTHING,
    Current,
    InEffect,
    Nothing,
    error_type,
    guarded,
    started,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .sansio import Request

__all__ = ["WAIT_BUCKETS", "ClientTelemetry"]

NAME = "dokobit_async"

WAIT_BUCKETS: Sequence[float] = (0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Bucket bounds of the rate-limit wait histogram, in seconds: most calls wait 0 (a
free slot), a saturated token waits up to a period (60 s by default)."""

# a signing's token in an API path: /api/signing-external/{token}/..., /api/signing/{token}/...
_SIGNING_PATH = re.compile(r"/api/signing(?:-external|-internal)?/([^/?#]+)/")


def _origin(base_url: str) -> tuple[str, str, int]:
    """``base_url`` as ``url.full`` starts (without any user or password), its host
    and its port."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return shown, host, port


class _CallSpan(Current):
    """One call's span (implements ``_telemetry.CallSpan``), current while the call
    runs, so that spans of the transport (aiohttp-client instrumentation) nest under
    it."""

    __slots__ = ("_resends", "_status")

    def __init__(self, span: Span):
        super().__init__(span)
        self._status: int | None = None
        self._resends = -1

    def __enter__(self) -> _CallSpan:
        if self._span is not INVALID_SPAN:  # the no-op tracer's: current, it changes nothing
            self._attach()
        return self

    def _ending(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.failed(exc)
        span = self._span
        if span.is_recording():
            if self._status is not None:
                span.set_attribute("http.response.status_code", self._status)
            if self._resends > 0:
                span.set_attribute("http.request.resend_count", self._resends)

    @guarded
    def signing(self, token: str) -> None:
        self._span.set_attribute("dokobit.signing.token", token)

    def answered(self, status: int | None) -> None:
        self._resends += 1
        if status is not None:
            self._status = status

    @guarded
    def failed(self, error: BaseException) -> None:
        self._told = True
        status = getattr(error, "status", None)
        if isinstance(status, int) and self._status is None:
            self._status = status  # a refused redirect: answered, yet no answer returned
        name = error_type(error)
        self._span.set_attribute("error.type", name)
        # the class name only: an error's message may echo what was sent
        self._span.set_status(Status(StatusCode.ERROR, name))

    def traceparent(self) -> str | None:
        return self._traceparent()


class ClientTelemetry:
    """The client's telemetry (implements ``_telemetry.ClientHooks``).

    Args:
        tracer_provider: Where spans go (``None``: the global provider).
        meter_provider: Where the wait histogram goes (``None``: the global provider).
        propagate_to_postbacks: Whether a create adds its ``traceparent`` to the
            postback URL it sends.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagate_to_postbacks: bool = True,
    ):
        self.propagate_to_postbacks = propagate_to_postbacks
        self._in_effect = InEffect(tracer_provider, meter_provider)
        self._tracer = trace.get_tracer(NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, __version__, meter_provider=meter_provider)
        self._waits = meter.create_histogram(
            "dokobit.client.rate_limit.wait",
            unit="s",
            description="Time a request waited for a slot of its access token's rate limit",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self._origins: dict[str, tuple[str, str, int]] = {}

    def call(self, request: Request, base_url: str) -> _CallSpan | Nothing:
        """A span around one API call to ``base_url`` (the token is never given)."""
        if not self._in_effect():
            return NOTHING
        origin = self._origins.get(base_url)
        if origin is None:
            if len(self._origins) > 64:  # a cache: clients rarely use many APIs
                self._origins.clear()
            origin = self._origins[base_url] = _origin(base_url)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": request.method,
            "url.full": origin[0] + request.path,
            "server.address": origin[1],
            "server.port": origin[2],
            "dokobit.operation": request.operation,
        }
        found = _SIGNING_PATH.match(request.path)
        if found is not None:
            attributes["dokobit.signing.token"] = unquote(found.group(1))
        span = started(
            lambda: self._tracer.start_span(
                f"dokobit {request.operation}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
        )
        return _CallSpan(span)

    @guarded
    def rate_limit_waited(self, seconds: float) -> None:
        """A request waited ``seconds`` for a slot of the rate limit (0: none)."""
        if self._in_effect():
            self._waits.record(seconds)
