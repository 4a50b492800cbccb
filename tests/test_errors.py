"""How the client turns failures into its own errors: the API's error envelope and
HTTP statuses (``docs/wire-notes.md#status-codes``, ``#error-envelope``), transport failures,
retries that never repeat a write whose outcome is unknown, invalid arguments caught
before sending, and the access token kept out of every message, repr, traceback and
log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from dokobit_async import (
    DokobitClient,
    ExternalSigner,
    InternalSigner,
    RateLimit,
    Recipient,
    RetryPolicy,
    SigningFile,
)
from dokobit_async.exceptions import (
    APIError,
    AuthenticationError,
    ConnectError,
    DecodeError,
    DokobitError,
    FieldError,
    ForeignURLError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    ValidationError,
)

TOKEN = "SECRET-TOKEN-123"
BASE = "https://beta.dokobit.com"
STATUS_PATH = "/api/signing-external/SIG1/status.json"
CREATE_PATH = "/api/signing-external/create.json"
PDF = b"%PDF-1.7\n%%EOF"

NO_RETRY = RetryPolicy(max_attempts=1)
CONNECTION_KEY = ConnectionKey("beta.dokobit.com", 443, True, True, None, None, None)
FAST = RetryPolicy(max_attempts=3, base_delay=0, max_delay=0)


# ------------------------------------------------------------------ test plumbing


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, down to DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog


def make_client(retry: RetryPolicy = NO_RETRY, **options: Any) -> DokobitClient:
    options.setdefault("rate_limit", None)
    return DokobitClient(TOKEN, base_url=BASE, retry=retry, **options)


def url_of(path: str) -> str:
    return f"{BASE}{path}?access_token={TOKEN}"


def calls(mock: Any) -> int:
    """How many requests were sent, to any URL."""
    return sum(len(recorded) for recorded in mock.requests.values())


def create(dokobit: DokobitClient) -> Awaitable[Any]:
    """A minimal external ``create`` (a write: not idempotent)."""
    return dokobit.external.create(
        name="Contract",
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="c.pdf")],
        signers=[ExternalSigner(external_id="s1", email="s1@example.com")],
    )


def status(dokobit: DokobitClient) -> Awaitable[Any]:
    """``external.status`` (a read: idempotent)."""
    return dokobit.external.status("SIG1")


def respond(mock: Any, method: str, path: str, status: int, body: Any, **extra: Any) -> None:
    """Register one answer; ``body`` is a JSON payload (dict/list) or raw text."""
    kind = "payload" if isinstance(body, (dict, list)) else "body"
    mock.add(url_of(path), method=method, status=status, **{kind: body}, **extra)


def secret_free_texts(exc: BaseException, logs: pytest.LogCaptureFixture) -> list[str]:
    """Every text a user could see of ``exc``: message, repr, the whole formatted
    chain, the chained exceptions, the structured attributes, and the captured logs."""
    texts = ["".join(traceback.format_exception(exc)), logs.text]
    texts += [record.getMessage() for record in logs.records]
    for item in (exc, exc.__context__, exc.__cause__):
        if item is not None:
            texts += [str(item), repr(item)]
    texts += [str(getattr(exc, name, "")) for name in ("url", "reason", "message", "excerpt")]
    texts += [f"{e.field} {e.message}" for e in getattr(exc, "errors", ())]
    return texts


def assert_no_secret(exc: BaseException, logs: pytest.LogCaptureFixture) -> None:
    """The token appears nowhere; a request URL, if shown, reads ``access_token=***``."""
    for text in secret_free_texts(exc, logs):
        assert TOKEN not in text
    url = getattr(exc, "url", "")
    if url:
        assert url.endswith("access_token=***")
        assert "access_token=***" in str(exc)


# ------------------------------------------------------------------ error envelope


@pytest.mark.parametrize("code_key", ["error_code", "code"])
async def test_400_envelope_is_validation_error_with_field_errors(
    mocked: Any, logs: pytest.LogCaptureFixture, code_key: str
) -> None:
    """A 400 envelope becomes ``ValidationError``: ``error_code`` read from
    ``error_code`` or ``code``; ``errors`` items as objects or plain strings become
    ``FieldError``s; the message names the fields."""
    envelope = {
        "status": "error",
        "message": "Data validation failed",
        code_key: 10000,
        "errors": [
            {"message": "Email is invalid", code_key: 3, "field": "[signers][0][email]"},
            "Name is required",
            {"message": "Bad deadline", code_key: "7"},
        ],
    }
    respond(mocked, "POST", CREATE_PATH, 400, envelope)

    async with make_client() as dokobit:
        with pytest.raises(ValidationError) as caught:
            await create(dokobit)

    exc = caught.value
    assert (exc.status, exc.error_code, exc.message) == (400, 10000, "Data validation failed")
    assert exc.errors == (
        FieldError(message="Email is invalid", error_code=3, field="[signers][0][email]"),
        FieldError(message="Name is required"),
        FieldError(message="Bad deadline", error_code=7),
    )
    assert exc.body == envelope
    assert "[signers][0][email]: Email is invalid" in str(exc)
    assert "Name is required" in str(exc)
    assert exc.method == "POST"
    assert_no_secret(exc, logs)


async def test_400_with_token_field_is_not_found(
    mocked: Any, logs: pytest.LogCaptureFixture
) -> None:
    """A 400 whose ``errors`` name the field ``[token]`` ("Signing with such token not
    found.") is ``NotFoundError``, not a validation error."""
    envelope = {
        "status": "error",
        "message": "Data validation failed",
        "code": 10000,
        "errors": [{"message": "Signing with such token not found.", "field": "[token]"}],
    }
    respond(mocked, "GET", STATUS_PATH, 400, envelope)

    async with make_client() as dokobit:
        with pytest.raises(NotFoundError) as caught:
            await status(dokobit)

    assert caught.value.status == 400
    assert caught.value.errors[0].field == "[token]"
    assert_no_secret(caught.value, logs)


STATUS_MAP = [
    pytest.param(401, {"status": "error", "message": "Unauthorized"}, AuthenticationError),
    pytest.param(403, {"status": "error", "message": "Access forbidden."}, AuthenticationError),
    pytest.param(404, {"status": "error", "message": "Not found", "code": 404}, NotFoundError),
    pytest.param(404, "", NotFoundError, id="404-empty"),
    pytest.param(500, {"status": "error", "message": "Problems", "error_code": 500}, ServerError),
    pytest.param(502, "<html><body>Bad gateway</body></html>", ServerError, id="502-html"),
    pytest.param(503, "", ServerError, id="503-empty"),
    pytest.param(504, {"message": "Gateway timeout"}, ServerError),
    pytest.param(418, {"status": "error", "message": "I'm a teapot"}, APIError),
]


@pytest.mark.parametrize(("http_status", "body", "error"), STATUS_MAP)
async def test_http_status_maps_to_error_class(
    mocked: Any,
    logs: pytest.LogCaptureFixture,
    http_status: int,
    body: Any,
    error: type[APIError],
) -> None:
    """401/403 are ``AuthenticationError``, 404 ``NotFoundError``, 5xx ``ServerError``,
    whatever the body; the error carries the HTTP status and the redacted URL."""
    respond(mocked, "GET", STATUS_PATH, http_status, body)

    async with make_client() as dokobit:
        with pytest.raises(APIError) as caught:
            await status(dokobit)

    exc = caught.value
    assert type(exc) is error
    assert exc.status == http_status
    assert f"HTTP {http_status}" in str(exc)
    assert exc.url == f"{BASE}{STATUS_PATH}?access_token=***"
    if isinstance(body, str) and body:
        assert "Bad gateway" in exc.message  # an excerpt of a non-JSON body
    assert_no_secret(exc, logs)


RETRY_AFTER = [
    pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
    pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
    pytest.param({"Retry-After": "HTTP-DATE-IN-60-S"}, 60.0, id="date"),
    pytest.param({"Retry-After": "soon"}, None, id="unreadable"),
    pytest.param({}, None, id="absent"),
]


@pytest.mark.parametrize(("headers", "seconds"), RETRY_AFTER)
async def test_429_is_rate_limited_with_retry_after(
    mocked: Any, logs: pytest.LogCaptureFixture, headers: dict[str, str], seconds: float | None
) -> None:
    """429 is ``RateLimitedError`` whose ``retry_after`` is read from delta-seconds or
    an HTTP date (``None`` when absent or unreadable)."""
    if headers.get("Retry-After") == "HTTP-DATE-IN-60-S":  # built now, not at collection
        headers = {"Retry-After": formatdate(time.time() + 60, usegmt=True)}
    respond(
        mocked,
        "GET",
        STATUS_PATH,
        429,
        {"status": "error", "message": "Slow down"},
        headers=headers,
    )

    async with make_client() as dokobit:
        with pytest.raises(RateLimitedError) as caught:
            await status(dokobit)

    assert caught.value.status == 429
    if seconds is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(seconds, abs=2)
    assert_no_secret(caught.value, logs)


ENVELOPE_200 = [
    pytest.param({"status": "error", "message": "Bad"}, ValidationError, id="no-code"),
    pytest.param(
        {"status": "error", "message": "Bad", "error_code": 10000}, ValidationError, id="10000"
    ),
    pytest.param({"status": "error", "message": "Gone", "code": 404}, NotFoundError, id="404"),
    pytest.param(
        {"status": "error", "message": "Denied", "error_code": 403}, AuthenticationError, id="403"
    ),
    pytest.param({"status": "error", "message": "Oops", "code": 500}, ServerError, id="500"),
    pytest.param(
        {"status": "error", "message": "x", "errors": [{"message": "?", "field": "[token]"}]},
        NotFoundError,
        id="token-field",
    ),
]


@pytest.mark.parametrize(("envelope", "error"), ENVELOPE_200)
async def test_2xx_with_error_status_is_an_error(
    mocked: Any, logs: pytest.LogCaptureFixture, envelope: dict[str, Any], error: type[APIError]
) -> None:
    """An HTTP 200 whose body says ``"status": "error"`` raises, classified by the
    envelope's ``code``/``error_code`` when it is an HTTP status, else a validation
    error."""
    respond(mocked, "POST", CREATE_PATH, 200, envelope)

    async with make_client() as dokobit:
        with pytest.raises(APIError) as caught:
            await create(dokobit)

    assert type(caught.value) is error
    assert caught.value.status == 200
    assert caught.value.message == envelope["message"]
    assert_no_secret(caught.value, logs)


@pytest.mark.parametrize(
    "body",
    [
        "<html><head><title>Maintenance</title></head><body>Back soon</body></html>",
        "Maintenance " + "x" * 5000,
        "[1, 2, 3]",
        "",
    ],
    ids=["html", "long", "json-array", "empty"],
)
async def test_non_json_200_is_decode_error_with_status_and_excerpt(
    mocked: Any, logs: pytest.LogCaptureFixture, body: str
) -> None:
    """A 200 that is not a JSON object on a JSON action is ``DecodeError``; its message
    shows the HTTP status and a short excerpt of the body."""
    respond(mocked, "GET", STATUS_PATH, 200, body, content_type="text/html")

    async with make_client() as dokobit:
        with pytest.raises(DecodeError) as caught:
            await status(dokobit)

    exc = caught.value
    assert exc.status == 200
    assert "HTTP 200" in str(exc)
    assert exc.excerpt == " ".join(body.split())[:200] + ("..." if len(body) > 200 else "")
    assert exc.excerpt in str(exc)
    assert len(str(exc)) < 400
    assert_no_secret(exc, logs)


# ------------------------------------------------------------------ retries


async def test_503_on_status_is_retried_then_succeeds(mocked: Any) -> None:
    """A read that gets 503 is sent again and succeeds on the second call."""
    respond(mocked, "GET", STATUS_PATH, 503, "")
    respond(mocked, "GET", STATUS_PATH, 200, {"status": "pending"})

    async with make_client(FAST) as dokobit:
        result = await status(dokobit)

    assert result.status == "pending"
    assert calls(mocked) == 2


@pytest.mark.parametrize("http_status", [500, 503])
async def test_unavailable_on_create_is_not_retried(mocked: Any, http_status: int) -> None:
    """A write that gets 500/503 is not repeated: one call, then ``ServerError``."""
    respond(mocked, "POST", CREATE_PATH, http_status, "", repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(ServerError):
            await create(dokobit)

    assert calls(mocked) == 1


@pytest.mark.parametrize("http_status", [502, 504])
async def test_gateway_error_on_create_is_outcome_unknown(mocked: Any, http_status: int) -> None:
    """A write that gets 502/504 from a gateway (which may have passed it on) is not
    repeated: one call, then ``OutcomeUnknownError`` with the status kept."""
    respond(mocked, "POST", CREATE_PATH, http_status, "", repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(OutcomeUnknownError) as caught:
            await create(dokobit)

    assert calls(mocked) == 1
    assert caught.value.status == http_status


async def test_retries_stop_after_max_attempts(mocked: Any) -> None:
    """A read that keeps failing with 503 is tried ``max_attempts`` times, then raises."""
    respond(mocked, "GET", STATUS_PATH, 503, "", repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(ServerError):
            await status(dokobit)

    assert calls(mocked) == FAST.max_attempts


def lost_answers() -> list[Any]:
    """Failures after the request left: the server may have acted on it."""
    return [
        pytest.param(aiohttp.ServerDisconnectedError(), id="disconnected"),
        pytest.param(asyncio.TimeoutError(), id="asyncio-timeout"),
        pytest.param(aiohttp.SocketTimeoutError("read timed out"), id="socket-timeout"),
        pytest.param(aiohttp.ClientOSError(104, "Connection reset by peer"), id="reset"),
        pytest.param(aiohttp.ClientPayloadError("truncated"), id="payload"),
    ]


def not_sent() -> list[Any]:
    """Failures before the request left: nothing happened on the server."""
    return [
        pytest.param(
            aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, "Connection refused")),
            id="connector",
        ),
        pytest.param(aiohttp.ConnectionTimeoutError("connect timed out"), id="connect-timeout"),
    ]


@pytest.mark.parametrize("failure", lost_answers())
async def test_lost_answer_on_create_is_outcome_unknown_after_one_call(
    mocked: Any, logs: pytest.LogCaptureFixture, failure: Exception
) -> None:
    """A write whose answer was lost (disconnect, timeout, reset) is never resent: one
    call, then ``OutcomeUnknownError``, a ``TransportError`` with no aiohttp cause."""
    mocked.post(url_of(CREATE_PATH), exception=failure, repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(OutcomeUnknownError) as caught:
            await create(dokobit)

    assert calls(mocked) == 1
    assert isinstance(caught.value, TransportError)
    assert caught.value.__cause__ is None
    assert not isinstance(caught.value.__context__, aiohttp.ClientError)
    assert_no_secret(caught.value, logs)


@pytest.mark.parametrize("failure", lost_answers())
async def test_lost_answer_on_status_is_retried(mocked: Any, failure: Exception) -> None:
    """A read whose answer was lost is sent again and succeeds on the second call."""
    mocked.get(url_of(STATUS_PATH), exception=failure)
    respond(mocked, "GET", STATUS_PATH, 200, {"status": "completed"})

    async with make_client(FAST) as dokobit:
        result = await status(dokobit)

    assert result.status == "completed"
    assert calls(mocked) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param(asyncio.TimeoutError(), RequestTimeoutError, id="timeout"),
        pytest.param(aiohttp.ServerDisconnectedError(), TransportError, id="disconnected"),
    ],
)
async def test_lost_answer_on_status_raises_transport_error_when_retries_run_out(
    mocked: Any, logs: pytest.LogCaptureFixture, failure: Exception, error: type[Exception]
) -> None:
    """A read that keeps losing its answer ends in a ``TransportError`` (a timeout in
    ``RequestTimeoutError``, also a builtin ``TimeoutError``), not an aiohttp error."""
    mocked.get(url_of(STATUS_PATH), exception=failure, repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(TransportError) as caught:
            await status(dokobit)

    assert type(caught.value) is error
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert calls(mocked) == FAST.max_attempts
    assert_no_secret(caught.value, logs)


@pytest.mark.parametrize("failure", not_sent())
async def test_not_sent_on_create_is_retried(mocked: Any, failure: Exception) -> None:
    """A write that never left (connection refused, connect timeout) is safe to send
    again, and succeeds on the second call."""
    mocked.post(url_of(CREATE_PATH), exception=failure)
    respond(mocked, "POST", CREATE_PATH, 200, {"status": "ok", "token": "SIG1"})

    async with make_client(FAST) as dokobit:
        result = await create(dokobit)

    assert result.token == "SIG1"
    assert calls(mocked) == 2


async def test_connect_failure_that_persists_is_connect_error(
    mocked: Any, logs: pytest.LogCaptureFixture
) -> None:
    """A connection that never succeeds ends in ``ConnectError`` (a builtin
    ``ConnectionError``) after ``max_attempts`` calls."""
    failure = aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, "Connection refused"))
    mocked.post(url_of(CREATE_PATH), exception=failure, repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(ConnectError) as caught:
            await create(dokobit)

    assert isinstance(caught.value, ConnectionError)
    assert calls(mocked) == FAST.max_attempts
    assert_no_secret(caught.value, logs)


@pytest.mark.parametrize(
    "rate_limit",
    [None, RateLimit(calls=10_000, period=1.0)],
    ids=["no-limiter", "big-limiter"],
)
async def test_429_on_create_is_retried(mocked: Any, rate_limit: RateLimit | None) -> None:
    """429 means the API refused the call, so even a write is sent again."""
    respond(
        mocked,
        "POST",
        CREATE_PATH,
        429,
        {"status": "error", "message": "Slow"},
        headers={"Retry-After": "0"},
    )
    respond(mocked, "POST", CREATE_PATH, 200, {"status": "ok", "token": "SIG1"})

    async with make_client(FAST, rate_limit=rate_limit) as dokobit:
        result = await create(dokobit)

    assert result.token == "SIG1"
    assert calls(mocked) == 2


WRITES = [
    pytest.param(create, "POST", CREATE_PATH, False, id="external.create"),
    pytest.param(
        lambda c: c.external.add_signers("SIG1", [ExternalSigner(external_id="x", phone="+1")]),
        "POST",
        "/api/signing-external/SIG1/signers/add.json",
        False,
        id="external.add_signers",
    ),
    pytest.param(
        lambda c: c.external.remind("SIG1", "P1"),
        "POST",
        "/api/signing-external/SIG1/remind.json",
        False,
        id="external.remind",
    ),
    pytest.param(
        lambda c: c.external.remove_signers("SIG1", ["P1"]),
        "POST",
        "/api/signing-external/SIG1/signers/delete.json",
        False,
        id="external.remove_signers",
    ),
    pytest.param(
        lambda c: c.seal("SIG1"), "POST", "/api/signing/SIG1/seal.json", False, id="seal"
    ),
    pytest.param(
        lambda c: c.validation.upload(SigningFile.from_bytes(PDF, name="v.pdf")),
        "POST",
        "/api/validation/upload.json",
        False,
        id="validation.upload",
    ),
    pytest.param(
        lambda c: c.external.update("SIG1", hard_deadline=True),
        "POST",
        "/api/signing-external/SIG1/update.json",
        True,
        id="external.update",
    ),
    pytest.param(
        lambda c: c.internal.delete("SIG1"),
        "POST",
        "/api/signing-internal/SIG1/delete.json",
        True,
        id="internal.delete",
    ),
    pytest.param(
        lambda c: c.internal.download("SIG1"),
        "GET",
        "/api/signing-internal/SIG1/download",
        True,
        id="internal.download",
    ),
]


@pytest.mark.parametrize(("call", "method", "path", "idempotent"), WRITES)
async def test_lost_answer_is_retried_only_for_idempotent_actions(
    mocked: Any,
    call: Callable[[DokobitClient], Awaitable[Any]],
    method: str,
    path: str,
    idempotent: bool,
) -> None:
    """After a dropped connection, idempotent actions (update, delete, downloads) are
    sent again; other writes stop after one call with ``OutcomeUnknownError``."""
    mocked.add(url_of(path), method=method, exception=aiohttp.ServerDisconnectedError())
    mocked.add(url_of(path), method=method, payload={"status": "ok", "token": "T"})

    async with make_client(FAST) as dokobit:
        if idempotent:
            await call(dokobit)
        else:
            with pytest.raises(OutcomeUnknownError):
                await call(dokobit)

    assert calls(mocked) == (2 if idempotent else 1)


# ------------------------------------------------------------------ secrets

ECHO = f"{BASE}{STATUS_PATH}?access_token={TOKEN}"

API_ECHOES = [
    pytest.param(403, {"status": "error", "message": f"Token {TOKEN} rejected"}, id="message"),
    pytest.param(
        400,
        {"status": "error", "message": "x", "errors": [{"message": f"{TOKEN} bad", "field": "a"}]},
        id="field-error-object",
    ),
    pytest.param(
        400,
        {"status": "error", "message": "x", "errors": [f"{TOKEN} bad"]},
        id="field-error-string",
    ),
    pytest.param(404, {"status": "error", "message": f"No {ECHO}", "code": 404}, id="url"),
    pytest.param(429, {"status": "error", "message": f"Slow down {TOKEN}"}, id="429"),
    pytest.param(500, f"<html>Trace: GET {ECHO} token={TOKEN}</html>", id="500-html"),
    pytest.param(200, f"not json: {ECHO} {TOKEN}", id="200-not-json"),
    pytest.param(200, {"status": "error", "message": f"Bad {TOKEN}"}, id="200-envelope"),
    pytest.param(200, {"status": "ok", "note": f"for {TOKEN}"}, id="200-undecodable-model"),
]


@pytest.mark.parametrize(("http_status", "body"), API_ECHOES)
async def test_token_echoed_by_the_api_never_reaches_the_error(
    mocked: Any, logs: pytest.LogCaptureFixture, http_status: int, body: Any
) -> None:
    """Even when the answer repeats the access token (in the message, a field error,
    a non-JSON body), no error text, repr, traceback or log line contains it."""
    respond(mocked, "POST", CREATE_PATH, http_status, body, content_type="text/html")

    async with make_client() as dokobit:
        with pytest.raises(DokobitError) as caught:
            await create(dokobit)

    assert_no_secret(caught.value, logs)


def transport_failures() -> list[Any]:
    """aiohttp exceptions whose own text carries the full URL, token included."""
    info = RequestInfo(URL(ECHO), "GET", CIMultiDictProxy(CIMultiDict()), URL(ECHO))
    return [
        pytest.param(
            aiohttp.ClientResponseError(info, (), status=0, message=f"broken {ECHO}"),
            id="response-error",
        ),
        pytest.param(
            aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, f"refused {ECHO}")),
            id="connector",
        ),
        pytest.param(aiohttp.ServerDisconnectedError(f"closed {ECHO}"), id="disconnected"),
        pytest.param(aiohttp.ConnectionTimeoutError(f"connect {ECHO}"), id="connect-timeout"),
        pytest.param(asyncio.TimeoutError(f"timed out {ECHO}"), id="timeout"),
        pytest.param(aiohttp.InvalidURL(ECHO), id="invalid-url"),
        pytest.param(aiohttp.ClientOSError(104, f"reset {ECHO}"), id="os-error"),
        pytest.param(None, id="aioresponses-unmatched"),
    ]


