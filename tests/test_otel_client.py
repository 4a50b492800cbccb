"""The client's OpenTelemetry (docs/architecture.md#tracing): one CLIENT span per API
call over every attempt, the postback URL carrying the create's context, the
rate-limit wait histogram, nothing recorded (nor imported) when not instrumented, and
no secret in anything recorded, ours or ``opentelemetry-instrumentation-aiohttp-client``'s
with ``otel.url_filter``.

Everything runs over loopback: the emulator, or a loopback host where a test needs an
answer the emulator does not give (a 503 then a 200; a body to compare byte for byte).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from _clock import run_virtual
from _loopback import loopback
from _otel import Recording, leaks, providers, recording
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from test_e2e_emulator import create_external

from dokobit_async import (
    DokobitClient,
    NotFoundError,
    RateLimit,
    RetryPolicy,
    ServerError,
    _telemetry,
    otel,
    sansio,
)
from dokobit_async._request import with_traceparent
from dokobit_async.ratelimit import SharedLimiter, timed_acquire
from dokobit_async.redis import RedisRateLimit
from dokobit_async.testing import Emulator, EmulatorConfig, FaultKind, Faults

SECRET = "Xq7-postback-secret-segment_Zm9v"  # a postback URL's secret segment
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, deadline=10)
WAIT_METRIC = "dokobit.client.rate_limit.wait"
BUDGET = 30.0  # seconds: a bound on each scenario, never reached when healthy


@pytest.fixture
def recorded() -> Iterator[Recording]:
    """The library instrumented with in-memory SDK providers for this test only."""
    with recording() as found:
        yield found


def client_for(emu: Emulator, **options: Any) -> DokobitClient:
    """A client of ``emu`` whose rate limit never makes it wait (unless given)."""
    options.setdefault("rate_limit", RateLimit(calls=10_000, period=1.0))
    return DokobitClient(emu.access_token, base_url=emu.base_url, **options)


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    """The one span of ``spans``."""
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


def traceparent_of(span: ReadableSpan) -> str:
    """``span``'s context as a W3C ``traceparent``, spelled independently of the code."""
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# ------------------------------------------------------------------ spans of calls


async def test_a_call_is_one_client_span_with_the_http_and_dokobit_attributes(
    recorded: Recording, dokobit_emulator: Emulator
) -> None:
    """A create and a status call make one CLIENT span each, named after the
    operation, with the stable HTTP client attributes (``url.full`` without the
    access token) and the signing's token: the create's from its answer, the
    status's from its path."""
    emu = dokobit_emulator
    async with client_for(emu) as client:
        created = await create_external(client)
        await client.external.status(created.token)
    port = int(emu.base_url.rsplit(":", 1)[1])
    create = only(recorded.named("dokobit external.create"))
    status = only(recorded.named("dokobit external.status"))
    assert [create.kind, status.kind] == [SpanKind.CLIENT, SpanKind.CLIENT]
    assert dict(status.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": f"{emu.base_url}/api/signing-external/{created.token}/status.json",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "dokobit.operation": "external.status",
        "dokobit.signing.token": created.token,
    }
    assert dict(create.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"{emu.base_url}/api/signing-external/create.json",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "dokobit.operation": "external.create",
        "dokobit.signing.token": created.token,
    }
    assert [create.status.status_code, status.status.status_code] == [StatusCode.UNSET] * 2
    assert leaks(recorded.spans(), recorded.metrics(), [emu.access_token]) == []


async def test_a_retried_call_is_one_span_over_its_attempts(recorded: Recording) -> None:
    """A status call answered 503 then 200 is one span: the resend counted, the last
    answer's status, no error."""
    answers = [web.Response(status=503), web.json_response({"status": "ok", "signers": []})]

    async def handler(request: web.Request) -> web.StreamResponse:
        return answers.pop(0)

    async with loopback(handler) as host:
        async with DokobitClient("a-token-0123456789", base_url=host.url, retry=FAST_RETRY) as c:
            await c.external.status("abc")
        assert len(host.seen) == 2
    span = only(recorded.spans())
    assert span.name == "dokobit external.status"
    assert span.attributes is not None
    assert span.attributes["http.request.resend_count"] == 1
    assert span.attributes["http.response.status_code"] == 200
    assert "error.type" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


