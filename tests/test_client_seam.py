"""The client's seam (structural pass, section 4), over loopback hosts.

* ``send_once`` sends one request and returns the answer or a ``Failure``, never an
  aiohttp error and never a second try; ``decipher`` turns an error answer into a
  ``Failure`` the retry policy judges;
* every error raised for a call carries it as ``error.request`` (operation, method,
  path; never the token), on every error path;
* the form-escaping rule of base64 content has one home, which agrees with
  ``quote_plus`` and with the precomputed ``Content-Length``;
* a bodiless ``POST`` goes out as an empty form, ``Content-Length: 0``;
* the two private aiohttp attributes the library relies on are pinned here, with a
  message saying what to change if aiohttp renames them.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import socket
import types
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
from _loopback import loopback
from aiohttp import web, web_log
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from dokobit_async import (
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    DecodeError,
    DokobitClient,
    DokobitError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RedirectError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    SigningFile,
    Timeout,
    TransportError,
    ValidationError,
    sansio,
)
from dokobit_async._answers import failure_from_answer
from dokobit_async._bodies import CONTENT_TYPES, base64_growth, base64_size, base64_text
from dokobit_async._transport import decipher, no_resend, send_once
from dokobit_async.events import mint_postback_secret
from dokobit_async.receiver import RedactingAccessLogger
from dokobit_async.retry import Failure, Outcome

TOKEN = "seam-secret-token"
FORM_TYPE = "application/x-www-form-urlencoded"
STATUS = sansio.Request(
    operation="external.status",
    method="GET",
    path="/api/signing-external/SIG1/status.json",
    idempotent=True,
)
CREATE = sansio.Request(
    operation="external.create",
    method="POST",
    path="/api/signing-external/create.json",
    fields={"name": "x"},
)

Call = Callable[[DokobitClient], Awaitable[Any]]


def client_for(base_url: str, **options: Any) -> DokobitClient:
    options.setdefault("rate_limit", None)
    options.setdefault("retry", RetryPolicy(max_attempts=1))
    return DokobitClient(TOKEN, base_url=base_url, **options)


def answering(status: int, body: Any, **headers: str) -> Callable[..., Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers)

    return handler


def assert_carries(error: BaseException, operation: str, method: str, path: str) -> None:
    """``error.request`` is the call, and nothing about the error shows the token."""
    assert isinstance(error, DokobitError)
    assert error.request is not None, f"{type(error).__name__} has no request"
    assert (error.request.operation, error.request.method) == (operation, method)
    assert error.request.path == path
    for text in (str(error), repr(error), repr(error.request), str(vars(error))):
        assert TOKEN not in text


# ------------------------------------------------------------------ the seam


async def test_send_once_returns_the_answer_of_one_exchange_without_retrying() -> None:
    """A 503 comes back as the answer (one request reaches the host); ``decipher``
    makes it an UNAVAILABLE failure carrying a ServerError for the call."""
    async with (
        loopback(answering(503, {"status": "error"})) as host,
        aiohttp.ClientSession() as session,
    ):
        answer = await send_once(
            session,
            STATUS,
            base_url=host.url,
            token=TOKEN,
            body=None,
            timeout=aiohttp.ClientTimeout(total=30),
            limiter=None,
        )
        assert isinstance(answer, aiohttp.ClientResponse)
        assert answer.status == 503

        async def never(response: aiohttp.ClientResponse) -> None:
            raise AssertionError("a 503 is not a result")

        failure = await decipher(answer, STATUS, never, url="u?access_token=***", secret=TOKEN)
    assert len(host.seen) == 1
    assert isinstance(failure, Failure)
    assert failure.outcome is Outcome.UNAVAILABLE
    assert isinstance(failure.error, ServerError)
    assert failure.error.request is STATUS


async def test_send_once_turns_a_refused_connection_into_a_failure() -> None:
    """Nothing listens: a NOT_SENT failure with a ConnectError, not an aiohttp error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        failure = await send_once(
            session,
            CREATE,
            base_url=f"http://127.0.0.1:{port}",
            token=TOKEN,
            body=None,
            timeout=aiohttp.ClientTimeout(total=30),
            limiter=None,
        )
    assert isinstance(failure, Failure)
    assert failure.outcome is Outcome.NOT_SENT
    assert isinstance(failure.error, ConnectError)
    assert failure.error.request is CREATE
    assert failure.error.__context__ is None
    assert failure.error.__cause__ is None


