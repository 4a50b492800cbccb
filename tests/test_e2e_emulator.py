"""End to end: every client action against the emulator over real loopback sockets.

Each test runs in both body encodings (``form`` and ``json``). The client and the
emulator were written independently from the wire notes, so a passing test here means
two readings of ``docs/wire-notes.md`` agree on the wire.
"""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_emulator_postbacks import Receiver

from dokobit_async import (
    Annotation,
    AuthenticationError,
    DokobitClient,
    DokobitError,
    ExternalSigner,
    InternalSigner,
    NotFoundError,
    RateLimit,
    Recipient,
    ReportKind,
    Role,
    SigningFile,
    ValidationError,
)
from dokobit_async.testing import Emulator, EmulatorConfig, make_pdf

ENCODINGS = ["form", "json"]
PDF = make_pdf(["E2E contract"])
REDIRECT = "https://app.example.com/signed"
UNKNOWN = "0" * 40

# (type, files): a single PDF, and a container holding a PDF and a text file.
DOCUMENTS = {
    "pdf": lambda: [SigningFile.from_bytes(PDF, name="contract.pdf")],
    "asice": lambda: [
        SigningFile.from_bytes(PDF, name="contract.pdf"),
        SigningFile.from_bytes(b"appendix text\n", name="appendix.txt"),
    ],
}


def external_people(*ids: str, viewer: str | None = None) -> list[ExternalSigner]:
    """External signers ``ids`` (role signer) and optionally one viewer."""
    people = [
        ExternalSigner(external_id=i, name=i.title(), surname="Tester", email=f"{i}@example.com")
        for i in ids
    ]
    if viewer is not None:
        people.append(
            ExternalSigner(external_id=viewer, email=f"{viewer}@example.com", role=Role.VIEWER)
        )
    return people


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> str:
    """The client's body encoding."""
    return str(request.param)


def make_client(emu: Emulator, encoding: str, token: str | None = None) -> DokobitClient:
    """A client for ``emu`` (with ``token`` in place of the emulator's, if given)."""
    return DokobitClient(
        token or emu.access_token,
        base_url=emu.base_url,
        body_encoding=encoding,
        rate_limit=RateLimit(calls=10_000, period=1.0),
    )


@pytest.fixture
async def client(dokobit_emulator: Emulator, encoding: str) -> AsyncIterator[DokobitClient]:
    """A client for the plugin's emulator, in the parametrised encoding."""
    async with make_client(dokobit_emulator, encoding) as c:
        yield c


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as a person's browser."""
    async with aiohttp.ClientSession() as session:
        yield session


def assert_secret_free(exc: BaseException, secret: str) -> None:
    """Neither the message nor the repr of an error carries the access token."""
    assert secret not in str(exc)
    assert secret not in repr(exc)
    assert secret not in str(getattr(exc, "url", ""))


async def create_external(
    client: DokobitClient, doc: str = "pdf", *, viewer: bool = True, **options: Any
) -> Any:
    """An external signing with signers ``ann`` and ``bob`` (and viewer ``vic``)."""
    return await client.external.create(
        name=f"E2E {doc}",
        type=doc,
        files=DOCUMENTS[doc](),
        signers=external_people("ann", "bob", viewer="vic" if viewer else None),
        **options,
    )


# ------------------------------------------------------------------ external flow