async def test_a_call_failing_after_its_retries_is_one_failed_span(recorded: Recording) -> None:
    """Every status answered 500 by the emulator: one span over the three attempts,
    with the last status, ``error.type`` the error's class and the status ERROR
    (whose description is the class name, never the message)."""
    faults = Faults(
        rate=1.0, weights={FaultKind.SERVER_ERROR: 1.0}, operations={"signing-external/status"}
    )
    async with Emulator(config=EmulatorConfig(faults=faults)) as emu:
        async with client_for(emu, retry=FAST_RETRY) as client:
            with pytest.raises(ServerError):
                await asyncio.wait_for(client.external.status("a" * 40), BUDGET)
        assert [r.fault for r in emu.requests] == ["500"] * 3
    span = only(recorded.spans())
    assert span.attributes is not None
    assert span.attributes["http.request.resend_count"] == 2
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "dokobit_async.exceptions.ServerError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "dokobit_async.exceptions.ServerError"
    assert span.events == ()  # no exception event: its message may echo what was sent


async def test_a_refused_call_names_its_error(
    recorded: Recording, dokobit_emulator: Emulator
) -> None:
    """A status of an unknown signing: one attempt, the error's class as
    ``error.type``, the answer's status, the status ERROR."""
    async with client_for(dokobit_emulator) as client:
        with pytest.raises(NotFoundError) as info:
            await client.external.status("b" * 40)
    span = only(recorded.spans())
    assert span.attributes is not None
    assert span.attributes["error.type"] == "dokobit_async.exceptions.NotFoundError"
    assert span.attributes["http.response.status_code"] == info.value.status
    assert "http.request.resend_count" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR


async def test_downloads_are_spans_that_cover_the_body(
    recorded: Recording, dokobit_emulator: Emulator
) -> None:
    """``download``, ``download_file`` and ``open_download`` are spans too; an open
    download's span ends when its block does, not when its head arrived."""
    async with client_for(dokobit_emulator) as client:
        created = await create_external(client)
        whole = await client.external.download(created.token)
        status = await client.external.status(created.token)
        url = status.files[0].url
        assert url is not None
        assert await client.download_file(url) == whole
        async with client.external.open_download(created.token) as download:
            first = await download.read()
            # the body was read, the block is still open: its span has not ended
            assert len(recorded.named("dokobit external.download")) == 1
        assert first == whole
    names = [span.name for span in recorded.spans()]
    assert names.count("dokobit external.download") == 2  # download, then open_download
    fetched = only(recorded.named("dokobit download_file"))
    assert fetched.attributes is not None
    assert fetched.attributes["http.response.status_code"] == 200
    assert fetched.attributes["http.request.method"] == "GET"
    assert "access_token" not in str(fetched.attributes["url.full"])
    streamed = recorded.named("dokobit external.download")[-1]
    assert streamed.attributes is not None
    assert streamed.attributes["dokobit.signing.token"] == created.token


def test_url_full_leaves_out_a_user_and_password_of_the_base_url() -> None:
    """A base URL with credentials: ``url.full``, ``server.address`` and
    ``server.port`` show neither the user nor the password."""
    request = sansio.Request(
        operation="external.status", method="GET", path="/api/signing-external/t1/status.json"
    )
    with recording() as found:
        hooks = _telemetry.client
        assert hooks is not None
        with hooks.call(request, "https://someone:pa55w0rd-secret@h.example:8443/pre"):
            pass
    attributes = dict(only(found.spans()).attributes or {})
    assert (
        attributes["url.full"] == "https://h.example:8443/pre/api/signing-external/t1/status.json"
    )
    assert (attributes["server.address"], attributes["server.port"]) == ("h.example", 8443)
    assert leaks(found.spans(), None, ["pa55w0rd-secret", "someone:pa55"]) == []


# ------------------------------------------------------------------ the postback URL


