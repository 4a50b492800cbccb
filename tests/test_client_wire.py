"""What ``DokobitClient`` puts on the wire for every action, in both body encodings,
and how it decodes the answers (``aioresponses``; nothing reaches the network).

Wire facts: ``docs/wire-notes.md#endpoints`` and ``#body-encoding`` (form
bodies in PHP bracket notation with booleans ``1``/``0``; JSON bodies nest).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
from yarl import URL

from dokobit_async import (
    Annotation,
    CreatedSigning,
    DocumentStatus,
    DokobitClient,
    Download,
    EDeliveryCreated,
    ExternalSigner,
    ForeignURLError,
    InternalSigner,
    NotFoundError,
    Recipient,
    ReportKind,
    Result,
    RetryPolicy,
    Role,
    SignersAdded,
    SignerStatus,
    SigningFile,
    SigningMethod,
    SigningStatus,
    SigningType,
)
from dokobit_async._payload import StreamingBody
from dokobit_async.exceptions import APIError, AuthenticationError, ServerError, ValidationError

TOKEN = "SECRET-TOKEN-123"
BASE = "https://beta.dokobit.com"
CONTENT_TYPES = {"form": "application/x-www-form-urlencoded", "json": "application/json"}

# Sizes not divisible by 3 (base64 padding "=") and every byte value (base64 "+"
# and "/"), so the form encoding must escape all three.
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%EOF"
ASICE = b"PK\x03\x04" + bytes(reversed(range(256))) * 2 + b"x"
# Under aioresponses' 128 KiB buffer, over the client's 64 KiB read chunk.
SIGNED_FILE = b"%PDF-1.7 signed " + random.Random(7).randbytes(100_000)


# ------------------------------------------------------------------ test plumbing


@pytest.fixture(params=["form", "json"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[DokobitClient]:
    """A client on the beta host in each body encoding, without rate limit or retries."""
    async with DokobitClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(max_attempts=1),
        body_encoding=request.param,
    ) as dokobit:
        yield dokobit


def with_token(path: str) -> str:
    """The full URL the client must request for ``path`` (with its own query, if any)."""
    return str(URL(BASE + path).update_query(access_token=TOKEN))


def only_request(mock: Any) -> tuple[str, URL, Any]:
    """The one request that was sent: method, URL and the recorded call."""
    assert len(mock.requests) == 1, list(mock.requests)
    ((method, url), calls) = next(iter(mock.requests.items()))
    assert len(calls) == 1
    return method, url, calls[0]


def php_fields(value: Any, prefix: str = "") -> dict[str, str]:
    """Reference PHP ``http_build_query`` flattening of a JSON-shaped body."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    elif isinstance(value, bool):
        return {prefix: "1" if value else "0"}
    else:
        return {prefix: str(value)}
    out: dict[str, str] = {}
    for key, item in items:
        out.update(php_fields(item, f"{prefix}[{key}]" if prefix else str(key)))
    return out


def answer(mocked: Any, method: str, path: str, **response: Any) -> list[Any]:
    """Answer ``method path`` (with the token) with ``response``; the returned list
    receives each request's body, read while the request is in flight (a spooled
    upload is gone afterwards)."""
    sent: list[Any] = []

    async def record(url: URL, **kwargs: Any) -> None:
        data = kwargs.get("data")
        if data is None:
            sent.append(None)
            return
        assert isinstance(data, StreamingBody)
        raw = await data.as_bytes()
        sent.append(SimpleNamespace(raw=raw, size=data.size, content_type=data.content_type))

    mocked.add(with_token(path), method=method, callback=record, **response)
    return sent


def sent_body(record: Any, encoding: str) -> Any:
    """A recorded body: a dict of form fields, or the decoded JSON.

    Also checks the content type and that the precomputed size (the Content-Length)
    is the real length.
    """
    assert record.size == len(record.raw)
    assert record.content_type == CONTENT_TYPES[encoding]
    if encoding == "json":
        return json.loads(record.raw)
    pairs = parse_qsl(record.raw.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert len(pairs) == len(dict(pairs)), "a form field name repeats"
    return dict(pairs)


def assert_body_equal(actual: Any, expected: Any, encoding: str) -> None:
    """Form: the exact PHP bracket fields; JSON: the same tree with the same JSON types
    (``true`` is not ``1``)."""
    if encoding == "form":
        assert actual == php_fields(expected)
    else:
        assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signing_file(name: str, data: bytes) -> dict[str, str]:
    """A file of a signing on the wire: base64 content and hex SHA-256 digest."""
    return {"name": name, "content": b64(data), "digest": hashlib.sha256(data).hexdigest()}


def plain_file(name: str, data: bytes) -> dict[str, str]:
    """An e-delivery or validation file on the wire: no digest."""
    return {"name": name, "content": b64(data)}


# ------------------------------------------------------------------ request data

DEADLINE = datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))  # 03:04:05Z