@pytest.mark.parametrize("doc", sorted(DOCUMENTS))
async def test_external_signing_completes_when_every_signer_signed_viewer_never_blocks(
    client: DokobitClient, dokobit_emulator: Emulator, doc: str, tmp_path: Path
) -> None:
    """create -> status pending -> both signers sign -> completed, the viewer still
    pending; the download changes with each signature and works as bytes, to a path,
    streamed, and through the status ``files[0].url``."""
    emu = dokobit_emulator
    created = await create_external(client, doc, comment="Please sign")
    assert [s.external_id for s in created.signers] == ["ann", "bob", "vic"]
    assert created.signer("ann").first_name == "Ann"
    assert created.signer("ann").email == "ann@example.com"
    assert emu.signings[created.token].name == f"E2E {doc}"
    assert {m.signer_token for m in emu.outbox if m.kind == "invitation"} == {
        s.token for s in created.signers
    }

    status = await client.external.status(created.token)
    assert status.status == "pending"
    assert status.type == doc
    assert [f.name for f in status.files] == [f.name for f in DOCUMENTS[doc]()]
    assert {s.token: s.status for s in status.signers} == dict.fromkeys(
        (s.token for s in created.signers), "pending"
    )
    unsigned = await client.external.download(created.token)

    await emu.sign(created.token, created.signer("ann").token)
    assert (await client.external.status(created.token)).status == "pending"
    half = await client.external.download(created.token)
    assert half != unsigned

    await emu.sign(created.token, created.signer("bob").token)
    status = await client.external.status(created.token)
    assert status.status == "completed"
    by_id = {s.external_id: s.status for s in status.signers}
    assert by_id == {"ann": "signed", "bob": "signed", "vic": "pending"}

    signed = await client.external.download(created.token)
    assert signed not in (unsigned, half)
    assert signed == emu.signings[created.token].document()[0]
    if doc == "pdf":
        assert signed.startswith(b"%PDF-")
    else:
        with zipfile.ZipFile(io.BytesIO(signed)) as archive:
            assert archive.namelist()[0] == "mimetype"
            assert sum(n.startswith("META-INF/signatures") for n in archive.namelist()) == 2

    target = await client.external.download(created.token, tmp_path / "signed.bin")
    assert target.read_bytes() == signed
    async with client.external.open_download(created.token) as dl:
        assert dl.filename
        assert b"".join([chunk async for chunk in dl]) == signed
    first = status.files[0]
    assert first.url is not None
    assert await client.download_file(first.url) == emu.signings[created.token].file(0)[0]
    async with client.open_file(first.url) as dl:
        assert await dl.read() == emu.signings[created.token].file(0)[0]