def test_with_traceparent_adds_it_to_a_copy_of_the_postback_url() -> None:
    """The parameter is added to the URL's query (after any, before a fragment), in a
    new request with new fields; the caller's request and fields are untouched; a URL
    that has one already, a request without a postback URL and a missing context are
    left as they are."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fields = {"name": "x", "postback_url": "https://h.example/hook/s3cret?a=1#f"}
    request = sansio.Request(operation="external.create", method="POST", path="/p", fields=fields)
    added = with_traceparent(request, parent)
    assert added.fields == {
        "name": "x",
        "postback_url": f"https://h.example/hook/s3cret?a=1&traceparent={parent}#f",
    }
    assert request.fields is fields
    assert fields == {"name": "x", "postback_url": "https://h.example/hook/s3cret?a=1#f"}
    bare = sansio.Request(
        operation="e", method="POST", path="/p", fields={"postback_url": "http://h/x"}
    )
    assert with_traceparent(bare, parent).fields == {
        "postback_url": f"http://h/x?traceparent={parent}"
    }
    has_one = sansio.Request(
        operation="e",
        method="POST",
        path="/p",
        fields={"postback_url": "http://h/x?traceparent=1"},
    )
    no_url = sansio.Request(operation="e", method="POST", path="/p", fields={"postback_url": None})
    for kept in (has_one, no_url):
        assert with_traceparent(kept, parent) is kept
    assert with_traceparent(bare, None) is bare


async def test_the_postback_arrives_with_the_create_span_context(
    recorded: Recording, dokobit_emulator: Emulator
) -> None:
    """The emulator calls the postback URL as the create sent it: the postback
    reaches its path (with the secret segment) with ``traceparent`` naming the create's
    span; no secret shows in any span or metric."""
    emu = dokobit_emulator
    async with loopback() as receiver, client_for(emu) as client:
        hook = f"{receiver.url}/postbacks/{SECRET}"
        created = await create_external(client, postback_url=hook)
        await asyncio.wait_for(emu.wait_postbacks_idle(timeout=5), BUDGET)
        create = only(recorded.named("dokobit external.create"))
        expected = f"/postbacks/{SECRET}?traceparent={traceparent_of(create)}"
        assert [seen.target for seen in receiver.seen] == [expected]
        assert json.loads(receiver.seen[0].body)["token"] == created.token
    assert [a.ok for a in emu.postbacks] == [True]
    assert leaks(recorded.spans(), recorded.metrics(), [emu.access_token, SECRET]) == []


@pytest.mark.parametrize("propagate", [True, False])
async def test_the_create_body_is_unchanged_but_for_the_postback_url(propagate: bool) -> None:
    """The same create, sent not instrumented and instrumented, arrives with the same
    JSON body, but for ``traceparent`` in the postback URL (none with
    ``postback_url_context=False``)."""

    async def created(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "token": "t" * 40, "signers": []})

    async with (
        loopback(created) as host,
        DokobitClient("a-token-0123456789", base_url=host.url, body_encoding="json") as c,
    ):
        await create_external(c, postback_url=f"https://app.example/hook/{SECRET}?x=1")
        with recording(postback_url_context=propagate) as found:
            await create_external(c, postback_url=f"https://app.example/hook/{SECRET}?x=1")
    plain, traced = (json.loads(seen.body) for seen in host.seen)
    sent = traced.pop("postback_url")
    url = plain.pop("postback_url")
    assert traced == plain
    span = only(found.named("dokobit external.create"))
    assert sent == (f"{url}&traceparent={traceparent_of(span)}" if propagate else url)


# ------------------------------------------------------------------ the rate-limit wait


def test_the_wait_for_a_slot_is_measured_on_the_limiters_clock() -> None:
    """On a virtual clock, a limiter of one call per 10 s: the first request takes a
    free slot (0 s), the next two each wait out a period (10 s)."""
    waits: list[float] = []

    async def three_requests() -> None:
        limiter = SharedLimiter(RateLimit(calls=1, period=10.0), asyncio.get_running_loop())
        for _ in range(3):
            await timed_acquire(limiter, waits.append)
            limiter.release()

    run_virtual(three_requests())
    assert waits == [0.0, 10.0, 10.0]


@pytest.mark.parametrize("kind", ["in-process", "redis"])
async def test_each_request_reports_its_wait_to_the_histogram(
    recorded: Recording, dokobit_emulator: Emulator, kind: str
) -> None:
    """Three status calls through a limit of one call per 0.2 s, in-process or on
    (fake) Redis: three waits recorded, one per request; the in-process limiter's
    first is 0 (a free slot) and the later ones waited."""
    limit = (
        RateLimit(calls=1, period=0.2, burst=1)
        if kind == "in-process"
        else RedisRateLimit(fakeredis.FakeAsyncRedis(), calls=1, period=0.2, burst=1)
    )
    try:
        async with client_for(dokobit_emulator, rate_limit=limit) as client:
            created = await create_external(client)
            for _ in range(2):
                await asyncio.wait_for(client.external.status(created.token), BUDGET)
    finally:
        if isinstance(limit, RedisRateLimit):
            await limit.aclose()
    (point,) = recorded.points(WAIT_METRIC)
    assert point.count == 3
    assert point.max > 0  # the calls after the first waited for their slot
    if kind == "in-process":
        assert point.min == 0.0
        assert point.bucket_counts[0] == 1


# ------------------------------------------------------------------ off means off


async def test_after_uninstrument_nothing_is_recorded(dokobit_emulator: Emulator) -> None:
    """Calls made after ``uninstrument()`` make no span and no metric point."""
    found = providers()
    otel.instrument(tracer_provider=found.tracer_provider, meter_provider=found.meter_provider)
    try:
        async with client_for(dokobit_emulator) as client:
            created = await create_external(client)
            otel.uninstrument()
            assert not otel.is_instrumented()
            await client.external.status(created.token)
            await client.external.download(created.token)
    finally:
        otel.uninstrument()
    assert [span.name for span in found.spans()] == ["dokobit external.create"]
    (point,) = found.points(WAIT_METRIC)
    assert point.count == 1


def test_a_client_call_imports_no_opentelemetry(tmp_path: Path) -> None:
    """In a fresh interpreter, calls against the emulator (a create with a postback
    URL, a status, a download) leave no ``opentelemetry`` module imported."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from dokobit_async import DokobitClient, ExternalSigner, SigningFile
        from dokobit_async.testing import Emulator, make_pdf

        async def main():
            async with Emulator() as emu:
                async with DokobitClient(emu.access_token, base_url=emu.base_url) as c:
                    created = await c.external.create(
                        name="n", type="pdf",
                        files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
                        signers=[ExternalSigner(
                            external_id="a", name="A", surname="B", email="a@example.com"
                        )],
                        postback_url="http://127.0.0.1:9/hook",
                    )
                    await c.external.status(created.token)
                    await c.external.download(created.token)
            return sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")

        print(asyncio.run(main()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------ aiohttp-client


@pytest.mark.parametrize("filtered", [True, False])
async def test_url_filter_keeps_the_token_out_of_aiohttp_client_spans(
    dokobit_emulator: Emulator, filtered: bool
) -> None:
    """With ``opentelemetry-instrumentation-aiohttp-client`` on, its spans (children of
    ours) hold no access token when given ``otel.url_filter``; without it, the scanner
    finds the token in them (so the scanner can fail)."""
    emu = dokobit_emulator
    with recording() as found:
        instrumentor = AioHttpClientInstrumentor()
        instrumentor.instrument(
            tracer_provider=found.tracer_provider,
            meter_provider=found.meter_provider,
            url_filter=otel.url_filter if filtered else None,
        )
        try:
            async with client_for(emu) as client:  # its session is made while instrumented
                created = await create_external(client)
                await client.external.status(created.token)
        finally:
            instrumentor.uninstrument()
    ours = {s.context.span_id: s for s in found.spans() if s.name.startswith("dokobit ")}
    theirs = [s for s in found.spans() if not s.name.startswith("dokobit ")]
    assert len(ours) == 2
    assert len(theirs) == 2
    assert all(s.parent is not None and s.parent.span_id in ours for s in theirs)
    found_leaks = leaks(found.spans(), found.metrics(), [emu.access_token])
    if filtered:
        assert found_leaks == []
        # the URL is recorded (the old or the stable attribute, by OTEL_SEMCONV_STABILITY_OPT_IN)
        urls = [
            str(dict(s.attributes or {}).get("url.full", dict(s.attributes or {}).get("http.url")))
            for s in theirs
        ]
        assert all(url.startswith(emu.base_url) and "access_token" not in url for url in urls)
    else:
        assert found_leaks
        assert all("span 'POST'" in f or "span 'GET'" in f for f in found_leaks)