ONA = ExternalSigner(
    external_id="s1",
    name="Ona",
    surname="Onaitė",
    email="ona@example.com",
    code="38001010000",
    country_code="lt",
    role=Role.SIGNER,
    sequence=1,
    annotation=Annotation(page=1, top=10, left=20, language="lt"),
)
JONAS = ExternalSigner(external_id="s2", phone="+37060000000", role="viewer", sequence=2)
ONA_WIRE = {
    "external_id": "s1",
    "name": "Ona",
    "surname": "Onaitė",
    "email": "ona@example.com",
    "code": "38001010000",
    "country_code": "lt",
    "role": "signer",
    "sequence": 1,
    "annotation": {"page": 1, "top": 10, "left": 20, "language": "lt"},
}
JONAS_WIRE = {"external_id": "s2", "phone": "+37060000000", "role": "viewer", "sequence": 2}
INSIDER = InternalSigner(
    external_id="i1",
    code="38001010000",
    country_code="LT",
    language="en",
    annotation=Annotation(page=2),
)
INSIDER_WIRE = {
    "external_id": "i1",
    "code": "38001010000",
    "country_code": "LT",
    "language": "en",
    "annotation": {"page": 2},
}


def pdf() -> SigningFile:
    return SigningFile.from_bytes(PDF, name="sutartis ąčę.pdf")


def asice() -> SigningFile:
    return SigningFile.from_bytes(ASICE, name="bundle.asice")


def external_create(dokobit: DokobitClient) -> Awaitable[Any]:
    return dokobit.external.create(
        name="Sutartis Nr. 1",
        type="pdf",
        files=[pdf(), SigningFile.from_bytes(PDF, name="annex.pdf")],
        signers=[ONA, JONAS],
        postback_url="https://app.example.com/hook?k=1&x=2",
        deadline=DEADLINE,
        hard_deadline=True,
        require_qualified_signatures=False,
        annotation_position="first_bottom",
        annotation_personal_code=True,
        comment="Please sign",
        allow_video_identification=False,
        allow_document_saving=True,
        flatten_pdf=False,
        allowed_signing_methods=[SigningMethod.SMARTID, "mobile"],
    )


EXTERNAL_CREATE_WIRE = {
    "type": "pdf",
    "name": "Sutartis Nr. 1",
    "files": [signing_file("sutartis ąčę.pdf", PDF), signing_file("annex.pdf", PDF)],
    "signers": [ONA_WIRE, JONAS_WIRE],
    "postback_url": "https://app.example.com/hook?k=1&x=2",
    "deadline": "2030-01-02T03:04:05Z",
    "hard_deadline": True,
    "require_qualified_signatures": False,
    "annotation_position": "first_bottom",
    "annotation_personal_code": True,
    "comment": "Please sign",
    "allow_video_identification": False,
    "allow_document_saving": True,
    "flatten_pdf": False,
    "allowed_signing_methods": ["smartid", "mobile"],
}


# ------------------------------------------------------------------ answer checks


def check_created(result: Any) -> None:
    assert isinstance(result, CreatedSigning)
    assert result.token == "SIG1"
    assert result.signer("s1").token == "P1"
    assert result.signer("s1").first_name == "Ona"
    assert result.signers[0].raw["shoe_size"] == 42  # unknown field kept
    assert result.raw["brand_new"] == {"x": 1}


def check_created_internal(result: Any) -> None:
    assert isinstance(result, CreatedSigning)
    assert result.token == "SIG1"
    assert result.signer("i1").signing_url == "https://beta.dokobit.com/signing/P1"


def check_status(result: Any) -> None:
    assert isinstance(result, SigningStatus)
    assert result.status is DocumentStatus.PENDING


def check_added(result: Any) -> None:
    assert isinstance(result, SignersAdded)
    assert [s.token for s in result.signers] == ["P3"]
    assert result.signers[0].role is Role.SIGNER
    assert result.signers[0].raw["unheard_of"] is True


def check_result(result: Any) -> None:
    assert isinstance(result, Result)
    assert result.raw["status"] == "ok"