def test_failure_from_answer_is_pure_and_judges_gateways_and_429() -> None:
    """429 -> RATE_LIMITED with the Retry-After seconds; 502 on a write -> an
    OutcomeUnknownError caused by the ServerError; 502 on a status -> the ServerError.
    Every error carries its call, and the token echoed by the server is masked."""
    body = json.dumps({"status": "error", "message": f"bad {TOKEN}"}).encode()
    url = "https://h/api/x?access_token=***"
    limited = failure_from_answer(STATUS, 429, body, retry_after="7", url=url, secret=TOKEN)
    assert limited.outcome is Outcome.RATE_LIMITED
    assert limited.retry_after == 7.0
    assert isinstance(limited.error, RateLimitedError)
    gateway = failure_from_answer(CREATE, 502, body, retry_after=None, url=url, secret=TOKEN)
    assert isinstance(gateway.error, OutcomeUnknownError)
    assert gateway.error.status == 502
    assert isinstance(gateway.error.__cause__, ServerError)
    assert gateway.error.__cause__.request is CREATE
    plain = failure_from_answer(STATUS, 502, body, retry_after=None, url=url, secret=TOKEN)
    assert type(plain.error) is ServerError
    assert plain.outcome is Outcome.UNAVAILABLE
    for failure, call in ((limited, STATUS), (gateway, CREATE), (plain, STATUS)):
        assert failure.error.request is call
        assert TOKEN not in f"{failure.error} {failure.error.__cause__}"


# ------------------------------------------------------------------ errors carry the call


async def _status(client: DokobitClient) -> Any:
    return await client.external.status("SIG1")


async def _create(client: DokobitClient) -> Any:
    return await client.external.create(
        name="x", type="pdf", files=[SigningFile.from_bytes(b"%PDF-1.7\n", name="a.pdf")]
    )


STATUS_PATH = "/api/signing-external/SIG1/status.json"
CREATE_PATH = "/api/signing-external/create.json"

ANSWERED = [
    ("400", answering(400, {"status": "error", "message": "no"}), ValidationError),
    ("401", answering(401, {"status": "error"}), AuthenticationError),
    ("404", answering(404, {"status": "error"}), NotFoundError),
    ("429", answering(429, {"status": "error"}, **{"Retry-After": "0"}), RateLimitedError),
    ("500", answering(500, "oops"), ServerError),
    ("200 error", answering(200, {"status": "error", "code": 400}), ValidationError),
    ("200 not json", answering(200, "<html>"), DecodeError),
    ("200 wrong shape", answering(200, {"status": "ok", "signers": 5}), DecodeError),
    ("302", answering(302, "", Location="https://elsewhere.example/x"), RedirectError),
]


@pytest.mark.parametrize(
    ("answer", "kind"), [(a[1], a[2]) for a in ANSWERED], ids=[a[0] for a in ANSWERED]
)
async def test_every_answered_error_carries_its_request(answer: Any, kind: type) -> None:
    """API errors, decode errors and redirects all name the call they came from."""
    async with loopback(answer) as host, client_for(host.url) as client:
        with pytest.raises(kind) as caught:
            await _status(client)
    assert_carries(caught.value, "external.status", "GET", STATUS_PATH)


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_answer_to_a_write_carries_its_request(status: int) -> None:
    """The OutcomeUnknownError and the ServerError behind it both name the call."""
    async with loopback(answering(status, "bad gateway")) as host, client_for(host.url) as c:
        with pytest.raises(OutcomeUnknownError) as caught:
            await _create(c)
    assert_carries(caught.value, "external.create", "POST", CREATE_PATH)
    cause = caught.value.__cause__
    assert isinstance(cause, ServerError)
    assert_carries(cause, "external.create", "POST", CREATE_PATH)


async def test_transport_errors_carry_their_request() -> None:
    """A lost answer (read timeout) on a write and on a read, and a refused
    connection: each error names its call."""
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"status": "ok"})

    async with loopback(stall) as host:
        async with client_for(host.url, timeout=Timeout(connect=5, read=0.2)) as client:
            with pytest.raises(OutcomeUnknownError) as lost_write:
                await _create(client)
            with pytest.raises(RequestTimeoutError) as lost_read:
                await _status(client)
        release.set()
    assert_carries(lost_write.value, "external.create", "POST", CREATE_PATH)
    assert_carries(lost_read.value, "external.status", "GET", STATUS_PATH)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ConnectError) as refused:
            await _status(client)
    assert_carries(refused.value, "external.status", "GET", STATUS_PATH)


