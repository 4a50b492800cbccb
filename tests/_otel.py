"""OpenTelemetry for the tests: SDK providers that keep everything in memory, and a
scanner for secrets in what was recorded.

:func:`recording` instruments the library with its own providers (never the global
ones, which can be set only once per process) and always uninstruments it after, so
no other test records anything. :func:`leaks` looks for each secret, in each spelling
the other leak tests know (``test_redact.spellings``) plus base64 and hex, in every
span name, attribute, event, link, status, resource and metric data point.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext
from test_redact import spellings

from dokobit_async import otel


@attrs.define
class Recording:
    """What the instrumented library recorded so far."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [span for span in self.spans() if span.name == name]

    def metrics(self) -> MetricsData | None:
        """The metrics collected now (``None`` when nothing was recorded)."""
        return self.reader.get_metrics_data()

    def points(self, name: str) -> list[Any]:
        """The data points of the metric called ``name``, collected now."""
        found: list[Any] = []
        data = self.metrics()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


def providers() -> Recording:
    """An SDK tracer provider exporting to memory at once, and a meter provider read
    on demand (neither is made global)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Recording(exporter, reader, tracer_provider, meter_provider)


@contextmanager
def recording(recorded: Recording | None = None, **options: Any) -> Iterator[Recording]:
    """``otel.instrument(...)`` with in-memory SDK providers for the block (those of
    ``recorded``, else new :func:`providers`; ``options`` go to ``instrument``), then
    ``otel.uninstrument()`` whatever happens."""
    recorded = recorded if recorded is not None else providers()
    otel.instrument(
        tracer_provider=recorded.tracer_provider,
        meter_provider=recorded.meter_provider,
        **options,
    )
    try:
        yield recorded
    finally:
        otel.uninstrument()
        recorded.tracer_provider.shutdown()
        recorded.meter_provider.shutdown()


def context_of(span: ReadableSpan) -> SpanContext:
    """``span``'s own context (a finished span always has one)."""
    context = span.get_span_context()
    assert context is not None
    return context


def encodings(secret: str) -> dict[str, str]:
    """``secret`` in every spelling the leak tests look for, plus base64 and hex."""
    raw = secret.encode()
    return {
        **spellings(secret),
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "base64-url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


def _texts_of_attributes(where: str, attributes: Mapping[str, Any] | None) -> Iterator[str]:
    for key, value in (attributes or {}).items():
        yield f"{where} attribute name {key!r}: {key}"
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            yield f"{where} attribute {key!r}: {item}"


def _texts_of_span(span: ReadableSpan) -> Iterator[str]:
    where = f"span {span.name!r}"
    yield f"{where} name: {span.name}"
    yield from _texts_of_attributes(where, span.attributes)
    for event in span.events:
        yield f"{where} event: {event.name}"
        yield from _texts_of_attributes(f"{where} event {event.name!r}", event.attributes)
    for link in span.links:
        yield from _texts_of_attributes(f"{where} link", link.attributes)
    yield f"{where} status: {span.status.description or ''}"
    if span.resource is not None:
        yield from _texts_of_attributes(f"{where} resource", span.resource.attributes)


def _texts_of_metrics(data: MetricsData | None) -> Iterator[str]:
    for resource in data.resource_metrics if data is not None else ():
        yield from _texts_of_attributes("metrics resource", resource.resource.attributes)
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                where = f"metric {metric.name!r}"
                yield f"{where} name: {metric.name} {metric.description} {metric.unit}"
                for point in metric.data.data_points:
                    yield from _texts_of_attributes(f"{where} point", point.attributes)


def leaks(
    spans: Iterable[ReadableSpan], metrics: MetricsData | None, secrets: Iterable[str]
) -> list[str]:
    """Where any spelling of any of ``secrets`` shows in ``spans`` or ``metrics``:
    one line per find (the place and the spelling's name, never the secret); empty
    when nothing leaked."""
    texts = [text for span in spans for text in _texts_of_span(span)]
    texts.extend(_texts_of_metrics(metrics))
    found: list[str] = []
    for index, secret in enumerate(secrets):
        assert len(secret) >= 8, "a secret this short would match by chance"
        for name, spelled in encodings(secret).items():
            for text in texts:
                if spelled in text:
                    place = text.split(": ", 1)[0]
                    found.append(f"secret {index} ({name}) in {place}")
    return found