def check_delivery(result: Any) -> None:
    assert isinstance(result, EDeliveryCreated)
    assert result.token == "D1"
    assert result.recipients[0].token == "R1"
    assert result.recipients[0].country == "lt"


def check_validation_token(result: Any) -> None:
    assert result == "V1"


OK = {"status": "ok"}
CREATED = {
    "status": "ok",
    "token": "SIG1",
    "brand_new": {"x": 1},
    "signers": [
        {"external_id": "s1", "token": "P1", "first_name": "Ona", "shoe_size": 42},
        {"external_id": "s2", "token": "P2"},
    ],
}
CREATED_INTERNAL = {
    "status": "ok",
    "token": "SIG1",
    "signers": [
        {"external_id": "i1", "token": "P1", "redirect_uri": "https://beta.dokobit.com/signing/P1"}
    ],
}
ADDED = {
    "status": "ok",
    "signers": [{"external_id": "s3", "token": "P3", "role": "signer", "unheard_of": True}],
}


@dataclasses.dataclass(frozen=True)
class Action:
    """One JSON action: how to call it, what must be sent, what comes back."""

    id: str
    call: Callable[[DokobitClient], Awaitable[Any]]
    method: str
    path: str
    body: dict[str, Any] | None
    answer: dict[str, Any]
    check: Callable[[Any], None]


def _flow_actions(flow: str) -> list[Action]:
    prefix = f"/api/signing-{flow}/SIG1"

    def ns(dokobit: DokobitClient) -> Any:
        return getattr(dokobit, flow)

    return [
        Action(
            f"{flow}.status",
            lambda c: ns(c).status("SIG1"),
            "GET",
            f"{prefix}/status.json",
            None,
            {"status": "pending", "name": "Sutartis"},
            check_status,
        ),
        Action(
            f"{flow}.remove_signers",
            lambda c: ns(c).remove_signers("SIG1", ["P1", "P2"]),
            "POST",
            f"{prefix}/signers/delete.json",
            {"signers": [{"token": "P1"}, {"token": "P2"}]},
            OK,
            check_result,
        ),
        Action(
            f"{flow}.delete",
            lambda c: ns(c).delete("SIG1"),
            "POST",
            f"{prefix}/delete.json",
            None,
            {"status": "ok", "token": "SIG1"},
            check_result,
        ),
    ]


