"""The advice for ``opentelemetry-instrumentation-aiohttp-client`` holds on the failure
path too (docs/reference/otel.md): aiohttp's connection errors quote the request's
whole URL, access token included, and the instrumentation records the exception
(``exception.message``, ``exception.stacktrace``), which ``url_filter`` never sees.
With the API's host in ``OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS``, nothing of it is
recorded, while the client's own span still records the failed call. Over a real
listener whose backlog is full, so that the connect times out.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from _otel import leaks, recording
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

from dokobit_async import DokobitClient, DokobitError, otel
from dokobit_async.client import Timeout
from dokobit_async.retry import RetryPolicy

TOKEN = "tok-" + "s3cr3tvalue" * 3


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A port on 127.0.0.1 that takes no new connection: a listener whose backlog is
    filled by connections nobody accepts (a connect there times out)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(8):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


@pytest.mark.parametrize("excluded", [True, False])
async def test_a_connect_timeout_records_no_token_once_the_api_host_is_excluded(
    unanswering_port: int, excluded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"127.0.0.1:{unanswering_port}"
    if excluded:  # as docs/reference/otel.md advises, with the API's host
        monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", host)
    else:
        monkeypatch.delenv("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", raising=False)
        monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS", raising=False)
    with recording() as found:
        instrumentor = AioHttpClientInstrumentor()
        instrumentor.instrument(
            tracer_provider=found.tracer_provider,
            meter_provider=found.meter_provider,
            url_filter=otel.url_filter,
        )
        try:
            async with DokobitClient(
                TOKEN,
                base_url=f"http://{host}",
                timeout=Timeout(connect=0.3),
                retry=RetryPolicy(max_attempts=1),
                rate_limit=None,
            ) as client:
                with pytest.raises(DokobitError):
                    await client.external.status("a" * 40)
        finally:
            instrumentor.uninstrument()
    ours = [s for s in found.spans() if s.name.startswith("dokobit ")]
    theirs = [s for s in found.spans() if not s.name.startswith("dokobit ")]
    assert len(ours) == 1  # the client's own span records the failed call either way
    assert (ours[0].attributes or {}).get("error.type")
    found_leaks = leaks(found.spans(), found.metrics(), [TOKEN])
    if excluded:
        assert theirs == []
        assert found_leaks == []
    else:  # what the advice is for: url_filter alone leaves the token in the exception
        assert len(theirs) == 1
        assert found_leaks
        assert all("event 'exception'" in place for place in found_leaks)
