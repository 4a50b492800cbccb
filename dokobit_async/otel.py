"""The optional OpenTelemetry extra (``pip install 'dokobit-async[otel]'``): traces and
metrics from create to handler, in the tools you already run.

Only this module imports OpenTelemetry (importing it imports ``opentelemetry-api``);
``import dokobit_async`` never does, and until :func:`instrument` is called the
library records nothing and pays one attribute read per call
(docs/architecture.md#tracing)::

    from dokobit_async import otel

    otel.instrument()  # the global tracer and meter providers, or pass your own

Instrumented with no provider in effect (none given to :func:`instrument`, and no
global one set: OpenTelemetry's default proxies), every call, postback and handler
run costs what it does uninstrumented, give or take a check of two attributes: no
span is started, no context read or attached, no counter called. Recording starts
with the first call after the application sets a global tracer or meter provider,
without another :func:`instrument`. Either provider in effect switches everything
on; the other signal then goes to OpenTelemetry's own no-op.

What is recorded:

* a span per API call (HTTP client attributes, ``dokobit.operation``, the signing's
  token; ``url.full`` without the access token), with the time waited for the rate
  limit as a metric;
* a SERVER span per postback received, ``POST /your/path/{secret}`` (the route's
  template, never the path): ``dokobit.postback.outcome`` stored, duplicate or refused
  with ``dokobit.postback.refusal`` (a short code), the action and the signing's token;
  its parent is the URL's ``traceparent`` (else the headers') once the URL's secret
  verified, a root before; its context is stored with the event in the inbox
  (memory, SQLite or Redis);
* a CONSUMER span per handler run, ``dokobit handle <handler>`` (``dokobit.handler``,
  ``dokobit.attempt`` from 1, ``dokobit.outcome`` ok, failed or dead,
  ``dokobit.event.id``), a child of and linked to the postback's span, in whichever
  process runs it (the dispatcher, any ``RedisWorker``);
* the counters ``dokobit.postbacks.acknowledged``, ``dokobit.postbacks.refused``,
  ``dokobit.handler.failures`` and ``dokobit.dead_letters``, and the gauge
  ``dokobit.inbox.backlog``.

A create call adds its span's ``traceparent`` to the postback URL it sends, so that
the postbacks Dokobit sends back join the trace that created the signing
(``instrument(postback_url_context=False)`` turns that off). Neither the access token
nor a postback URL's secret is ever put in a span, an event or a metric.

Telemetry never changes an outcome: whatever OpenTelemetry raises (a span processor,
an exporter, a view) is logged once per kind at WARNING, by its type, and ignored, so
postbacks, handlers and calls end exactly as they would without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yarl import URL

from . import _otel_client, _otel_common, _otel_receiver, _telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["instrument", "is_instrumented", "uninstrument", "url_filter"]


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    postback_url_context: bool = True,
) -> None:
    """Record traces and metrics for every client, receiver, dispatcher and worker of
    this process, from now on (calling it again replaces the settings).

    Args:
        tracer_provider: Where spans go (default: OpenTelemetry's global provider;
            while neither it nor a meter provider is set, nothing is done at all, and
            recording starts once one is set).
        meter_provider: Where metrics go (default: the global provider).
        postback_url_context: Add the create call's ``traceparent`` to the postback URL
            it sends, so that the postbacks join the create's trace.
    """
    _otel_common.forget_warnings()
    _telemetry.client = _otel_client.ClientTelemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        propagate_to_postbacks=postback_url_context,
    )
    _telemetry.receiver = _otel_receiver.ReceiverTelemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def uninstrument() -> None:
    """Stop recording: calls, postbacks and handler runs after this record nothing."""
    _telemetry.client = None
    _telemetry.receiver = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _telemetry.client is not None


def url_filter(url: URL) -> str:
    """``url`` without its ``access_token`` query parameter, for
    ``opentelemetry-instrumentation-aiohttp-client``, which would otherwise record the
    client's token in ``url.full``::

        AioHttpClientInstrumentor().instrument(url_filter=otel.url_filter)

    That is not enough on its own: the instrumentation also records a failed
    request's exception, and aiohttp's connection errors quote the whole URL, token
    included (``Connection timeout to host https://...?access_token=...``). Keep the
    API's host out of it, set before the client opens its session (the client's own
    span already records each call, with the same HTTP attributes)::

        OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS=app.dokobit.com,beta.dokobit.com

    and give it ``url_filter`` still, for any other URL of yours that carries an
    ``access_token``.
    """
    kept = [(name, value) for name, value in url.query.items() if name != "access_token"]
    return str(url.with_query(kept))