ACTIONS = [
    Action(
        "external.create",
        external_create,
        "POST",
        "/api/signing-external/create.json",
        EXTERNAL_CREATE_WIRE,
        CREATED,
        check_created,
    ),
    Action(
        "internal.create",
        lambda c: c.internal.create(
            name="Vidinis",
            type=SigningType.ASICE,
            files=[asice()],
            redirect_uri="https://app.example.com/back",
            signers=[INSIDER],
            require_qualified_signatures=True,
            allowed_signing_methods=["smartcard"],
        ),
        "POST",
        "/api/signing-internal/create.json",
        {
            "type": "asice",
            "name": "Vidinis",
            "files": [signing_file("bundle.asice", ASICE)],
            "signers": [INSIDER_WIRE],
            "redirect_uri": "https://app.example.com/back",
            "require_qualified_signatures": True,
            "allowed_signing_methods": ["smartcard"],
        },
        CREATED_INTERNAL,
        check_created_internal,
    ),
    *_flow_actions("external"),
    *_flow_actions("internal"),
    Action(
        "external.add_signers",
        lambda c: c.external.add_signers(
            "SIG1", [ExternalSigner(external_id="s3", email="p@example.com")], comment="Hi"
        ),
        "POST",
        "/api/signing-external/SIG1/signers/add.json",
        {"signers": [{"external_id": "s3", "email": "p@example.com"}], "comment": "Hi"},
        ADDED,
        check_added,
    ),
    Action(
        "internal.add_signers",
        lambda c: c.internal.add_signers("SIG1", [INSIDER]),
        "POST",
        "/api/signing-internal/SIG1/signers/add.json",
        {"signers": [INSIDER_WIRE]},
        ADDED,
        check_added,
    ),
    Action(
        "external.update",
        lambda c: c.external.update(
            "SIG1",
            deadline=DEADLINE,
            hard_deadline=False,
            allow_document_saving=True,
            allowed_signing_methods=[SigningMethod.MOBILE, SigningMethod.SMARTID],
        ),
        "POST",
        "/api/signing-external/SIG1/update.json",
        {
            "deadline": "2030-01-02T03:04:05Z",
            "hard_deadline": False,
            "allow_document_saving": True,
            "allowed_signing_methods": ["mobile", "smartid"],
        },
        OK,
        check_result,
    ),
    Action(
        "internal.update",
        lambda c: c.internal.update("SIG1", require_qualified_signatures=False),
        "POST",
        "/api/signing-internal/SIG1/update.json",
        {"require_qualified_signatures": False},
        OK,
        check_result,
    ),
    Action(
        "external.remind",
        lambda c: c.external.remind("SIG1", "P1", message="Don't forget"),
        "POST",
        "/api/signing-external/SIG1/remind.json",
        {"signer": "P1", "message": "Don't forget"},
        OK,
        check_result,
    ),
    Action(
        "seal",
        lambda c: c.seal(
            "SIG1", custom_reason="Archive", annotation=Annotation(page=1, top=2, left=3)
        ),
        "POST",
        "/api/signing/SIG1/seal.json",
        {"custom_reason": "Archive", "annotation": {"page": 1, "top": 2, "left": 3}},
        OK,
        check_result,
    ),
    Action(
        "e_delivery.create",
        lambda c: c.e_delivery.create(
            name="Notice",
            files=[pdf()],
            recipients=[
                Recipient(external_id="r1", code="38001010000", country_code="lt", email="r@x.lt")
            ],
            postback_url="https://app.example.com/hook",
            comment="For you",
        ),
        "POST",
        "/api/e-delivery/create.json",
        {
            "type": "pdf",
            "name": "Notice",
            "postback_url": "https://app.example.com/hook",
            "comment": "For you",
            "files": [plain_file("sutartis ąčę.pdf", PDF)],
            "recipients": [
                {
                    "external_id": "r1",
                    "code": "38001010000",
                    "country_code": "lt",
                    "email": "r@x.lt",
                }
            ],
        },
        {
            "status": "ok",
            "token": "D1",
            "recipients": [{"external_id": "r1", "token": "R1", "country": "lt"}],
        },
        check_delivery,
    ),
    Action(
        "validation.upload",
        lambda c: c.validation.upload(asice()),
        "POST",
        "/api/validation/upload.json",
        {"file": plain_file("bundle.asice", ASICE)},
        {"status": "ok", "token": "V1"},
        check_validation_token,
    ),
]


# ------------------------------------------------------------------ JSON actions


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.id)
async def test_action_sends_exact_request_and_decodes_answer(
    client: DokobitClient, mocked: Any, action: Action
) -> None:
    """Each action sends its method and path with only ``access_token`` in the query,
    the exact body fields in the client's encoding (Content-Length = body length), and
    decodes the answer into its model."""
    sent = answer(mocked, action.method, action.path, payload=action.answer)

    result = await action.call(client)

    method, url, _ = only_request(mocked)
    assert method == action.method
    assert url.raw_path == action.path
    assert list(url.query.items()) == [("access_token", TOKEN)]
    if action.body is None and action.method == "GET":
        assert sent == [None]
    elif action.body is None:  # a bodiless POST is an empty form, in either encoding
        assert (sent[0].raw, sent[0].size) == (b"", 0)
        assert sent[0].content_type == CONTENT_TYPES["form"]
    else:
        body = sent_body(sent[0], client.body_encoding)
        assert_body_equal(body, action.body, client.body_encoding)
    action.check(result)


async def test_form_body_uses_php_bracket_names_and_1_0_booleans(mocked: Any) -> None:
    """Form bodies spell nesting as ``files[0][content]``, ``signers[1][external_id]``,
    ``allowed_signing_methods[0]``, ``signers[0][annotation][page]``; booleans are
    ``1``/``0``; the deadline is UTC with ``Z``; file content is escaped base64 of the
    original bytes and ``digest`` its hex SHA-256."""
    sent = answer(mocked, "POST", "/api/signing-external/create.json", payload=CREATED)
    async with DokobitClient(TOKEN, base_url=BASE, rate_limit=None) as dokobit:
        await external_create(dokobit)
    fields = sent_body(sent[0], "form")

    assert b"&files%5B0%5D%5Bcontent%5D=" in sent[0].raw
    assert b"+" not in sent[0].raw.split(b"content%5D=")[1].split(b"&")[0]
    assert base64.b64decode(fields["files[0][content]"], validate=True) == PDF
    assert fields["files[0][digest]"] == hashlib.sha256(PDF).hexdigest()
    assert fields["files[0][name]"] == "sutartis ąčę.pdf"
    assert fields["signers[1][external_id]"] == "s2"
    assert fields["signers[0][annotation][page]"] == "1"
    assert fields["allowed_signing_methods[0]"] == "smartid"
    assert fields["allowed_signing_methods[1]"] == "mobile"
    assert fields["hard_deadline"] == "1"
    assert fields["require_qualified_signatures"] == "0"
    assert fields["deadline"] == "2030-01-02T03:04:05Z"
    assert fields["postback_url"] == "https://app.example.com/hook?k=1&x=2"