@pytest.mark.parametrize("action", [status, create], ids=["status", "create"])
@pytest.mark.parametrize("failure", transport_failures())
async def test_token_in_transport_failures_is_redacted(
    mocked: Any,
    logs: pytest.LogCaptureFixture,
    failure: Exception | None,
    action: Callable[[DokobitClient], Awaitable[Any]],
) -> None:
    """A transport failure whose aiohttp text contains the full URL becomes our
    ``TransportError`` with the URL as ``access_token=***``, for reads (retried, so
    the retry log lines are checked too) and writes."""
    if failure is not None:  # else nothing matches: aioresponses refuses with the URL
        mocked.get(url_of(STATUS_PATH), exception=failure, repeat=True)
        mocked.post(url_of(CREATE_PATH), exception=failure, repeat=True)

    async with make_client(FAST) as dokobit:
        with pytest.raises(TransportError) as caught:
            await action(dokobit)

    assert caught.value.url.startswith(BASE + "/api/signing-external/")
    assert any(r.name == "dokobit_async" and r.levelno == logging.DEBUG for r in logs.records)
    assert_no_secret(caught.value, logs)


async def test_foreign_url_error_hides_the_token(
    mocked: Any, logs: pytest.LogCaptureFixture
) -> None:
    """Refusing a foreign file URL that carries the token does not print the token."""
    async with make_client() as dokobit:
        with pytest.raises(ForeignURLError) as caught:
            await dokobit.download_file(f"https://evil.example.com/f?access_token={TOKEN}")

    assert "access_token=***" in str(caught.value)
    assert mocked.requests == {}
    assert_no_secret(caught.value, logs)