async def test_download_errors_carry_their_request() -> None:
    """An error envelope in place of the file, a body cut off midway, and a redirect
    to another origin."""
    path = "/api/signing-external/SIG1/download"

    async def cut_off(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"%PDF-" + b"x" * 100)
        assert request.transport is not None
        request.transport.close()
        return response

    envelope = answering(200, {"status": "error", "code": 404, "message": "gone"})
    async with loopback(envelope) as host, client_for(host.url) as client:
        with pytest.raises(NotFoundError) as refused:
            await client.external.download("SIG1")
        host.handler = cut_off
        with pytest.raises(TransportError) as broken:
            await client.external.download("SIG1")
        host.handler = answering(302, "", Location="https://elsewhere.example/f.pdf")
        with pytest.raises(RedirectError) as foreign:
            await client.external.download("SIG1")
    assert_carries(refused.value, "external.download", "GET", path)
    assert_carries(broken.value, "external.download", "GET", path)
    assert_carries(foreign.value, "external.download", "GET", path)
    assert broken.value.method == "GET"
    assert broken.value.url.endswith("access_token=***")


async def test_errors_raised_before_sending_carry_their_request(tmp_path: Any) -> None:
    """A file that is not a PDF for ``type="pdf"``, and a closed client."""
    async with loopback() as host:
        client = client_for(host.url)
        with pytest.raises(InvalidArgumentError) as not_pdf:
            await client.external.create(
                name="x", type="pdf", files=[SigningFile.from_bytes(b"plain", name="a.pdf")]
            )
        await client.aclose()
        with pytest.raises(ClientClosedError) as closed:
            await _status(client)
    assert host.seen == []
    assert_carries(not_pdf.value, "external.create", "POST", CREATE_PATH)
    assert_carries(closed.value, "external.status", "GET", STATUS_PATH)


def test_a_request_repr_shows_field_names_never_values() -> None:
    """A postback URL's secret segment, or personal data, never shows in a repr."""
    secret_url = f"https://app.example.com/hook/{mint_postback_secret(b'k' * 32)}"
    request = sansio.Request(
        operation="external.create",
        method="POST",
        path=CREATE_PATH,
        fields={"postback_url": secret_url, "signers": [{"code": "39001010000"}]},
    )
    shown = repr(request)
    assert "postback_url" in shown
    assert "signers" in shown
    assert secret_url.rsplit("/", 1)[1] not in shown
    assert "39001010000" not in shown


# ------------------------------------------------------------------ the base64 rule


@given(st.binary(max_size=600))
def test_base64_form_escaping_agrees_with_quote_plus_and_the_size(data: bytes) -> None:
    """The one rule writes what ``quote_plus`` writes for the base64, and its size
    computation (from the growth count) is the length of what it writes."""
    plain = base64.b64encode(data)
    assert base64_text(data, "json") == plain
    assert base64_text(data, "form") == quote_plus(plain.decode("ascii")).encode("ascii")
    growth = base64_growth(plain)
    for encoding in ("form", "json"):
        assert len(base64_text(data, encoding)) == base64_size(len(data), growth, encoding)


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=40))
def test_base64_of_aligned_chunks_joins_to_the_base64_of_the_whole(data: bytes, n: int) -> None:
    """Streaming writes chunk by chunk (3-byte multiples); the joined text is the
    whole file's, and the growth counts add up."""
    size = 3 * n
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert b"".join(base64_text(c, "form") for c in chunks) == base64_text(data, "form")
    assert sum(base64_growth(base64.b64encode(c)) for c in chunks) == base64_growth(
        base64.b64encode(data)
    )


# ------------------------------------------------------------------ bodiless POST


