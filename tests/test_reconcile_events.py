"""The dedupe key and ``Event.via`` that reconciliation relies on, and the bodies it
rebuilds from a status answer (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dokobit_async import Schedule, SigningStatus, StatusSigner, parse_postback
from dokobit_async._reconcile_bodies import missed_postbacks
from dokobit_async.events import event_key

ONCE = ["signing_created", "signing_completed", "signing_archived", "signing_archive_failed"]
MARK = {"dokobit_async": {"via": "reconciler"}}
FIRST_LOOK: dict[str, Any] = {
    "last_status": "",
    "last_signers": {},
    "file_url": "https://h/download",
}


def key(payload: dict[str, Any]) -> str:
    return event_key(parse_postback(json.dumps(payload).encode()))


@pytest.mark.parametrize("action", ONCE)
def test_once_per_signing_actions_are_keyed_by_token_and_action(action: str) -> None:
    """Any two bodies of one signing's once-only action share a key, whatever else
    differs (the rebuilt body has no ``file_digest``, another ``file``); another
    signing or action does not."""
    real = {
        "status": "ok",
        "token": "T",
        "action": action,
        "file": "https://a/x",
        "file_digest": "ab",
    }
    rebuilt = {"status": "ok", "token": "T", "action": action, "file": "https://b/y", **MARK}
    assert key(real) == key(rebuilt)
    assert key({**real, "token": "T2"}) != key(real)
    assert key(
        {**real, "action": "signing_archived" if action != "signing_archived" else "x"}
    ) != key(real)


def test_signer_events_keep_their_signer_in_the_key() -> None:
    """Two people's signatures of one signing stay two events."""
    one = {"token": "T", "action": "signer_signed", "signer": "S1"}
    assert key(one) != key({**one, "signer": "S2"})
    assert key(one) == key({**one, "signer_info": {"code": "1"}, **MARK})


def test_via_says_which_path_and_a_forged_marker_changes_nothing_else() -> None:
    """``via`` is ``reconciler`` only for the marker's exact value; a postback that
    claims it keeps its key (and so its dedupe, order and handlers)."""
    body = {"token": "T", "action": "signer_signed", "signer": "S1"}
    assert parse_postback(json.dumps(body).encode()).via == "postback"
    forged = parse_postback(json.dumps({**body, **MARK}).encode())
    assert forged.via == "reconciler"
    assert event_key(forged) == key(body)
    for odd in ({"via": "other"}, "reconciler", ["via"], None):
        assert (
            parse_postback(json.dumps({**body, "dokobit_async": odd}).encode()).via == "postback"
        )


def status_answer(document: str, signer: str = "signed") -> SigningStatus:
    """A status answer as the models build it (the emulator never archives)."""
    return SigningStatus(
        status=document, signers=(StatusSigner(token="S1", status=signer, code="1"),)
    )


@pytest.mark.parametrize("document", ["completed", "archived"])
def test_a_completed_or_archived_signing_rebuilds_its_completion_once(document: str) -> None:
    """A first look at a completed or already archived signing rebuilds the signature
    and ``signing_completed``; a look after ``completed`` that finds ``archived``
    rebuilds nothing more (``signing_archived`` is not rebuilt)."""
    first = missed_postbacks("T", status_answer(document), **FIRST_LOOK)
    assert [(b["action"], b.get("signer")) for b in first] == [
        ("signer_signed", "S1"),
        ("signing_completed", None),
    ]
    assert first[-1]["file"] == "https://h/download"
    later: dict[str, Any] = {"last_status": "completed", "last_signers": {"S1": "signed"}}
    assert missed_postbacks("T", status_answer("archived"), **later, file_url="u") == []


def test_every_final_document_status_ends_the_tracking() -> None:
    """The final statuses include the inferred ``archived`` and ``failed``, not
    ``pending``."""
    final = Schedule().final
    assert {"completed", "archived", "failed", "declined", "expired", "deleted"} <= final
    assert "pending" not in final
