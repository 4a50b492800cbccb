"""Emulator: exact error envelopes, and no 500 for any malformed request."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _profiles import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_emulator_flows import PDF, call, external_body, pdf_file

from dokobit_async.testing import Emulator, EmulatorConfig

INTERNAL = {"type": "pdf", "name": "I", "redirect_uri": "https://x.test/r", "files": [pdf_file()]}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(config=EmulatorConfig(max_upload_bytes=200_000)) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def signer(**fields: Any) -> dict[str, Any]:
    return {"signers": [{"external_id": "s", "email": "s@x.test", **fields}]}


CASES = [
    ("missing type", without(external_body(), "type"), "[type]", 1001),
    ("unknown type", external_body(type="docx"), "[type]", 1002),
    ("missing name", without(external_body(), "name"), "[name]", 1001),
    ("missing files", without(external_body(), "files"), "[files]", 1001),
    ("files not a list", external_body(files="x"), "[files]", 1003),
    (
        "bad base64",
        external_body(files=[{"name": "a.pdf", "content": "%%%"}]),
        "[files][0][content]",
        1004,
    ),
    (
        "digest mismatch",
        external_body(files=[{**pdf_file(), "digest": "0" * 64}]),
        "[files][0][digest]",
        1005,
    ),
    ("not a pdf", external_body(files=[pdf_file(b"hello")]), "[files][0][content]", 1006),
    (
        "signer without external_id",
        external_body(signers=[{"email": "a@x.test"}]),
        "[signers][0][external_id]",
        1001,
    ),
    ("unknown role", external_body(**signer(role="boss")), "[signers][0][role]", 1002),
    (
        "unknown country",
        external_body(**signer(code="1", country_code="us")),
        "[signers][0][country_code]",
        1002,
    ),
    (
        "code without country",
        external_body(**signer(code="39001010000")),
        "[signers][0][country_code]",
        1007,
    ),
    (
        "no email nor phone",
        external_body(signers=[{"external_id": "q"}]),
        "[signers][0][email]",
        1007,
    ),
    (
        "unknown language",
        external_body(**signer(notifications_language="xx")),
        "[signers][0][notifications_language]",
        1002,
    ),
    (
        "unknown method",
        external_body(allowed_signing_methods=["smartid", "magic"]),
        "[allowed_signing_methods][1]",
        1002,
    ),
    (
        "unknown annotation position",
        external_body(annotation_position="middle"),
        "[annotation_position]",
        1002,
    ),
    (
        "bad annotation page",
        external_body(**signer(annotation={"page": "zero"})),
        "[signers][0][annotation][page]",
        1002,
    ),
    ("bad boolean", external_body(hard_deadline="maybe"), "[hard_deadline]", 1003),
    ("bad deadline", external_body(deadline="tomorrow"), "[deadline]", 1002),
    ("signers is an object", external_body(signers={"external_id": "x"}), "[signers]", 1003),
    (
        "huge list index",
        {"type": "pdf", "files": {"99999999": {"name": "x"}}},
        "[files][99999999]",
        1002,
    ),
]


# List indexes only exist in bracket names, so the huge-index case is form-only.
ENCODED_CASES = [
    pytest.param(body, field, code, encoding, id=f"{name}-{encoding}")
    for name, body, field, code in CASES
    for encoding in ("form", "json")
    if not (encoding == "json" and field.startswith("[files][9"))
]


@pytest.mark.parametrize(("body", "field", "code", "encoding"), ENCODED_CASES)
async def test_invalid_create_gives_exact_envelope(
    emu: Emulator,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    field: str,
    code: int,
    encoding: str,
) -> None:
    """Each invalid field gives 400, "Data validation failed", and its bracket path."""
    status, answer = await call(http, emu, "POST", "signing-external/create.json", body, encoding)
    assert status == 400
    assert answer["status"] == "error"
    assert answer["message"] == "Data validation failed"
    assert answer["error_code"] == answer["code"] == 10000
    matching = [e for e in answer["errors"] if e["field"] == field]
    assert matching, answer["errors"]
    assert matching[0]["error_code"] == code
    assert isinstance(matching[0]["message"], str)


async def test_internal_create_requires_redirect_uri(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """signing-internal/create.json without redirect_uri names [redirect_uri]."""
    status, answer = await call(
        http, emu, "POST", "signing-internal/create.json", without(INTERNAL, "redirect_uri")
    )
    assert status == 400
    assert [e["field"] for e in answer["errors"]] == ["[redirect_uri]"]


async def test_several_errors_are_all_reported(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """One error per invalid field, in one answer."""
    status, answer = await call(http, emu, "POST", "signing-external/create.json", {"type": "x"})
    assert status == 400
    assert {e["field"] for e in answer["errors"]} == {"[type]", "[name]", "[files]"}


async def test_single_pdf_switch(http: aiohttp.ClientSession) -> None:
    """With single_pdf=True, two PDFs are refused at [files]; by default they are fine."""
    body = external_body(files=[pdf_file(), pdf_file(name="b.pdf")])
    async with Emulator() as lenient:
        assert (await call(http, lenient, "POST", "signing-external/create.json", body))[0] == 200
    async with Emulator(config=EmulatorConfig(single_pdf=True)) as strict:
        status, answer = await call(http, strict, "POST", "signing-external/create.json", body)
    assert status == 400
    assert answer["errors"][0]["field"] == "[files]"


@pytest.mark.parametrize(
    ("token", "header", "expected"),
    [(None, None, 403), ("wrong", None, 403), (None, "HEADER", 200), ("RIGHT", None, 200)],
)
async def test_access_token(
    emu: Emulator,
    http: aiohttp.ClientSession,
    token: str | None,
    header: str | None,
    expected: int,
) -> None:
    """Missing or wrong token: 403 envelope; X-Access-Token header also accepted."""
    fix = {"RIGHT": emu.access_token, "HEADER": emu.access_token}
    params = {"access_token": fix.get(token, token)} if token else {}
    headers = {"X-Access-Token": fix[header]} if header else {}
    url = f"{emu.base_url}/api/signing-external/create.json"
    async with http.post(url, params=params, headers=headers, json=external_body()) as response:
        body = await response.json()
    assert response.status == expected
    if expected == 403:
        assert body == {
            "status": "error",
            "message": "Access forbidden. Invalid API key.",
            "error_code": 403,
            "code": 403,
            "errors": [],
        }
    assert all("access_token" not in r.path for r in emu.requests)


async def test_unknown_token_can_be_404(http: aiohttp.ClientSession) -> None:
    """unknown_token_status=404 answers 404 with the same [token] error."""
    async with Emulator(config=EmulatorConfig(unknown_token_status=404)) as emu:
        status, body = await call(http, emu, "GET", "signing-external/nope/status.json")
        assert status == 404
        assert body["errors"][0]["field"] == "[token]"
        url = f"{emu.base_url}/api/signing-external/nope/download"
        async with http.get(url, params={"access_token": emu.access_token}) as response:
            assert response.status == 404
            assert (await response.json())["status"] == "error"


async def test_unknown_route_and_wrong_method(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Unknown route: 404 envelope; wrong method: 405 envelope."""
    status, body = await call(http, emu, "GET", "nothing/here.json")
    assert (status, body["status"], body["code"]) == (404, "error", 404)
    status, body = await call(http, emu, "GET", "signing-external/create.json")
    assert (status, body["status"], body["code"]) == (405, "error", 405)


