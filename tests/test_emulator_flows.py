"""Emulator: signing flows over real loopback HTTP, in every body encoding."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import pytest

from dokobit_async.testing import Emulator, EmulatorConfig, make_pdf

PDF = make_pdf(["Contract"])


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """PHP http_build_query-style bracket pairs (booleans as 1/0)."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        if isinstance(value, bool):
            value = int(value)
        return [(prefix, str(value))]
    pairs: list[tuple[str, str]] = []
    for key, item in items:
        pairs += flatten(item, f"{prefix}[{key}]" if prefix else str(key))
    return pairs


def pdf_file(data: bytes = PDF, name: str = "contract.pdf") -> dict[str, str]:
    return {
        "name": name,
        "content": base64.b64encode(data).decode(),
        "digest": hashlib.sha256(data).hexdigest(),
    }


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(config=EmulatorConfig(time_scale=0.0001)) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    emu: Emulator,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    encoding: str = "form",
) -> tuple[int, Any]:
    """Send a request in the given encoding; returns (status, parsed JSON)."""
    url = f"{emu.base_url}/api/{path}"
    kwargs: dict[str, Any] = {"params": {"access_token": emu.access_token}}
    if body is not None and encoding == "json":
        kwargs["json"] = body
    elif body is not None and encoding == "form":
        kwargs["data"] = flatten(body)
    elif body is not None:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in flatten(body):
            form.add_field(name, value)
        kwargs["data"] = form
    async with http.request(method, url, **kwargs) as response:
        return response.status, json.loads(await response.read())


def external_body(**extra: Any) -> dict[str, Any]:
    return {
        "type": "pdf",
        "name": "Agreement",
        "files": [pdf_file()],
        "signers": [
            {"external_id": "a", "name": "Ann", "surname": "Lee", "email": "ann@example.test"},
            {
                "external_id": "b",
                "name": "Bo",
                "surname": "Ek",
                "phone": "+37060000000",
                "code": "39001010000",
                "country_code": "lt",
            },
            {"external_id": "v", "name": "Vi", "email": "vi@example.test", "role": "viewer"},
        ],
        "allowed_signing_methods": ["smartid", "mobile"],
        "hard_deadline": False,
        **extra,
    }


@pytest.mark.parametrize("encoding", ["form", "json", "multipart"])
async def test_external_signing_completes_when_all_signers_sign(
    emu: Emulator, http: aiohttp.ClientSession, encoding: str
) -> None:
    """Create → status → sign both signers (viewer does not block) → completed."""
    status, created = await call(
        http, emu, "POST", "signing-external/create.json", external_body(), encoding
    )
    assert status == 200, created
    assert created["status"] == "ok"
    token = created["token"]
    signers = created["signers"]
    assert [s["external_id"] for s in signers] == ["a", "b", "v"]
    assert signers[0]["first_name"] == "Ann"
    assert signers[1]["country"] == "lt"
    assert {m.signer_token for m in emu.outbox} == {s["token"] for s in signers}

    status, doc = await call(http, emu, "GET", f"signing-external/{token}/status.json")
    assert status == 200
    assert doc["status"] == "pending"
    assert doc["type"] == "pdf"
    assert [s["status"] for s in doc["signers"]] == ["pending"] * 3

    await emu.sign(token, signers[0]["token"])
    assert emu.signings[token].status == "pending"
    await emu.sign(token, signers[1]["token"])
    status, doc = await call(http, emu, "GET", f"signing-external/{token}/status.json")
    assert doc["status"] == "completed"
    assert [s["status"] for s in doc["signers"]] == ["signed", "signed", "pending"]


