"""Confirming an internal signing's events: the flow that knew the signing is asked
first next time, so each event after the first costs one status read, not two."""

from __future__ import annotations

from dokobit_async import DokobitClient, InternalSigner, SigningFile
from dokobit_async._confirm import confirm
from dokobit_async.events import SignerSigned, SigningCompleted
from dokobit_async.testing import Emulator, make_pdf


async def test_an_internal_signings_next_events_ask_the_internal_flow_first(
    dokobit_emulator: Emulator, dokobit_client: DokobitClient
) -> None:
    """The first event of an internal signing tries the external flow (which does not
    know it), then the internal one; its next events read the internal status only."""
    created = await dokobit_client.internal.create(
        name="Contract",
        type="pdf",
        files=[SigningFile.from_bytes(make_pdf(["Contract"]), name="contract.pdf")],
        redirect_uri="https://example.com/back",
        signers=[InternalSigner(external_id="ann")],
    )
    signer = created.signer("ann").token
    await dokobit_emulator.sign(created.token, signer)

    def status_reads() -> list[str]:
        return [r.path for r in dokobit_emulator.requests if r.path.endswith("/status.json")]

    signed = SignerSigned(action="signer_signed", token=created.token, signer=signer)
    assert await confirm(dokobit_client, signed) is True
    first = status_reads()
    assert [p.split("/")[2] for p in first] == ["signing-external", "signing-internal"]

    completed = SigningCompleted(action="signing_completed", token=created.token)
    assert await confirm(dokobit_client, completed) is True
    assert await confirm(dokobit_client, signed) is True
    later = status_reads()[len(first) :]
    assert [p.split("/")[2] for p in later] == ["signing-internal", "signing-internal"]