async def test_json_body_nests_with_real_booleans(mocked: Any) -> None:
    """JSON bodies nest objects and lists, keep booleans and integers as JSON types,
    and carry the same base64 content and digest."""
    sent = answer(mocked, "POST", "/api/signing-external/create.json", payload=CREATED)
    async with DokobitClient(TOKEN, base_url=BASE, rate_limit=None, body_encoding="json") as c:
        await external_create(c)
    body = sent_body(sent[0], "json")

    assert body["hard_deadline"] is True
    assert body["require_qualified_signatures"] is False
    assert body["signers"][0]["annotation"] == {"page": 1, "top": 10, "left": 20, "language": "lt"}
    assert body["signers"][1]["sequence"] == 2
    assert base64.b64decode(body["files"][0]["content"], validate=True) == PDF
    assert body["files"][0]["digest"] == hashlib.sha256(PDF).hexdigest()
    assert body["allowed_signing_methods"] == ["smartid", "mobile"]
    assert body["deadline"] == "2030-01-02T03:04:05Z"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """``data`` in uneven pieces (not multiples of 3)."""
    for start, end in ((0, 1), (1, 8), (8, 1000), (1000, len(data))):
        yield data[start:end]


FILE_SOURCES = {
    "bytes": lambda tmp: SigningFile.from_bytes(SIGNED_FILE, name="doc.pdf"),
    "path": lambda tmp: SigningFile.from_path(_write(tmp / "doc.pdf", SIGNED_FILE)),
    "stream": lambda tmp: SigningFile.from_stream(_chunks(SIGNED_FILE), name="doc.pdf"),
}


def _write(path: Any, data: bytes) -> Any:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("source", sorted(FILE_SOURCES))
async def test_uploaded_file_content_round_trips_from_every_source(
    client: DokobitClient, mocked: Any, tmp_path: Any, source: str
) -> None:
    """A file given as bytes, a path or an uneven async stream is sent as base64 that
    decodes back to the original bytes, with no digest on a validation upload."""
    sent = answer(mocked, "POST", "/api/validation/upload.json", payload={"token": "V9"})

    assert await client.validation.upload(FILE_SOURCES[source](tmp_path)) == "V9"

    body = sent_body(sent[0], client.body_encoding)
    if client.body_encoding == "form":
        assert set(body) == {"file[name]", "file[content]"}
        content = body["file[content]"]
    else:
        assert set(body["file"]) == {"name", "content"}
        content = body["file"]["content"]
    assert base64.b64decode(content, validate=True) == SIGNED_FILE


async def test_validation_upload_accepts_a_path(
    client: DokobitClient, mocked: Any, tmp_path: Any
) -> None:
    """``validation.upload`` takes a plain path and names the file after it."""
    sent = answer(mocked, "POST", "/api/validation/upload.json", payload={"token": "V2"})

    assert await client.validation.upload(_write(tmp_path / "signed.asice", ASICE)) == "V2"

    expected = {"file": plain_file("signed.asice", ASICE)}
    assert_body_equal(sent_body(sent[0], client.body_encoding), expected, client.body_encoding)


STATUS_ANSWER = {
    "status": "completed",
    "name": "Sutartis",
    "type": "pdf",
    "date_created": "2030-01-01T10:00:00+02:00",
    "deadline": "2030-01-02 03:04:05",
    "filename": "sutartis.pdf",
    "files": [{"name": "a.pdf", "url": f"{BASE}/api/signing/SIG1/file/1", "size": 3}],
    "signers": [
        {"token": "P1", "status": "signed", "first_name": "Ona"},
        {"token": "P2", "status": "on_hold", "code": 38001010000},
    ],
    "brand_new_field": {"x": 1},
}