async def test_signed_pdf_bytes_change_and_files_url_downloads(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """The download is a PDF whose bytes change after signing; files[].url works."""
    _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
    token = created["token"]
    params = {"access_token": emu.access_token}
    url = f"{emu.base_url}/api/signing-external/{token}/download"
    async with http.get(url, params=params) as response:
        before = await response.read()
    assert before == PDF
    await emu.sign(token, created["signers"][0]["token"])
    async with http.get(url, params=params) as response:
        after = await response.read()
        assert response.content_type == "application/pdf"
    assert after.startswith(PDF)
    assert after != PDF
    assert after.rstrip().endswith(b"%%EOF")
    _, doc = await call(http, emu, "GET", f"signing-external/{token}/status.json")
    async with http.get(doc["files"][0]["url"], params=params) as response:
        assert await response.read() == after
    assert doc["files"][0]["mime_type"] == "application/pdf"


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_internal_signing_returns_signing_page_urls(
    emu: Emulator, http: aiohttp.ClientSession, encoding: str
) -> None:
    """Internal create answers each signer's signing-page URL and completes on signing."""
    body = {
        "type": "asice",
        "name": "Internal",
        "redirect_uri": "https://app.example.test/back",
        "files": [pdf_file(), pdf_file(b"plain text", "notes.txt")],
        "signers": [
            {"external_id": "x", "code": "39001010000", "country_code": "PL"},
            {"external_id": "y", "role": "viewer"},
        ],
    }
    status, created = await call(http, emu, "POST", "signing-internal/create.json", body, encoding)
    assert status == 200, created
    signer = created["signers"][0]
    assert signer["redirect_uri"].startswith(f"{emu.base_url}/sign/{created['token']}/")
    assert emu.outbox == []
    await emu.sign(created["token"], signer["token"])
    _, doc = await call(http, emu, "GET", f"signing-internal/{created['token']}/status.json")
    assert doc["status"] == "completed"
    url = f"{emu.base_url}/api/signing-internal/{created['token']}/download"
    async with http.get(url, params={"access_token": emu.access_token}) as response:
        data = await response.read()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist()[0] == "mimetype"
    assert archive.read("mimetype") == b"application/vnd.etsi.asic-e+zip"
    assert archive.infolist()[0].compress_type == zipfile.ZIP_STORED
    assert {"contract.pdf", "notes.txt", "META-INF/signatures0.xml"} <= set(archive.namelist())


async def test_flows_do_not_share_tokens_by_default(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """An external token is unknown under signing-internal (400, field [token])."""
    _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
    status, body = await call(http, emu, "GET", f"signing-internal/{created['token']}/status.json")
    assert status == 400
    assert body["errors"] == [
        {"message": "Signing with such token not found.", "error_code": 1, "field": "[token]"}
    ]


async def test_add_remove_remind_update_delete(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Participants can be added, reminded and removed; update and delete work."""
    _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
    token = created["token"]
    first = created["signers"][0]["token"]
    status, added = await call(
        http,
        emu,
        "POST",
        f"signing-external/{token}/signers/add.json",
        {
            "signers": [{"external_id": "c", "name": "Cy", "email": "c@x.test"}],
            "comment": "Please sign",
        },
    )
    assert status == 200, added
    new = added["signers"][0]
    assert (new["name"], new["role"], new["external_id"]) == ("Cy", "signer", "c")
    assert emu.outbox[-1].message == "Please sign"
    status, body = await call(
        http,
        emu,
        "POST",
        f"signing-external/{token}/remind.json",
        {"signer": new["token"], "message": "Reminder"},
    )
    assert (status, body) == (200, {"status": "ok"})
    assert emu.outbox[-1].kind == "reminder"
    await emu.sign(token, first)
    status, body = await call(
        http, emu, "POST", f"signing-external/{token}/remind.json", {"signer": first}
    )
    assert status == 400
    assert body["errors"][0]["field"] == "[signer]"
    status, body = await call(
        http,
        emu,
        "POST",
        f"signing-external/{token}/signers/delete.json",
        {"signers": [{"token": first}]},
    )
    assert status == 400
    assert body["errors"][0]["field"] == "[signers][0][token]"
    status, body = await call(
        http,
        emu,
        "POST",
        f"signing-external/{token}/signers/delete.json",
        {"signers": [{"token": new["token"]}]},
    )
    assert (status, body) == (200, {"status": "ok"})
    status, body = await call(
        http,
        emu,
        "POST",
        f"signing-external/{token}/update.json",
        {
            "deadline": "2030-01-02T03:04:05Z",
            "hard_deadline": True,
            "allowed_signing_methods": ["smartid"],
        },
    )
    assert (status, body) == (200, {"status": "ok"})
    _, doc = await call(http, emu, "GET", f"signing-external/{token}/status.json")
    assert doc["deadline"] == "2030-01-02T03:04:05+00:00"
    status, body = await call(http, emu, "POST", f"signing-external/{token}/delete.json")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await call(http, emu, "GET", f"signing-external/{token}/status.json")
    assert status == 400
    assert body["errors"][0]["field"] == "[token]"


async def test_hard_deadline_blocks_signing(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """After a passed hard deadline, signing is refused with a 400 envelope."""
    from dokobit_async.testing import StateError

    _, created = await call(
        http,
        emu,
        "POST",
        "signing-external/create.json",
        external_body(deadline="2001-01-01T00:00:00Z", hard_deadline="true"),
    )
    with pytest.raises(StateError) as caught:
        await emu.sign(created["token"], created["signers"][0]["token"])
    assert caught.value.errors[0].field == "[deadline]"


async def test_seal_changes_pdf(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """signing/{token}/seal.json applies a seal: the PDF bytes change."""
    _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
    token = created["token"]
    status, body = await call(
        http,
        emu,
        "POST",
        f"signing/{token}/seal.json",
        {"custom_reason": "Approved", "annotation": {"page": 1, "top": 10, "left": 20}},
    )
    assert (status, body) == (200, {"status": "ok"})
    assert emu.signings[token].current[0] != PDF


async def test_e_delivery_and_validation(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """e-delivery creates recipients with outbox links; validation gives reports."""
    status, body = await call(
        http,
        emu,
        "POST",
        "e-delivery/create.json",
        {
            "type": "pdf",
            "name": "Letter",
            "files": [pdf_file()],
            "recipients": [
                {
                    "external_id": "r1",
                    "code": "39001010000",
                    "country_code": "LT",
                    "email": "r@example.test",
                }
            ],
        },
    )
    assert status == 200, body
    recipient = body["recipients"][0]
    assert recipient["country"] == "lt"
    assert emu.outbox[-1].url.endswith(f"/delivery/{body['token']}/{recipient['token']}")
    status, body = await call(
        http,
        emu,
        "POST",
        "validation/upload.json",
        {"file": {"name": "doc.pdf", "content": base64.b64encode(PDF).decode()}},
    )
    assert status == 200, body
    params = {"access_token": emu.access_token}
    for kind, magic in [
        ("report-pdf", b"%PDF-"),
        ("detailed-report-pdf", b"%PDF-"),
        ("report-xml", b"<?xml"),
        ("diagnostic-data-xml", b"<?xml"),
    ]:
        url = f"{emu.base_url}/api/validation/{body['token']}/download/{kind}"
        async with http.get(url, params=params) as response:
            assert response.status == 200
            assert (await response.read()).startswith(magic)


def test_signed_pdf_incremental_update_offsets_are_consistent() -> None:
    """Each appended update's startxref and xref entry point at the right bytes."""
    import re
    from datetime import datetime, timezone

    from dokobit_async.testing._emulator.documents import Mark, sign_pdf

    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    data = PDF
    assert PDF[int(re.findall(rb"startxref\s+(\d+)", PDF)[-1]) :].startswith(b"xref\n0 6\n")
    for who in ("one", "two"):
        previous = data
        data = sign_pdf(data, Mark(kind="signature", who=who, time=when))
        assert data.startswith(previous)
        xref_at = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
        assert data[xref_at:].startswith(b"xref\n")
        number, offset = re.match(rb"xref\n(\d+) 1\n(\d{10}) ", data[xref_at:]).groups()  # type: ignore[union-attr]
        assert data[int(offset) :].startswith(number + b" 0 obj")
        prev = int(re.findall(rb"/Prev (\d+)", data)[-1])
        assert prev == int(re.findall(rb"startxref\s+(\d+)", previous)[-1])
        assert who.encode() in data[len(previous) :]
