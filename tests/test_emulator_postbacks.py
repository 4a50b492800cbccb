"""Emulator: postbacks with retries, signing pages, faults and the rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_emulator_flows import call, external_body, pdf_file

from dokobit_async.testing import Emulator, EmulatorConfig, FaultKind, Faults


class Receiver:
    """A tiny postback receiver on loopback that fails the first ``fail_first`` POSTs."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []
        self.calls = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return web.Response(status=503)
        self.received.append(json.loads(await request.read()))
        return web.Response(text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_postbacks_are_retried_on_the_scaled_schedule(http: aiohttp.ClientSession) -> None:
    """A failed delivery is retried (5 min, 1 h, 24 h x time_scale); all attempts recorded."""
    config = EmulatorConfig(time_scale=0.00001)
    async with Receiver(fail_first=2) as receiver, Emulator(config=config) as emu:
        _, created = await call(
            http,
            emu,
            "POST",
            "signing-external/create.json",
            external_body(postback_url=receiver.url),
        )
        await emu.wait_postbacks_idle(timeout=5)
        attempts = emu.postbacks
        assert [(a.attempt, a.outcome) for a in attempts] == [(1, 503), (2, 503), (3, 200)]
        assert attempts[0].action == "signing_created"
        gap = (attempts[2].time - attempts[1].time).total_seconds()
        assert 0.036 <= gap < 2.0  # 3600 s x 0.00001
        assert receiver.received == [
            {"status": "ok", "token": created["token"], "action": "signing_created"}
        ]


async def test_postbacks_give_up_after_four_attempts(http: aiohttp.ClientSession) -> None:
    """An unreachable receiver gets 4 attempts, each recorded with an error text."""
    async with Receiver() as receiver:
        dead_url = receiver.url
    async with Emulator(config=EmulatorConfig(time_scale=0.000001)) as emu:
        await call(
            http, emu, "POST", "signing-external/create.json", external_body(postback_url=dead_url)
        )
        await emu.wait_postbacks_idle(timeout=5)
        assert [a.attempt for a in emu.postbacks] == [1, 2, 3, 4]
        assert all(a.status is None and a.error for a in emu.postbacks)


async def test_completion_postbacks_carry_a_downloadable_file(http: aiohttp.ClientSession) -> None:
    """signer_signed then signing_completed, whose file URL downloads the digested bytes."""
    async with Receiver() as receiver, Emulator() as emu:
        _, created = await call(
            http,
            emu,
            "POST",
            "signing-external/create.json",
            external_body(postback_url=receiver.url),
        )
        token, signers = created["token"], created["signers"]
        await emu.decline(token, signers[0]["token"])
        await emu.sign(token, signers[0]["token"], method="mobile")
        await emu.sign(token, signers[1]["token"])
        await emu.wait_postbacks_idle(timeout=5)
        actions = [p["action"] for p in receiver.received]
        assert actions == [
            "signing_created",
            "signer_declined",
            "signer_signed",
            "signer_signed",
            "signing_completed",
        ]
        signed = receiver.received[3]
        assert signed["signer"] == signers[1]["token"]
        assert signed["signer_info"]["code"] == "39001010000"
        assert signed["signer_info"]["country_code"] == "lt"
        assert receiver.received[2]["signer_info"]["signing_option"] == "mobile"
        completed = receiver.received[-1]
        async with http.get(completed["file"], params={"access_token": emu.access_token}) as r:
            data = await r.read()
        assert hashlib.sha256(data).hexdigest() == completed["file_digest"]
        assert data.startswith(b"%PDF-")


async def test_declined_status_is_configurable(http: aiohttp.ClientSession) -> None:
    """declined_status="declined" changes the document status after a decline."""
    async with Emulator(config=EmulatorConfig(declined_status="declined")) as emu:
        _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
        await emu.decline(created["token"], created["signers"][0]["token"])
        assert emu.signings[created["token"]].status == "declined"


async def test_internal_signing_page_signs_and_redirects(http: aiohttp.ClientSession) -> None:
    """GET the page, POST Sign → 303 to redirect_uri; the signer is signed."""
    async with Emulator() as emu:
        body = {
            "type": "pdf",
            "name": "Page test",
            "redirect_uri": "https://app.test/done",
            "files": [pdf_file()],
            "signers": [{"external_id": "p"}],
        }
        _, created = await call(http, emu, "POST", "signing-internal/create.json", body)
        page = created["signers"][0]["redirect_uri"]
        async with http.get(page) as response:
            html = await response.text()
        assert response.status == 200
        assert "Page test" in html
        assert "value='sign'" in html
        assert "value='decline'" in html
        async with http.post(page, data={"action": "sign"}, allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "https://app.test/done"
        assert emu.signings[created["token"]].status == "completed"
        async with http.post(page, data={"action": "sign"}, allow_redirects=False) as response:
            assert response.status == 400


async def test_external_invitation_link_declines_and_delivery_link_confirms(
    http: aiohttp.ClientSession,
) -> None:
    """The outbox link of an external signer declines; the e-delivery link confirms."""
    async with Receiver() as receiver, Emulator() as emu:
        _, created = await call(http, emu, "POST", "signing-external/create.json", external_body())
        async with http.post(emu.outbox[0].url, data={"action": "decline"}) as response:
            assert response.status == 200
            assert "declined" in await response.text()
        first = emu.signings[created["token"]].participants[created["signers"][0]["token"]]
        assert first.status == "declined"
        _, delivery = await call(
            http,
            emu,
            "POST",
            "e-delivery/create.json",
            {
                "type": "pdf",
                "name": "Letter",
                "files": [pdf_file()],
                "postback_url": receiver.url,
                "recipients": [{"code": "1", "country_code": "ee", "phone": "+3725000000"}],
            },
        )
        link = emu.outbox[-1].url
        assert emu.outbox[-1].phone == "+3725000000"
        async with http.get(link) as response:
            assert "Confirm receipt" in await response.text()
        async with http.post(link) as response:
            assert response.status == 200
        assert not await emu.receive_delivery(delivery["token"], emu.outbox[-1].signer_token)
        await emu.wait_postbacks_idle(timeout=5)
        assert [p["action"] for p in receiver.received] == ["document_received"]
        assert receiver.received[0]["token"] == delivery["token"]


@pytest.mark.parametrize("kind", list(FaultKind))
async def test_each_fault_kind_is_injected_and_recorded(
    http: aiohttp.ClientSession, kind: FaultKind
) -> None:
    """With rate=1 and one kind weighted, that fault hits API routes and is recorded."""
    faults = Faults(rate=1.0, weights={kind: 1.0}, slow_delay=0.05, retry_after=7)
    async with Emulator(config=EmulatorConfig(faults=faults)) as emu:
        url = f"{emu.base_url}/api/signing-external/create.json"
        outcome: int | str
        try:
            async with http.post(
                url, params={"access_token": emu.access_token}, json=external_body()
            ) as response:
                await response.read()
                outcome = response.status
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientError as exc:
            outcome = type(exc).__name__
        record = emu.requests[-1]
        assert record.fault == kind.value
        assert record.operation == "signing-external/create"
        created = len(emu.signings)
        if kind in (FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER):
            assert isinstance(outcome, str)
            assert record.status is None
            assert created == (1 if kind is FaultKind.DROP_AFTER else 0)
        elif kind is FaultKind.SLOW:
            assert (outcome, created) == (200, 1)
        else:
            assert outcome == int(kind.value[:3])
            assert created == 0
            expected = "7" if kind is FaultKind.RATE_LIMITED else None
            assert retry_after == expected
        async with http.get(f"{emu.base_url}/sign/x/y") as response:
            assert response.status == 404  # pages never get faults


async def test_faults_are_reproducible_with_a_seed(http: aiohttp.ClientSession) -> None:
    """The same seed draws the same faults for the same request sequence."""
    drawn = []
    for _ in range(2):
        faults = Faults(
            rate=0.5, seed=42, weights={FaultKind.SERVER_ERROR: 1, FaultKind.UNAVAILABLE: 1}
        )
        async with Emulator(config=EmulatorConfig(faults=faults)) as emu:
            for _ in range(10):
                await call(http, emu, "GET", "signing-external/none/status.json")
            drawn.append([r.fault for r in emu.requests])
    assert drawn[0] == drawn[1]
    assert None in drawn[0]
    assert "500" in drawn[0]


async def test_rate_limit_gives_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    """Past N requests per window the answer is 429 with Retry-After."""
    async with Emulator(config=EmulatorConfig(rate_limit=(3, 30.0))) as emu:
        statuses = []
        for _ in range(5):
            url = f"{emu.base_url}/api/signing-external/none/status.json"
            async with http.get(url, params={"access_token": emu.access_token}) as response:
                statuses.append(response.status)
                retry_after = response.headers.get("Retry-After")
        assert statuses == [400, 400, 400, 429, 429]
        assert retry_after is not None
        assert 1 <= int(retry_after) <= 30


async def test_close_cancels_pending_retries(http: aiohttp.ClientSession) -> None:
    """Closing the emulator drains postback tasks that are waiting to retry."""
    async with Receiver(fail_first=100) as receiver:
        emu = Emulator()  # real schedule: the retry waits 5 minutes
        await emu.start()
        await call(
            http,
            emu,
            "POST",
            "signing-external/create.json",
            external_body(postback_url=receiver.url),
        )
        for _ in range(200):
            if emu.postbacks:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await emu.wait_postbacks_idle(timeout=0.05)
        await emu.close()
        assert [a.attempt for a in emu.postbacks] == [1]