async def test_external_add_signers_then_remove_is_refused_once_that_person_signed(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """add_signers returns new participant tokens; remove_signers drops a pending one,
    and is refused (ValidationError at ``[signers][0][token]``) for one who signed."""
    created = await create_external(client, viewer=False)
    added = await client.external.add_signers(
        created.token, external_people("cyd", "dan"), comment="Joining late"
    )
    assert [(a.external_id, a.name, a.email) for a in added.signers] == [
        ("cyd", "Cyd", "cyd@example.com"),
        ("dan", "Dan", "dan@example.com"),
    ]
    cyd, dan = (a.token for a in added.signers)
    invited = [m for m in dokobit_emulator.outbox if m.signer_token == cyd]
    assert [(m.kind, m.message) for m in invited] == [("invitation", "Joining late")]

    await client.external.remove_signers(created.token, [dan])
    status = await client.external.status(created.token)
    assert {s.external_id for s in status.signers} == {"ann", "bob", "cyd"}

    await dokobit_emulator.sign(created.token, cyd)
    with pytest.raises(ValidationError) as info:
        await client.external.remove_signers(created.token, [cyd])
    assert [e.field for e in info.value.errors] == ["[signers][0][token]"]
    assert "already signed" in info.value.errors[0].message
    assert_secret_free(info.value, dokobit_emulator.access_token)
    status = await client.external.status(created.token)
    assert {s.external_id for s in status.signers} == {"ann", "bob", "cyd"}


async def test_external_update_sends_an_aware_deadline_as_the_same_instant(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """update(deadline=<aware, +03:00>) reaches the server as the same UTC instant, and
    the other options are applied as typed values (booleans, method list)."""
    created = await create_external(client)
    local = timezone(timedelta(hours=3))
    deadline = datetime(2031, 5, 17, 12, 30, 15, tzinfo=local)
    await client.external.update(
        created.token,
        deadline=deadline,
        hard_deadline=True,
        allow_document_saving=False,
        allowed_signing_methods=["smartid", "mobile"],
    )
    status = await client.external.status(created.token)
    assert status.deadline == deadline
    assert status.deadline is not None
    assert status.deadline.tzinfo is not None
    options = dokobit_emulator.signings[created.token].options
    assert options["hard_deadline"] is True
    assert options["allow_document_saving"] is False
    assert options["allowed_signing_methods"] == ["smartid", "mobile"]


async def test_external_remind_reaches_a_pending_signer_and_is_refused_after_signing(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """remind puts a reminder with the message in the outbox; once the person signed,
    the server refuses it (ValidationError at ``[signer]``)."""
    created = await create_external(client)
    ann = created.signer("ann").token
    await client.external.remind(created.token, ann, message="Friendly nudge")
    reminders = [m for m in dokobit_emulator.outbox if m.kind == "reminder"]
    assert [(m.signer_token, m.message, m.email) for m in reminders] == [
        (ann, "Friendly nudge", "ann@example.com")
    ]
    await dokobit_emulator.sign(created.token, ann)
    with pytest.raises(ValidationError) as info:
        await client.external.remind(created.token, ann)
    assert [e.field for e in info.value.errors] == ["[signer]"]
    assert_secret_free(info.value, dokobit_emulator.access_token)


@pytest.mark.parametrize("flow", ["external", "internal"])
async def test_delete_makes_the_signing_unknown_to_status_and_download(
    client: DokobitClient, dokobit_emulator: Emulator, flow: str
) -> None:
    """After delete, status and download of that token raise NotFoundError."""
    if flow == "external":
        created = await create_external(client)
    else:
        created = await create_internal(client)
    namespace = getattr(client, flow)
    await namespace.delete(created.token)
    assert created.token not in dokobit_emulator.signings
    for action in (namespace.status, namespace.download):
        with pytest.raises(NotFoundError) as info:
            await action(created.token)
        assert_secret_free(info.value, dokobit_emulator.access_token)


# ------------------------------------------------------------------ internal flow


async def create_internal(client: DokobitClient, **options: Any) -> Any:
    """An internal signing with signers ``ann`` and ``bob`` and viewer ``vic``."""
    return await client.internal.create(
        name="E2E internal",
        type="pdf",
        files=DOCUMENTS["pdf"](),
        redirect_uri=REDIRECT,
        signers=[
            InternalSigner(external_id="ann", code="39001010000", country_code="LT"),
            InternalSigner(external_id="bob", language="en"),
            InternalSigner(external_id="vic", role="viewer"),
        ],
        **options,
    )


async def sign_on_page(browser: aiohttp.ClientSession, url: str) -> str:
    """GET the signing page, POST its Sign button; returns the 303 ``Location``."""
    async with browser.get(url) as page:
        assert page.status == 200
        html = await page.text()
    assert "value='sign'" in html
    async with browser.post(url, data={"action": "sign"}, allow_redirects=False) as answer:
        assert answer.status == 303
        return answer.headers["Location"]


async def test_internal_signing_pages_redirect_to_redirect_uri_and_complete_the_signing(
    client: DokobitClient, dokobit_emulator: Emulator, browser: aiohttp.ClientSession
) -> None:
    """Each created signer's ``signing_url`` serves the signing page; its Sign form
    answers 303 to the signing's ``redirect_uri``; after both signers, status is
    completed and the download changed."""
    created = await create_internal(client)
    urls = {s.external_id: s.signing_url for s in created.signers}
    assert all(u and u.startswith(dokobit_emulator.base_url) for u in urls.values())
    assert urls["ann"] == dokobit_emulator.signing_page_url(
        created.token, created.signer("ann").token
    )
    assert not dokobit_emulator.outbox  # internal signings send no e-mail
    before = await client.internal.download(created.token)

    for who in ("ann", "bob"):
        assert (await client.internal.status(created.token)).status == "pending"
        url = urls[who]
        assert url is not None
        assert await sign_on_page(browser, url) == REDIRECT

    status = await client.internal.status(created.token)
    assert status.status == "completed"
    assert {s.external_id: s.status for s in status.signers} == {
        "ann": "signed",
        "bob": "signed",
        "vic": "pending",
    }
    after = await client.internal.download(created.token)
    assert after != before
    assert after.startswith(b"%PDF-")
    async with client.internal.open_download(created.token) as dl:
        assert await dl.read() == after


async def test_internal_add_remove_and_update(
    client: DokobitClient, dokobit_emulator: Emulator, browser: aiohttp.ClientSession
) -> None:
    """add_signers gives each new person a signing page; remove_signers drops one;
    update applies the internal options."""
    created = await create_internal(client)
    added = await client.internal.add_signers(
        created.token,
        [InternalSigner(external_id="cyd"), InternalSigner(external_id="dan", phone="+3706")],
    )
    cyd, dan = added.signers
    assert cyd.redirect_uri is not None
    async with browser.get(cyd.redirect_uri) as page:
        assert page.status == 200
        assert "cyd" in await page.text()

    await client.internal.remove_signers(created.token, [dan.token, created.signer("bob").token])
    status = await client.internal.status(created.token)
    assert {s.external_id for s in status.signers} == {"ann", "vic", "cyd"}

    await client.internal.update(
        created.token,
        require_qualified_signatures=True,
        allow_video_identification=False,
        allowed_signing_methods=["smartcard"],
    )
    options = dokobit_emulator.signings[created.token].options
    assert options["require_qualified_signatures"] is True
    assert options["allow_video_identification"] is False
    assert options["allowed_signing_methods"] == ["smartcard"]


# ------------------------------------------------------------------ seal, delivery, validation


async def test_seal_applies_an_e_seal_to_the_document(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """client.seal with a reason and an annotation changes the signed document."""
    created = await create_external(client)
    before = await client.external.download(created.token)
    await client.seal(
        created.token,
        custom_reason="Approved by ACME",
        annotation=Annotation(page=1, top=10, left=20),
    )
    marks = dokobit_emulator.signings[created.token].marks
    assert [(m.kind, m.reason) for m in marks] == [("seal", "Approved by ACME")]
    after = await client.external.download(created.token)
    assert after != before
    assert after.startswith(b"%PDF-")


async def test_e_delivery_create_returns_recipient_tokens_and_notifies_them(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """e_delivery.create with Recipients: a token per recipient, a delivery notice in
    the outbox, and the recipient can confirm receipt."""
    created = await client.e_delivery.create(
        name="Delivery",
        files=[SigningFile.from_bytes(PDF, name="notice.pdf")],
        recipients=[
            Recipient(external_id="r1", code="39001010000", country_code="LT", email="r@x.lt"),
            Recipient(external_id="r2", code="123", country_code="ee", phone="+3725"),
        ],
        comment="For your records",
    )
    assert [(r.external_id, r.country) for r in created.recipients] == [
        ("r1", "lt"),
        ("r2", "ee"),
    ]
    notices = [m for m in dokobit_emulator.outbox if m.kind == "delivery"]
    assert [(m.email, m.phone, m.message) for m in notices] == [
        ("r@x.lt", None, "For your records"),
        (None, "+3725", "For your records"),
    ]
    assert await dokobit_emulator.receive_delivery(created.token, created.recipients[0].token)


@pytest.mark.parametrize("kind", list(ReportKind))
async def test_validation_upload_and_every_report_kind(
    client: DokobitClient, dokobit_emulator: Emulator, kind: ReportKind, tmp_path: Path
) -> None:
    """validation.upload returns a token; each report downloads (PDF reports start
    with ``%PDF``, XML reports parse) by bytes, to a path and streamed."""
    source = tmp_path / "signed.pdf"
    source.write_bytes(PDF)
    token = await client.validation.upload(source)
    assert dokobit_emulator.validations[token].file.data == PDF
    body = await client.validation.report(token, kind)
    if kind.value.endswith("-pdf"):
        assert body.startswith(b"%PDF")
    else:
        root = ET.fromstring(body)  # noqa: S314 - our own emulator, on loopback
        assert root.tag in ("ValidationReport", "DiagnosticData")
    saved = await client.validation.report(token, kind.value, tmp_path / "report")
    assert saved.read_bytes() == body
    async with client.validation.open_report(token, kind) as dl:
        assert await dl.read() == body


# ------------------------------------------------------------------ postbacks


async def test_postbacks_reach_the_receiver_and_the_completed_file_downloads(
    client: DokobitClient, dokobit_emulator: Emulator
) -> None:
    """A signing with ``postback_url`` posts signing_created, signer_signed per
    signer and signing_completed, whose ``file`` URL client.download_file fetches."""
    emu = dokobit_emulator
    async with Receiver() as receiver:
        created = await create_external(client, postback_url=receiver.url)
        for who in ("ann", "bob"):
            await emu.sign(created.token, created.signer(who).token)
        await asyncio.wait_for(emu.wait_postbacks_idle(timeout=5), 10)
    assert [p["action"] for p in receiver.received] == [
        "signing_created",
        "signer_signed",
        "signer_signed",
        "signing_completed",
    ]
    assert {p["token"] for p in receiver.received} == {created.token}
    assert [p.get("signer") for p in receiver.received[1:3]] == [
        created.signer("ann").token,
        created.signer("bob").token,
    ]
    completed = receiver.received[-1]
    signed = await client.download_file(completed["file"])
    assert signed == await client.external.download(created.token)
    assert signed.startswith(b"%PDF-")


# ------------------------------------------------------------------ error paths

Call = Callable[[DokobitClient, str], Awaitable[Any]]

# Every action that takes a signing (or validation) token, called with ``token``.
TOKEN_ACTIONS: dict[str, Call] = {
    "external.status": lambda c, t: c.external.status(t),
    "external.download": lambda c, t: c.external.download(t),
    "external.add_signers": lambda c, t: c.external.add_signers(t, external_people("zed")),
    "external.remove_signers": lambda c, t: c.external.remove_signers(t, ["x" * 40]),
    "external.update": lambda c, t: c.external.update(t, hard_deadline=False),
    "external.remind": lambda c, t: c.external.remind(t, "x" * 40),
    "external.delete": lambda c, t: c.external.delete(t),
    "internal.status": lambda c, t: c.internal.status(t),
    "internal.download": lambda c, t: c.internal.download(t),
    "internal.add_signers": lambda c, t: c.internal.add_signers(
        t, [InternalSigner(external_id="zed")]
    ),
    "internal.remove_signers": lambda c, t: c.internal.remove_signers(t, ["x" * 40]),
    "internal.update": lambda c, t: c.internal.update(t, require_qualified_signatures=True),
    "internal.delete": lambda c, t: c.internal.delete(t),
    "seal": lambda c, t: c.seal(t, custom_reason="r"),
    "validation.report": lambda c, t: c.validation.report(t, ReportKind.REPORT_XML),
}


@pytest.mark.parametrize("action", sorted(TOKEN_ACTIONS))
@pytest.mark.parametrize(
    "dokobit_emulator_config",
    [EmulatorConfig(unknown_token_status=400), EmulatorConfig(unknown_token_status=404)],
    ids=["unknown-400", "unknown-404"],
)
async def test_unknown_token_is_not_found_whichever_status_the_server_uses(
    client: DokobitClient, dokobit_emulator: Emulator, action: str
) -> None:
    """An unknown signing/validation token raises NotFoundError both when the server
    answers 400 with field ``[token]`` and when it answers 404; the access token is
    in no error text."""
    with pytest.raises(NotFoundError) as info:
        await TOKEN_ACTIONS[action](client, UNKNOWN)
    assert info.value.status == dokobit_emulator.config.unknown_token_status
    assert [e.field for e in info.value.errors] == ["[token]"]
    assert_secret_free(info.value, dokobit_emulator.access_token)


async def test_wrong_access_token_is_an_authentication_error_without_the_token(
    dokobit_emulator: Emulator, encoding: str
) -> None:
    """A wrong access token gets 403 -> AuthenticationError for JSON actions and
    downloads alike; neither the wrong nor the right token shows in the error."""
    wrong = "beta_" + "f" * 40
    async with make_client(dokobit_emulator, encoding, token=wrong) as client:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: create_external(client),
            lambda: client.external.status(UNKNOWN),
            lambda: client.internal.download(UNKNOWN),
            lambda: client.validation.report(UNKNOWN, ReportKind.REPORT_PDF),
        ]
        for call in calls:
            with pytest.raises(AuthenticationError) as info:
                await call()
            assert info.value.status == 403
            assert_secret_free(info.value, wrong)
            assert_secret_free(info.value, dokobit_emulator.access_token)
    assert not dokobit_emulator.signings


# Input the client passes through unchecked (open enums, free text) but the server
# rejects: (description, call, expected bracket field paths).
REJECTED: list[tuple[str, Call, list[str]]] = [
    (
        "bad signer country code",
        lambda c, _: c.external.create(
            name="x",
            type="pdf",
            files=DOCUMENTS["pdf"](),
            signers=[ExternalSigner(external_id="a", email="a@x", code="1", country_code="XX")],
        ),
        ["[signers][0][country_code]"],
    ),
    (
        "invalid signing method",
        lambda c, _: c.external.create(
            name="x",
            type="pdf",
            files=DOCUMENTS["pdf"](),
            allowed_signing_methods=["smartid", "carrier_pigeon"],
        ),
        ["[allowed_signing_methods][1]"],
    ),
    (
        "annotation_position middle",
        lambda c, _: c.external.create(
            name="x", type="pdf", files=DOCUMENTS["pdf"](), annotation_position="middle"
        ),
        ["[annotation_position]"],
    ),
    (
        "bad notification language and annotation language",
        lambda c, _: c.external.create(
            name="x",
            type="pdf",
            files=DOCUMENTS["pdf"](),
            signers=[
                ExternalSigner(external_id="a", email="a@x"),
                ExternalSigner(
                    external_id="b",
                    email="b@x",
                    notifications_language="tlh",
                    annotation=Annotation(language="tlh"),
                ),
            ],
        ),
        ["[signers][1][notifications_language]", "[signers][1][annotation][language]"],
    ),
    (
        "internal signer role and language",
        lambda c, _: c.internal.create(
            name="x",
            type="pdf",
            files=DOCUMENTS["pdf"](),
            redirect_uri=REDIRECT,
            signers=[InternalSigner(external_id="a", role="approver", language="xx")],
        ),
        ["[signers][0][role]", "[signers][0][language]"],
    ),
    (
        "relative redirect_uri",
        lambda c, _: c.internal.create(
            name="x", type="pdf", files=DOCUMENTS["pdf"](), redirect_uri="/back"
        ),
        ["[redirect_uri]"],
    ),
    (
        "e-delivery recipient country outside lt/lv/ee/is",
        lambda c, _: c.e_delivery.create(
            name="x",
            files=DOCUMENTS["pdf"](),
            recipients=[Recipient(external_id="r", code="1", country_code="no", email="r@x")],
        ),
        ["[recipients][0][country_code]"],
    ),
    (
        "validation of an unsupported file type",
        lambda c, _: c.validation.upload(SigningFile.from_bytes(b"hello", name="notes.txt")),
        ["[file][name]"],
    ),
    (
        "update with an invalid signing method",
        lambda c, t: c.external.update(t, allowed_signing_methods=["fax"]),
        ["[allowed_signing_methods][0]"],
    ),
    (
        "seal annotation on page 0",
        lambda c, t: c.seal(t, annotation=Annotation(page=0)),
        ["[annotation][page]"],
    ),
    (
        "added signer with a bad country code",
        lambda c, t: c.external.add_signers(
            t, [ExternalSigner(external_id="z", email="z@x", code="1", country_code="us")]
        ),
        ["[signers][0][country_code]"],
    ),
]


@pytest.mark.parametrize(
    ("call", "fields"), [(c, f) for _, c, f in REJECTED], ids=[d for d, _, _ in REJECTED]
)
async def test_server_side_validation_errors_carry_the_emulators_field_paths(
    client: DokobitClient, dokobit_emulator: Emulator, call: Call, fields: list[str]
) -> None:
    """Data the client lets through but the server rejects raises ValidationError
    (HTTP 400) whose ``errors`` name the offending fields in bracket notation, with
    nothing created and no access token in the error text."""
    existing = await create_external(client)
    with pytest.raises(ValidationError) as info:
        await call(client, existing.token)
    error = info.value
    assert error.status == 400
    assert [e.field for e in error.errors] == fields
    assert all(e.message for e in error.errors)
    assert list(dokobit_emulator.signings) == [existing.token]
    assert not dokobit_emulator.deliveries
    assert not dokobit_emulator.validations
    assert_secret_free(error, dokobit_emulator.access_token)
    assert isinstance(error, DokobitError)
