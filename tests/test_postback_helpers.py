"""The test kit's postback helpers make what Dokobit posts: a receiver over loopback
takes every body they build, for every event type, in both encodings, at a URL they
mint, and refuses what they do not."""

from __future__ import annotations

import aiohttp
import pytest
from _receiver_helpers import SECRET, start_receiver

from dokobit_async import (
    Event,
    InvalidArgumentError,
    MemoryInbox,
    Router,
    SignerDeclined,
    SignerSigned,
    SigningArchived,
    SigningArchiveFailed,
    SigningCompleted,
    SigningCreated,
    UnknownEvent,
)
from dokobit_async.events import DocumentReceived
from dokobit_async.testing import postback_body, postback_url, verify_postback_url

EVENTS: list[type[Event] | str] = [
    SigningCreated,
    SignerSigned,
    SignerDeclined,
    SigningCompleted,
    SigningArchived,
    SigningArchiveFailed,
    DocumentReceived,
    "something_new",
]
CONTENT_TYPES = {False: "application/json", True: "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_a_receiver_takes_every_body_the_helpers_build(form: bool) -> None:
    """Each event type, posted to a URL minted by ``postback_url`` under the
    receiver's secret, is stored (200) and reaches the handler as its typed event
    with the fields given."""
    seen: list[Event] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        seen.append(event)

    receiver, runner, minted = await start_receiver(router, inbox=MemoryInbox())
    base = minted.split(receiver.path)[0]
    url = postback_url(base, SECRET)
    assert verify_postback_url(minted, SECRET)
    try:
        async with aiohttp.ClientSession() as session:
            for n, event in enumerate(EVENTS):
                body = postback_body(
                    event,
                    token=f"signing-{n}",
                    file=f"{base}/api/signing/signing-{n}/download",
                    signer_info={"code": "39001010000", "country_code": "lt"},
                    form=form,
                )
                headers = {"Content-Type": CONTENT_TYPES[form]}
                async with session.post(url, data=body, headers=headers) as answer:
                    assert answer.status == 200, await answer.text()
        await receiver.wait_idle()
    finally:
        await runner.cleanup()
    assert [type(e) for e in seen] == [e if isinstance(e, type) else UnknownEvent for e in EVENTS]
    for n, received in enumerate(seen):
        assert received.token == f"signing-{n}"
        assert received.signer_info is not None
        assert received.signer_info.code == "39001010000"
    assert [e.signer for e in seen if isinstance(e, (SignerSigned, SignerDeclined))] == [
        "test-signer",
        "test-signer",
    ]
    completed = next(e for e in seen if isinstance(e, SigningCompleted))
    assert completed.file == f"{base}/api/signing/signing-3/download"


async def test_a_url_minted_under_another_secret_is_refused() -> None:
    """The receiver refuses (401) a URL minted under any other secret, and
    ``verify_postback_url`` tells the two apart."""
    receiver, runner, minted = await start_receiver(Router(), inbox=MemoryInbox())
    base = minted.split(receiver.path)[0]
    other = b"another-secret-0123456789abcdef"
    foreign = postback_url(base, other)
    assert not verify_postback_url(foreign, SECRET)
    assert verify_postback_url(foreign, other)
    assert not verify_postback_url(minted.replace(receiver.path, "/elsewhere"), SECRET)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(foreign, data=postback_body(SigningCreated)) as answer,
        ):
            assert answer.status == 401
    finally:
        await runner.cleanup()


def test_what_is_not_a_postback_is_refused_when_built() -> None:
    """The helpers never hand out something a receiver would refuse."""
    with pytest.raises(InvalidArgumentError, match="token"):
        postback_body(SigningCompleted, token="..")
    with pytest.raises(InvalidArgumentError, match="must be text"):
        postback_body(SignerSigned, signer=["a", "list"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="at least 16 bytes"):
        postback_url("https://example.com", "short")


def test_the_secret_is_checked_by_the_receivers_rules() -> None:
    """One secret, bytes or text, of 16 bytes or more, as ``PostbackReceiver``
    takes it: 15 bytes and a list are refused with the receiver's own words."""
    with pytest.raises(InvalidArgumentError, match=r"^secret must be at least 16 bytes long$"):
        verify_postback_url("https://example.com/dokobit/postback/a.b", b"x" * 15)
    with pytest.raises(InvalidArgumentError, match=r"^secret must be bytes or str, not list$"):
        postback_url("https://example.com", [SECRET])  # type: ignore[arg-type]
    assert verify_postback_url(postback_url("https://example.com", b"x" * 16), "x" * 16)


async def test_the_receivers_own_urls_and_the_helpers_agree() -> None:
    """``PostbackReceiver.postback_url`` and ``postback_url`` mint the same shape,
    each verified by the other's secret check."""
    receiver, runner, _ = await start_receiver(Router(), inbox=MemoryInbox())
    try:
        url = receiver.postback_url("https://example.com/")
        assert verify_postback_url(url, SECRET)
        ours = postback_url("https://example.com/", SECRET)
        assert ours.rsplit("/", 1)[0] == url.rsplit("/", 1)[0]
        assert ours != url  # a fresh nonce each time
    finally:
        await runner.cleanup()
