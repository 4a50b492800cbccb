"""Export of an inbox's events as JSON Lines: :func:`export_jsonl`.

For audit, or to load the events elsewhere: one JSON object per event, by ``seq``,
read a page at a time (``Inbox.list(after_seq=...)``), so an inbox of any size is
exported in bounded memory, from a listener's file while it runs too.

Nothing secret leaves: every string of a record (the body's too, at any depth) goes
through the library's redaction (``_redact``), which masks each of ``secrets`` (the
access token, a postback secret) in every spelling it knows (raw, percent-encoded,
form-encoded, JSON- and HTML-escaped), any ``access_token`` parameter and the secret
segment of any postback URL. A body that is not JSON is redacted as bytes first and
only then encoded in base64, where no redaction could find a secret any more.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

from ._inbox_base import Inbox, InboxState, StoredEvent, check_state
from ._inbox_replay import Selection
from ._redact import redact_bytes, redact_data

__all__ = ["export_jsonl", "export_record"]

_PAGE = 500  # events read per list() call


def _not_json(constant: str) -> Any:
    """``NaN`` and ``Infinity`` parse in Python only: such a body is not JSON."""
    raise ValueError(f"not JSON: {constant}")


def export_record(event: StoredEvent, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """One event as :func:`export_jsonl` writes it (a JSON object), redacted."""
    secrets = tuple(secrets)
    try:
        body: Any = json.loads(event.body, parse_constant=_not_json)
        encoding = "json"
    except ValueError:  # (UnicodeDecodeError too) kept exact, but redacted first
        body = base64.b64encode(redact_bytes(event.body, secrets)).decode("ascii")
        encoding = "base64"
    record = {
        "id": event.id,
        "seq": event.seq,
        "signing_token": event.signing_token,
        "action": event.action,
        "state": event.state,
        "attempts": event.attempts,
        "replays": event.replays,
        "replay_handler": event.replay_handler,
        "received_at": datetime.fromtimestamp(event.received_at, tz=timezone.utc).isoformat(),
        "last_error": event.last_error,
        "handlers_done": sorted(event.handlers_done),
        "content_type": event.content_type,
        "body_encoding": encoding,
    }
    redacted: dict[str, Any] = redact_data(record, secrets)
    redacted["body"] = body if encoding == "base64" else redact_data(body, secrets)
    return redacted


async def export_jsonl(
    inbox: Inbox,
    out: TextIO,
    *,
    state: InboxState | None = None,
    received_after: float | None = None,
    received_before: float | None = None,
    action: str | None = None,
    secrets: Iterable[str] = (),
) -> int:
    """Write the inbox's events to ``out`` as JSON Lines, oldest first; how many.

    Each line is one event: ``id``, ``seq``, ``signing_token``, ``action``, ``state``,
    ``attempts``, ``replays``, ``replay_handler``, ``received_at`` (ISO 8601, UTC),
    ``last_error``, ``handlers_done`` (sorted), ``content_type``, and the ``body``:
    the decoded JSON value when it parses (``"body_encoding": "json"``), else the
    bytes in base64 (``"body_encoding": "base64"``). Every string is redacted:
    ``secrets`` (the access token, the postback secrets) in every spelling the library
    masks, any ``access_token`` parameter, any postback URL's secret segment.

    Args:
        inbox: An open inbox (read a page at a time; ``out`` is written once a page).
        out: A text sink: a file opened for text, ``sys.stdout``, ``io.StringIO``.
        state: Only events in this state.
        received_after: Only events received at or after this unix time.
        received_before: Only events received before this unix time.
        action: Only events of this action.
        secrets: What to mask besides what the library always masks.

    Returns:
        int: The events written.

    Raises:
        InvalidArgumentError: An unknown ``state``, or a condition of the wrong type.
        InboxError: The inbox cannot be read.
    """
    if state is not None:
        check_state(state)
    selection = Selection(
        received_after=received_after, received_before=received_before, action=action
    )
    secrets = tuple(secrets)
    written, after = 0, 0
    while page := await inbox.list(state=state, limit=_PAGE, after_seq=after):
        lines = [
            json.dumps(export_record(event, secrets)) + "\n"  # (ASCII: \u escapes)
            for event in page
            if selection.matches(event)
        ]
        if lines:
            out.write("".join(lines))
        written += len(lines)
        after = page[-1].seq
    return written