@pytest.mark.parametrize("flow", ["external", "internal"])
async def test_status_decodes_into_model_with_open_enums(
    client: DokobitClient, mocked: Any, flow: str
) -> None:
    """Known status strings become enum members, unknown ones stay plain ``str``;
    dates are parsed as aware datetimes; unknown fields are kept in ``raw``."""
    mocked.get(with_token(f"/api/signing-{flow}/SIG1/status.json"), payload=STATUS_ANSWER)

    status = await getattr(client, flow).status("SIG1")

    assert status.status is DocumentStatus.COMPLETED
    assert status.type is SigningType.PDF
    assert status.date_created == datetime(2030, 1, 1, 8, tzinfo=timezone.utc)
    assert status.deadline == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert status.files[0].url == f"{BASE}/api/signing/SIG1/file/1"
    assert status.files[0].raw["size"] == 3
    assert status.signers[0].status is SignerStatus.SIGNED
    assert status.signers[1].status == "on_hold"
    assert type(status.signers[1].status) is str
    assert status.signers[1].code == "38001010000"
    assert status.raw["brand_new_field"] == {"x": 1}


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("pending", DocumentStatus.PENDING),
        ("completed", DocumentStatus.COMPLETED),
        ("archived", DocumentStatus.ARCHIVED),
        ("expired", None),
        ("declined", None),
    ],
)
async def test_document_status_is_an_open_enum(
    client: DokobitClient, mocked: Any, wire: str, expected: DocumentStatus | None
) -> None:
    """A known document status is its enum member; an unknown one is kept as ``str``."""
    mocked.get(with_token("/api/signing-external/SIG1/status.json"), payload={"status": wire})

    status = await client.external.status("SIG1")

    if expected is None:
        assert type(status.status) is str
        assert status.status == wire
    else:
        assert status.status is expected


async def test_token_is_one_escaped_path_segment(client: DokobitClient, mocked: Any) -> None:
    """A signing token is percent-escaped into a single path segment."""
    mocked.get(
        f"{BASE}/api/signing-external/a%2Fb%20c/status.json?access_token={TOKEN}",
        payload={"status": "pending"},
    )

    await client.external.status("a/b c")

    _, url, _ = only_request(mocked)
    assert url.raw_path == "/api/signing-external/a%2Fb%20c/status.json"


# ------------------------------------------------------------------ downloads

FILE_URL = f"{BASE}/api/signing/SIG1/files/9"

Fetch = Callable[[DokobitClient, Any], Awaitable[bytes | Path | None]]
Opener = Callable[[DokobitClient], AbstractAsyncContextManager[Download]]

DOWNLOADS: dict[str, tuple[Fetch, str]] = {
    "external.download": (
        lambda c, dest: c.external.download("SIG1", dest),
        "/api/signing-external/SIG1/download",
    ),
    "internal.download": (
        lambda c, dest: c.internal.download("SIG1", dest),
        "/api/signing-internal/SIG1/download",
    ),
    "validation.report": (
        lambda c, dest: c.validation.report("V1", "report-pdf", dest),
        "/api/validation/V1/download/report-pdf",
    ),
    "download_file": (
        lambda c, dest: c.download_file(FILE_URL, dest),
        "/api/signing/SIG1/files/9",
    ),
}

OPENERS: dict[str, tuple[Opener, str]] = {
    "external.open_download": (
        lambda c: c.external.open_download("SIG1"),
        "/api/signing-external/SIG1/download",
    ),
    "internal.open_download": (
        lambda c: c.internal.open_download("SIG1"),
        "/api/signing-internal/SIG1/download",
    ),
    "validation.open_report": (
        lambda c: c.validation.open_report("V1", ReportKind.REPORT_XML),
        "/api/validation/V1/download/report-xml",
    ),
    "open_file": (lambda c: c.open_file(FILE_URL), "/api/signing/SIG1/files/9"),
}


def make_dest(kind: str, tmp_path: Any) -> Any:
    return {"bytes": None, "path": tmp_path / "signed.pdf", "file": io.BytesIO()}[kind]


def assert_written(kind: str, dest: Any, result: Any, data: bytes) -> None:
    """The bytes arrived at ``dest``; a path is complete and no ``*.part`` remains."""
    if kind == "bytes":
        assert result == data
    elif kind == "file":
        assert result is None
        assert dest.getvalue() == data
    else:
        assert result == dest
        assert dest.read_bytes() == data
        assert [p.name for p in dest.parent.iterdir()] == ["signed.pdf"]