async def test_repr_of_client_and_namespaces_hides_the_token() -> None:
    """``repr`` of the client and its namespaces shows the host, never the token."""
    async with make_client() as dokobit:
        shown = [repr(dokobit), repr(dokobit.external), repr(dokobit.validation)]

    for text in shown:
        assert TOKEN not in text
        assert "beta.dokobit.com" in text


# ------------------------------------------------------------------ invalid arguments


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _create_with(**changes: Any) -> Callable[[DokobitClient], Awaitable[Any]]:
    def call(dokobit: DokobitClient) -> Awaitable[Any]:
        arguments: dict[str, Any] = {
            "name": "Contract",
            "type": "pdf",
            "files": [SigningFile.from_bytes(PDF, name="c.pdf")],
        }
        arguments.update({k: v() for k, v in changes.items()})
        return dokobit.external.create(**arguments)

    return call


def _internal_create(redirect_uri: Any) -> Callable[[DokobitClient], Awaitable[Any]]:
    return lambda c: c.internal.create(
        name="Contract",
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="c.pdf")],
        redirect_uri=redirect_uri,
    )


INVALID = [
    pytest.param(
        _create_with(signers=lambda: [ExternalSigner(external_id="s", email="a@b.c", code="3")]),
        id="external-code-without-country",
    ),
    pytest.param(
        lambda c: c.internal.add_signers("SIG1", [InternalSigner(external_id="i", code="38")]),
        id="internal-code-without-country",
    ),
    pytest.param(
        lambda c: c.e_delivery.create(
            name="n",
            files=[SigningFile.from_bytes(PDF, name="c.pdf")],
            recipients=[Recipient(external_id="r", code="38", country_code="", email="a@b.c")],
        ),
        id="recipient-code-without-country",
    ),
    pytest.param(_create_with(type=lambda: "docx"), id="unknown-type"),
    pytest.param(_create_with(files=lambda: []), id="empty-files"),
    pytest.param(
        _create_with(files=lambda: [SigningFile.from_bytes(b"hello", name="a.txt")]),
        id="pdf-type-with-text-file",
    ),
    pytest.param(
        _create_with(
            files=lambda: [
                SigningFile.from_bytes(PDF, name="a.pdf"),
                SigningFile.from_bytes(b"PK\x03\x04zip", name="b.zip"),
            ]
        ),
        id="pdf-type-with-second-file-zip",
    ),
    pytest.param(
        _create_with(files=lambda: [SigningFile.from_stream(_stream(b"<xml/>"), name="x.pdf")]),
        id="pdf-type-with-non-pdf-stream",
    ),
    pytest.param(
        lambda c: c.e_delivery.create(
            name="n",
            files=[SigningFile.from_bytes(b"GIF89a", name="x.pdf")],
            recipients=[Recipient(external_id="r", code="38", country_code="lt", email="a@b")],
        ),
        id="e-delivery-with-non-pdf",
    ),
    pytest.param(
        _create_with(deadline=lambda: datetime(2030, 1, 2, 3, 4, 5)), id="naive-deadline"
    ),
    pytest.param(
        lambda c: c.external.update("SIG1", deadline=datetime(2030, 1, 2)), id="naive-update"
    ),
    pytest.param(_internal_create(""), id="internal-empty-redirect_uri"),
    pytest.param(_internal_create(None), id="internal-no-redirect_uri"),
    pytest.param(lambda c: c.external.remove_signers("SIG1", []), id="remove-no-signers"),
    pytest.param(lambda c: c.internal.remove_signers("SIG1", "P1"), id="remove-string"),
    pytest.param(lambda c: c.external.add_signers("SIG1", []), id="add-no-signers"),
    pytest.param(lambda c: c.internal.update("SIG1"), id="update-nothing"),
    pytest.param(lambda c: c.external.status(""), id="blank-token"),
    pytest.param(lambda c: c.validation.report("V1", "summary-pdf"), id="unknown-report"),
]


@pytest.mark.parametrize("call", INVALID)
async def test_invalid_arguments_raise_before_any_request(
    mocked: Any, call: Callable[[DokobitClient], Awaitable[Any]]
) -> None:
    """Bad input raises ``InvalidArgumentError`` (a ``ValueError``) and nothing is
    sent."""
    async with make_client() as dokobit:
        with pytest.raises(InvalidArgumentError) as caught:
            await call(dokobit)

    assert isinstance(caught.value, ValueError)
    assert mocked.requests == {}
