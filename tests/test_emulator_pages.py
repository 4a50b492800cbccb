"""The emulator's signing page, over HTTP, where an app's flow depends on it: the
redirect back after signing, a decline, a signing already done, and refusals that are
pages (never a 500). Which of these are inferred is in the docstring of
``dokobit_async/testing/_emulator/pages.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_emulator_flows import call, external_body, pdf_file

from dokobit_async.testing import Emulator

RETURN = "https://app.test/return/abc?x=1&y=2"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def create_internal(
    http: aiohttp.ClientSession, emu: Emulator, name: str = "Lease", **extra: Any
) -> tuple[str, str]:
    """An internal signing with one signer; ``(signing token, signing page URL)``."""
    body = {
        "type": "pdf",
        "name": name,
        "redirect_uri": RETURN,
        "files": [pdf_file()],
        "signers": [{"external_id": "tenant"}],
        **extra,
    }
    _, created = await call(http, emu, "POST", "signing-internal/create.json", body)
    return created["token"], created["signers"][0]["redirect_uri"]


async def get_page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def press(http: aiohttp.ClientSession, url: str, action: str) -> aiohttp.ClientResponse:
    """POST the signing page's form as a browser would, without following redirects."""
    async with http.post(url, data={"action": action}, allow_redirects=False) as response:
        await response.read()
        return response


async def press_and_return(http: aiohttp.ClientSession, url: str, action: str) -> None:
    """Press ``action``; the answer must send the browser back to ``RETURN``, as given
    (query included, nothing added)."""
    answer = await press(http, url, action)
    assert answer.status == 303
    assert answer.headers["Location"] == RETURN


async def test_sign_in_the_internal_flow_sends_the_person_back_to_redirect_uri_unchanged(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """Sign answers 303 to the signing's ``redirect_uri`` exactly as given (query
    included, nothing added), and the signing completes."""
    token, page = await create_internal(http, emu)
    status, html = await get_page(http, page)
    assert status == 200
    assert "value='sign'" in html
    assert "value='decline'" in html
    await press_and_return(http, page, "sign")
    assert emu.signings[token].status == "completed"


async def test_a_signed_page_opened_again_says_so_and_has_no_buttons(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """After signing, the signing URL still answers 200, says the document is already
    signed, and offers neither Sign nor Decline."""
    _, page = await create_internal(http, emu)
    await press_and_return(http, page, "sign")
    status, html = await get_page(http, page)
    assert status == 200
    assert "You have already signed this document." in html
    assert "<button" not in html
    assert "<form" not in html


async def test_a_second_sign_is_refused_with_a_page_and_changes_nothing(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """A second POST (a stale tab, a double submit) gets a 400 HTML page saying the
    document is already signed; the document keeps one signature and no postback or
    state change follows. A Decline after signing is refused the same way."""
    token, page = await create_internal(http, emu)
    await press_and_return(http, page, "sign")
    signing = emu.signings[token]
    before = (list(signing.marks), list(signing.current), signing.status)
    for action in ("sign", "decline"):
        async with http.post(page, data={"action": action}, allow_redirects=False) as response:
            assert response.status == 400
            assert response.content_type == "text/html"
            html = await response.text()
        assert "Already signed" in html
        assert "You have already signed this document." in html
    assert (list(signing.marks), list(signing.current), signing.status) == before
    (participant,) = signing.participants.values()
    assert participant.status == "signed"


async def test_decline_in_the_internal_flow_also_returns_to_redirect_uri(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """Decline answers 303 to ``redirect_uri`` too; the person is declined and the
    document is not signed."""
    token, page = await create_internal(http, emu)
    await press_and_return(http, page, "decline")
    signing = emu.signings[token]
    (participant,) = signing.participants.values()
    assert participant.status == "declined"
    assert signing.status == "pending"
    assert signing.marks == []


async def test_a_declined_page_offers_only_sign_and_a_second_decline_is_refused(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """After a decline the page says so and offers only Sign (the portal's "sign
    anyway"); a second Decline is a 400 page; Sign still works and returns to
    ``redirect_uri``."""
    token, page = await create_internal(http, emu)
    await press_and_return(http, page, "decline")
    status, html = await get_page(http, page)
    assert status == 200
    assert "You have declined this document." in html
    assert "value='sign'" in html
    assert "value='decline'" not in html
    async with http.post(page, data={"action": "decline"}, allow_redirects=False) as response:
        assert response.status == 400
        assert "Already declined" in await response.text()
    await press_and_return(http, page, "sign")
    assert emu.signings[token].status == "completed"


async def test_external_flow_sign_and_decline_end_on_a_thank_you_page(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """With no ``redirect_uri`` (external flow) Sign and Decline answer a 200 page
    that says what happened."""
    _, _created = await call(http, emu, "POST", "signing-external/create.json", external_body())
    signers = [m.url for m in emu.outbox]
    assert len(signers) >= 2
    async with http.post(signers[0], data={"action": "sign"}) as response:
        assert response.status == 200
        assert "You have signed" in await response.text()
    async with http.post(signers[1], data={"action": "decline"}) as response:
        assert response.status == 200
        assert "You have declined" in await response.text()


async def test_a_viewer_page_has_no_buttons_and_a_viewer_post_is_a_400_page(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """A viewer sees the document with nothing to press; posting Sign anyway is a
    400 page, not a signature."""
    body = {
        "type": "pdf",
        "name": "Viewed",
        "redirect_uri": RETURN,
        "files": [pdf_file()],
        "signers": [{"external_id": "signer"}, {"external_id": "auditor", "role": "viewer"}],
    }
    _, created = await call(http, emu, "POST", "signing-internal/create.json", body)
    viewer = created["signers"][1]["redirect_uri"]
    status, html = await get_page(http, viewer)
    assert status == 200
    assert "nothing to sign" in html
    assert "<button" not in html
    answer = await press(http, viewer, "sign")
    assert answer.status == 400
    assert emu.signings[created["token"]].marks == []


async def test_text_from_the_sender_is_escaped_on_the_page(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """The signing's name is shown as text: markup in it never becomes markup."""
    _, page = await create_internal(http, emu, name="<script>alert(1)</script>")
    _, html = await get_page(http, page)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        (b"", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"action=dance", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"action=sign", {"Content-Type": "multipart/form-data; boundary=zz"}),
        (b"\xff\xfe", {"Content-Type": "application/json"}),
    ],
)
async def test_broken_or_unknown_posts_get_a_page_never_a_500(
    http: aiohttp.ClientSession, emu: Emulator, data: bytes, headers: dict[str, str]
) -> None:
    """Whatever a browser (or anything else) posts, the answer is an HTML page with a
    4xx status, and the signing is unchanged."""
    token, page = await create_internal(http, emu)
    async with http.post(page, data=data, headers=headers, allow_redirects=False) as response:
        assert 400 <= response.status < 500
        assert response.content_type == "text/html"
    assert emu.signings[token].marks == []


async def test_unknown_signing_or_signer_is_a_4xx_page(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    """A signing page URL that names no signing is a 404 page; a known signing with
    an unknown signer is refused with a page too."""
    token, _page = await create_internal(http, emu)
    status, html = await get_page(http, f"{emu.base_url}/sign/{'0' * 40}/{'1' * 40}")
    assert status == 404
    assert "Cannot continue" in html
    status, html = await get_page(http, f"{emu.base_url}/sign/{token}/{'1' * 40}")
    assert 400 <= status < 500
    assert "Cannot continue" in html
    answer = await press(http, f"{emu.base_url}/sign/{token}/{'1' * 40}", "sign")
    assert 400 <= answer.status < 500