def header(seen: Any, name: str) -> str | None:
    values = [v for k, v in seen.headers if k.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


@pytest.mark.parametrize("encoding", ["form", "json"])
@pytest.mark.parametrize("flow", ["external", "internal"])
async def test_a_bodiless_delete_is_an_empty_form(flow: str, encoding: str) -> None:
    """``POST .../delete.json`` goes out as Dokobit's PHP example sends it: an empty
    ``application/x-www-form-urlencoded`` body with ``Content-Length: 0``, whatever the
    client's body encoding (an empty body is not JSON)."""
    async with loopback() as host, client_for(host.url, body_encoding=encoding) as client:
        await getattr(client, flow).delete("SIG1")
    (seen,) = host.seen
    assert (seen.method, seen.target.split("?")[0]) == (
        "POST",
        f"/api/signing-{flow}/SIG1/delete.json",
    )
    assert header(seen, "Content-Type") == FORM_TYPE
    assert header(seen, "Content-Length") == "0"
    assert header(seen, "Transfer-Encoding") is None
    assert seen.body == b""


@pytest.mark.parametrize(("encoding", "body"), [("form", b""), ("json", b"{}")])
async def test_a_post_whose_fields_are_all_unset_has_an_exact_length(
    encoding: str, body: bytes
) -> None:
    """``seal`` without options: an empty form, or ``{}`` as JSON; the length is exact."""
    async with loopback() as host, client_for(host.url, body_encoding=encoding) as client:
        await client.seal("SIG1")
    (seen,) = host.seen
    assert header(seen, "Content-Type") == CONTENT_TYPES[encoding]
    assert header(seen, "Content-Length") == str(len(body))
    assert seen.body == body


async def test_a_get_has_no_body_and_no_content_type() -> None:
    async with loopback() as host, client_for(host.url) as client:
        await client.external.status("SIG1")
    (seen,) = host.seen
    assert header(seen, "Content-Type") is None
    assert header(seen, "Content-Length") in (None, "0")
    assert seen.body == b""


# ------------------------------------------------------------------ private aiohttp parts

RENAMED = (
    "aiohttp changed a private part that dokobit-async relies on: {what}. Update {where}, "
    "then this test."
)


async def test_aiohttp_sessions_still_have_retry_connection() -> None:
    """``ClientSession._retry_connection`` (aiohttp resending an idempotent request
    by itself) exists; our own session turns it off, a borrowed one is left alone."""
    async with aiohttp.ClientSession() as session:
        assert getattr(session, "_retry_connection", None) is True, RENAMED.format(
            what="ClientSession._retry_connection is gone or no longer a bool",
            where="dokobit_async._transport.no_resend",
        )
        async with loopback() as host:
            async with client_for(host.url) as ours:
                await ours.external.status("SIG1")
                assert ours._session is not None
                assert ours._session._retry_connection is False
            async with client_for(host.url, session=session) as borrowing:
                await borrowing.external.status("SIG1")
        assert session._retry_connection is True


def test_no_resend_warns_when_the_switch_is_missing() -> None:
    """Without the attribute the client still works, and says so once, loudly."""
    stand_in = types.SimpleNamespace()
    with pytest.warns(RuntimeWarning, match="_retry_connection"):
        no_resend(stand_in)  # type: ignore[arg-type]
    assert not hasattr(stand_in, "_retry_connection")


def test_aiohttp_access_logger_still_formats_through_format_line() -> None:
    """``AccessLogger.log`` still builds its line with ``_format_line(request,
    response, time)``, which ``RedactingAccessLogger`` overrides."""
    method = getattr(web_log.AccessLogger, "_format_line", None)
    message = RENAMED.format(
        what="AccessLogger._format_line(request, response, time) is gone or changed",
        where="dokobit_async.receiver.RedactingAccessLogger",
    )
    assert callable(method), message
    assert list(inspect.signature(method).parameters) == [
        "self",
        "request",
        "response",
        "time",
    ], message
    assert "self._format_line(" in inspect.getsource(web_log.AccessLogger.log), message


@pytest.mark.parametrize(
    ("logger_class", "masked"), [(RedactingAccessLogger, True), (web_log.AccessLogger, False)]
)
def test_the_redacting_access_logger_masks_the_line_aiohttp_writes(
    logger_class: type[web_log.AccessLogger], masked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Through aiohttp's own ``log``, the postback secret and an ``access_token`` are
    masked in the line (and aiohttp's plain logger, the control, shows them)."""
    segment = mint_postback_secret(b"k" * 32)
    request = make_mocked_request("POST", f"/dokobit/postback/{segment}?access_token={TOKEN}")
    log = logging.getLogger("test_client_seam.access")
    with caplog.at_level(logging.INFO, logger=log.name):
        logger_class(log, web_log.AccessLogger.LOG_FORMAT).log(request, web.Response(), 0.01)
    (record,) = [r for r in caplog.records if r.name == log.name]
    line = record.getMessage()
    assert "/dokobit/postback/" in line
    assert (segment in line, TOKEN in line) == (not masked, not masked), line