@pytest.mark.parametrize("dest_kind", ["bytes", "path", "file"])
@pytest.mark.parametrize("name", sorted(DOWNLOADS))
async def test_download_gets_raw_bytes_into_dest(
    client: DokobitClient, mocked: Any, tmp_path: Any, name: str, dest_kind: str
) -> None:
    """Downloads GET the path without ``.json`` and no body; ``dest=None`` returns the
    bytes, a path is written atomically, a file object receives the bytes."""
    fetch, path = DOWNLOADS[name]
    mocked.get(with_token(path), body=SIGNED_FILE, content_type="application/pdf")
    dest = make_dest(dest_kind, tmp_path)

    result = await fetch(client, dest)

    method, url, call = only_request(mocked)
    assert (method, url.raw_path) == ("GET", path)
    assert list(url.query.items()) == [("access_token", TOKEN)]
    assert call.kwargs["data"] is None
    assert_written(dest_kind, dest, result, SIGNED_FILE)


async def test_download_to_path_replaces_an_existing_file(
    client: DokobitClient, mocked: Any, tmp_path: Any
) -> None:
    """Downloading over an existing file replaces its content whole."""
    mocked.get(with_token("/api/signing-external/SIG1/download"), body=b"%PDF-new")
    dest = tmp_path / "signed.pdf"
    dest.write_bytes(b"old content that is longer than the new one")

    assert await client.external.download("SIG1", str(dest)) == dest

    assert dest.read_bytes() == b"%PDF-new"
    assert [p.name for p in tmp_path.iterdir()] == ["signed.pdf"]


@pytest.mark.parametrize("name", sorted(OPENERS))
async def test_open_download_streams_chunks_and_headers(
    client: DokobitClient, mocked: Any, name: str
) -> None:
    """``open_*`` yields the body as chunks and exposes content type and file name."""
    opener, path = OPENERS[name]
    mocked.get(
        with_token(path),
        body=SIGNED_FILE,
        content_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="signed.pdf"'},
    )

    async with opener(client) as download:
        chunks = [chunk async for chunk in download]

    assert b"".join(chunks) == SIGNED_FILE
    assert download.content_type == "application/pdf"
    assert download.filename == "signed.pdf"
    assert TOKEN not in repr(download)
    method, url, _ = only_request(mocked)
    assert (method, url.raw_path) == ("GET", path)


@pytest.mark.parametrize("kind", list(ReportKind))
async def test_each_report_kind_has_its_path(
    client: DokobitClient, mocked: Any, kind: ReportKind
) -> None:
    """The four report kinds map to ``/api/validation/{token}/download/{kind}``."""
    path = f"/api/validation/V1/download/{kind.value}"
    mocked.get(with_token(path), body=b"<report/>", content_type="application/xml")

    assert await client.validation.report("V1", kind.value) == b"<report/>"

    _, url, _ = only_request(mocked)
    assert url.raw_path == path


ENVELOPES = [
    pytest.param(
        {"status": "error", "message": "Document not found.", "code": 404},
        NotFoundError,
        id="code-404",
    ),
    pytest.param(
        {"status": "error", "message": "Access forbidden.", "error_code": 403},
        AuthenticationError,
        id="error_code-403",
    ),
    pytest.param(
        {
            "status": "error",
            "message": "Data validation failed",
            "code": 10000,
            "errors": [{"message": "Signing with such token not found.", "field": "[token]"}],
        },
        NotFoundError,
        id="token-field",
    ),
    pytest.param(
        {"status": "error", "message": "Problems", "error_code": 500}, ServerError, id="500"
    ),
    pytest.param({"status": "error", "message": "Nope"}, ValidationError, id="no-code"),
]


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
@pytest.mark.parametrize("dest_kind", ["bytes", "path", "file"])
@pytest.mark.parametrize(("envelope", "error"), ENVELOPES)
async def test_error_envelope_in_place_of_file_raises_and_writes_nothing(
    client: DokobitClient,
    mocked: Any,
    tmp_path: Any,
    envelope: dict[str, Any],
    error: type[APIError],
    dest_kind: str,
    content_type: str,
) -> None:
    """An HTTP 200 whose body is a JSON error envelope (whatever its content type)
    raises the matching error; no file appears at ``dest`` and nothing is written."""
    mocked.get(
        with_token("/api/signing-external/SIG1/download"),
        payload=envelope,
        content_type=content_type,
    )
    dest = make_dest(dest_kind, tmp_path)

    with pytest.raises(error) as caught:
        await client.external.download("SIG1", dest)

    assert type(caught.value) is error
    assert caught.value.status == 200
    assert caught.value.message == envelope["message"]
    assert list(tmp_path.iterdir()) == []
    if dest_kind == "file":
        assert dest.getvalue() == b""


