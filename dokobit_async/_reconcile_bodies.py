"""The postbacks a status answer shows were due: pure, no I/O.

A status answer tells each participant's status and the document's; compared with
what the last look saw, every change is a postback Dokobit would have sent
(``docs/wire-notes.md#postback-body``). The bodies built here have the postback's
shape and, above all, its dedupe key (``docs/architecture.md#the-dedupe-key``):
``signer`` is the participant's token, as in the postbacks, and the once-per-signing
actions are keyed by ``(token, action)``. They carry the ``dokobit_async`` marker, so
``event.via`` is ``"reconciler"``.
"""

from __future__ import annotations

from typing import Any

from .events import MARKER
from .models import SigningStatus

__all__ = ["COMPLETED", "VIA_RECONCILER", "missed_postbacks", "seen_signers"]

VIA_RECONCILER = {MARKER: {"via": "reconciler"}}

_SIGNER_ACTIONS = {"signed": "signer_signed", "declined": "signer_declined"}

COMPLETED = frozenset({"completed", "archived"})
"""The document statuses of a completed signing: archiving follows the completion
(long-term signatures), and a first look may come after it (``_confirm.py`` agrees)."""


def seen_signers(status: SigningStatus) -> dict[str, str]:
    """Each participant's status in ``status``, by participant token."""
    return {s.token: str(s.status or "") for s in status.signers if s.token}


def missed_postbacks(
    token: str,
    status: SigningStatus,
    *,
    last_status: str,
    last_signers: dict[str, str] | Any,
    file_url: str,
) -> list[dict[str, Any]]:
    """The postback bodies for what changed since ``last_status``/``last_signers``,
    in the order Dokobit sends them: each participant's, then ``signing_completed``
    (whose ``file`` is ``file_url``, the signing's download address) when the
    signing is completed or already archived. ``signing_archived`` is not rebuilt:
    the status answer does not tell the archived file apart
    (``docs/architecture.md#reconciliation``)."""
    bodies: list[dict[str, Any]] = []
    for signer in status.signers:
        now = str(signer.status or "")
        action = _SIGNER_ACTIONS.get(now)
        if not signer.token or action is None or last_signers.get(signer.token) == now:
            continue
        info = {"code": signer.code, "country_code": signer.country}
        bodies.append(
            {
                "status": "ok",
                "token": token,
                "action": action,
                "signer": signer.token,
                "signer_info": {k: v for k, v in info.items() if v is not None},
                **VIA_RECONCILER,
            }
        )
    if str(status.status) in COMPLETED and last_status not in COMPLETED:
        completed = {"status": "ok", "token": token, "action": "signing_completed"}
        bodies.append({**completed, "file": file_url, **VIA_RECONCILER})
    return bodies