async def test_body_too_large_is_413(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """A body past max_upload_bytes gets the 413 envelope."""
    big = base64.b64encode(PDF + b"0" * 300_000).decode()
    status, body = await call(
        http,
        emu,
        "POST",
        "signing-external/create.json",
        external_body(files=[{"name": "a.pdf", "content": big}]),
        "json",
    )
    assert status == 413
    assert body["status"] == "error"


MALFORMED = [
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2]"),
    ("application/json", b'{"files": "x", "signers": 5, "type": ["pdf"]}'),
    ("application/json", b'{"files": [{"name": {"a": 1}, "content": 7}]}'),
    ("application/x-www-form-urlencoded", b"files[0]=x&files[0][name]=y"),
    ("application/x-www-form-urlencoded", b"a[b][c][d][e][f][g][h][i][j]=1"),
    ("application/x-www-form-urlencoded", b"\xff\xfe=%ff"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
    ("multipart/form-data", b"no boundary"),
    ("text/plain", b"\x00\x01\x02"),
]


@pytest.mark.parametrize(("ctype", "data"), MALFORMED)
async def test_malformed_bodies_are_400(
    emu: Emulator, http: aiohttp.ClientSession, ctype: str, data: bytes
) -> None:
    """Malformed bodies get a 400 envelope, never a 500."""
    url = f"{emu.base_url}/api/signing-external/create.json"
    async with http.post(
        url, params={"access_token": emu.access_token}, data=data, headers={"Content-Type": ctype}
    ) as response:
        body = json.loads(await response.read())
    assert response.status == 400
    assert body["status"] == "error"


PATHS = [
    "signing-external/create.json",
    "signing-internal/create.json",
    "e-delivery/create.json",
    "validation/upload.json",
    "signing-external/{token}/signers/add.json",
    "signing-external/{token}/signers/delete.json",
    "signing-external/{token}/remind.json",
    "signing-external/{token}/update.json",
    "signing/{token}/seal.json",
]
_text = st.text(max_size=12)
_names = st.from_regex(r"[a-z_]{1,8}(\[[a-z0-9_]{0,9}\]){0,4}", fullmatch=True)
_keys = st.sampled_from(
    [
        "type",
        "files",
        "name",
        "content",
        "signers",
        "file",
        "recipients",
        "external_id",
        "digest",
        "token",
        "signer",
        "annotation",
        "page",
        "deadline",
        "0",
    ]
)
_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(PATHS),
    kind=st.sampled_from(["bytes", "form", "multipart", "json"]),
    raw=st.binary(max_size=200),
    pairs=st.lists(st.tuples(_names, _text), max_size=8),
    tree=_trees,
)
async def test_random_requests_never_500(
    emu: Emulator,
    http: aiohttp.ClientSession,
    path: str,
    kind: str,
    raw: bytes,
    pairs: list[tuple[str, str]],
    tree: Any,
) -> None:
    """Random bytes, bracket forms and JSON trees never make the emulator answer 500."""
    if not emu.signings:
        status, _ = await call(http, emu, "POST", "signing-external/create.json", external_body())
        assert status == 200
    token = next(iter(emu.signings))
    url = f"{emu.base_url}/api/{path.format(token=token)}"
    params = {"access_token": emu.access_token}
    if kind == "bytes":
        kwargs: dict[str, Any] = {"data": raw, "headers": {"Content-Type": "application/json"}}
    elif kind == "form":
        kwargs = {"data": pairs}
    elif kind == "multipart":
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in pairs:
            form.add_field(name, value)
        kwargs = {"data": form}
    else:
        kwargs = {"json": tree}
    async with http.post(url, params=params, **kwargs) as response:
        await response.read()
    assert response.status in (200, 400)


async def test_usable_as_an_aiohttp_application() -> None:
    """make_app() serves the same state under aiohttp's TestServer."""
    from aiohttp.test_utils import TestClient, TestServer

    emu = Emulator(access_token="secret-token")
    async with TestClient(TestServer(emu.make_app())) as client:
        response = await client.post(
            "/api/signing-external/create.json",
            params={"access_token": "secret-token"},
            json=external_body(),
        )
        created = await response.json()
        assert response.status == 200
        assert created["token"] in emu.signings
        assert emu.requests[-1].operation == "signing-external/create"
        assert created["signers"][0]["token"] in emu.outbox[0].url
    await emu.close()