async def test_file_starting_with_brace_that_is_not_json_is_delivered(
    client: DokobitClient, mocked: Any
) -> None:
    """A downloaded file that merely starts with ``{`` is not mistaken for an error."""
    body = b"{\\rtf1 not json at all" + bytes(range(256))
    mocked.get(
        with_token("/api/signing-external/SIG1/download"),
        body=body,
        content_type="application/rtf",
    )

    assert await client.external.download("SIG1") == body


# ------------------------------------------------------------------ download_file URLs


@pytest.mark.parametrize(
    ("given", "path", "query"),
    [
        pytest.param(FILE_URL, "/api/signing/SIG1/files/9", [], id="plain"),
        pytest.param(
            f"{FILE_URL}?version=2", "/api/signing/SIG1/files/9", [("version", "2")], id="query"
        ),
        pytest.param(
            f"{FILE_URL}?access_token=OLD-TOKEN&version=2",
            "/api/signing/SIG1/files/9",
            [("version", "2")],
            id="old-token",
        ),
        pytest.param(
            f"{FILE_URL}?ACCESS_TOKEN=OLD-TOKEN",
            "/api/signing/SIG1/files/9",
            [],
            id="old-token-uppercase",
        ),
        pytest.param("/api/signing/SIG1/files/9", "/api/signing/SIG1/files/9", [], id="relative"),
        pytest.param(
            "https://BETA.dokobit.com:443/api/x", "/api/x", [], id="same-host-explicit-port"
        ),
    ],
)
async def test_download_file_appends_token_exactly_once(
    client: DokobitClient, mocked: Any, given: str, path: str, query: list[tuple[str, str]]
) -> None:
    """The token is added to a file URL on the API host; any ``access_token`` already in
    it is replaced, not duplicated; other parameters are kept."""
    mocked.get(
        with_token(path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")),
        body=b"%PDF-x",
    )

    assert await client.download_file(given) == b"%PDF-x"

    method, url, _ = only_request(mocked)
    assert method == "GET"
    assert url.raw_path == path
    assert url.query.getall("access_token") == [TOKEN]
    assert "ACCESS_TOKEN" not in url.query
    assert sorted((k, v) for k, v in url.query.items() if k != "access_token") == query
    assert "OLD-TOKEN" not in str(url)


FOREIGN = [
    pytest.param("https://evil.example.com/api/f", id="other-host"),
    pytest.param("https://beta.dokobit.com.evil.example/api/f", id="suffix-host"),
    pytest.param("http://beta.dokobit.com/api/f", id="other-scheme"),
    pytest.param("https://beta.dokobit.com:8443/api/f", id="other-port"),
    pytest.param("https://user:pw@beta.dokobit.com/api/f", id="userinfo"),
    pytest.param("https://beta.dokobit.com@evil.example.com/api/f", id="host-after-at"),
    pytest.param("//evil.example.com/api/f", id="scheme-relative"),
    pytest.param(f"https://evil.example.com/f?access_token={TOKEN}", id="token-in-url"),
]


@pytest.mark.parametrize("url", FOREIGN)
async def test_download_file_refuses_foreign_urls_and_sends_nothing(
    client: DokobitClient, mocked: Any, url: str
) -> None:
    """A file URL on any other scheme, host, port or with credentials raises
    ``ForeignURLError`` and no request is made; the token is not in the message."""
    with pytest.raises(ForeignURLError) as caught:
        await client.download_file(url)
    with pytest.raises(ForeignURLError):
        client.open_file(url)

    assert mocked.requests == {}
    assert isinstance(caught.value, ValueError)
    assert TOKEN not in str(caught.value)


async def test_download_file_under_base_url_with_path_prefix(mocked: Any) -> None:
    """With a ``base_url`` that has a path (a proxy prefix), a file URL under it is
    fetched as given, not with the prefix doubled; a URL outside the prefix is refused."""
    base = "https://gw.example.com/dokobit"
    mocked.get(re.compile(r"^https://gw\.example\.com/.*"), body=b"%PDF-x")
    async with DokobitClient(TOKEN, base_url=base, rate_limit=None) as dokobit:
        await dokobit.download_file(f"{base}/api/signing/SIG1/files/9")
        with pytest.raises(ForeignURLError):  # same host, outside the prefix
            await dokobit.download_file("https://gw.example.com/other/api/f")

    _, url, _ = only_request(mocked)
    assert url.raw_path == "/dokobit/api/signing/SIG1/files/9"
