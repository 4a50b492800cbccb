"""The dedupe key and ``Event.via`` that reconciliation relies on (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dokobit_async import parse_postback
from dokobit_async.events import event_key

ONCE = ["signing_created", "signing_completed", "signing_archived", "signing_archive_failed"]
MARK = {"dokobit_async": {"via": "reconciler"}}


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
