"""``export_jsonl``: what an inbox holds, as JSON Lines, on a real SQLite file and a
real Redis server, with no secret in any spelling: hostile bodies carrying the
access token (raw, percent-encoded, JSON- and HTML-escaped, in a form body, in bytes
that are not UTF-8) and stored errors that quote it or a postback URL's secret."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dokobit_async.events import mint_postback_secret
from dokobit_async.exceptions import InvalidArgumentError
from dokobit_async.inbox import Inbox, SQLiteInbox, export_jsonl
from dokobit_async.redis import RedisInbox

TOKEN = "tok/en+Secret=42"  # characters that every encoding changes
SEGMENT = mint_postback_secret(b"postback-key-0123456789")
URL = f"https://app.example/dokobit/postback/{SEGMENT}?access_token={TOKEN}"
J, F = "application/json", "application/x-www-form-urlencoded"
JSON_ESCAPED = "".join(f"\\u{ord(c):04x}" for c in TOKEN)
HTML_ESCAPED = "".join(f"&#{ord(c)};" for c in TOKEN)
EVENTS: list[tuple[str, str, str, bytes, float]] = [  # id, action, type, body, at
    ("plain", "signer_signed", J, b'{"action": "signer_signed", "token": "sig-1", "n": [1]}', 100),
    (
        "hostile",
        "signer_signed",
        J,
        json.dumps(
            {
                "action": "signer_signed",
                "token": "sig-1",
                "note": f"raw {TOKEN} pct {quote(TOKEN, safe='')} twice "
                f"{quote(quote(TOKEN, safe=''), safe='')} html {HTML_ESCAPED}",
                TOKEN: {"url": URL, "deep": [f"x{TOKEN}y"]},
            }
        )
        .replace(TOKEN, JSON_ESCAPED, 1)
        .encode(),
        200,
    ),
    ("form", "signing_completed", F, f"action=signing_completed&x={TOKEN}&u={URL}".encode(), 300),
    ("binary", "signer_declined", J, b"\xff\xfe" + TOKEN.encode() + b"\x00" + URL.encode(), 400),
]
SPELLINGS = [  # how the token could still show
    TOKEN,
    quote(TOKEN, safe=""),
    quote(quote(TOKEN, safe=""), safe=""),
    JSON_ESCAPED,
    HTML_ESCAPED,
    TOKEN.replace("+", " "),
]


@pytest.fixture(params=["sqlite", "redis"])
async def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inbox]:
    """A real inbox holding :data:`EVENTS`: "plain" done by two handlers, "hostile"
    dead with an error that quotes the token and the URL, "form" pending, "binary"
    done and replayed once."""
    made: Inbox
    if request.param == "sqlite":
        made = SQLiteInbox(tmp_path / "pb.db")
    else:
        made = RedisInbox(request.getfixturevalue("redis_url"))
    async with made as box:
        for id, action, ctype, body, at in EVENTS:
            await box.add(
                id=id,
                signing_token="sig-1",
                action=action,
                body=body,
                content_type=ctype,
                received_at=at,
            )
        await box.record_attempt("plain", handlers_done=["email", "audit"], state="done")
        error = f"email: RuntimeError: {URL} refused token {TOKEN}"
        await box.record_attempt("hostile", failed=True, error=error, state="dead")
        await box.record_attempt("binary", handlers_done=["email"], state="done")
        assert await box.replay(["binary"], handler="email") == 1
        await box.record_attempt("binary", handlers_done=["email"], state="done")
        yield box


async def exported(inbox: Inbox, **options: Any) -> tuple[int, str, list[dict[str, Any]]]:
    """export_jsonl into memory: the count, the text and its records."""
    out = io.StringIO()
    count = await export_jsonl(inbox, out, secrets=(TOKEN,), **options)
    text = out.getvalue()
    return count, text, [json.loads(line) for line in text.splitlines()]


def strings(value: Any) -> Iterator[str]:
    """Every string in decoded JSON, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


async def test_export_writes_every_event_as_the_inbox_holds_it(inbox: Inbox) -> None:
    """One line per event, by seq, with every field of the event as stored; a JSON
    body as its value, any other body in base64 (redacted first)."""
    count, text, records = await exported(inbox)
    assert count == len(records) == len(EVENTS) == len(text.splitlines())
    assert text.isascii()
    assert text.endswith("\n")
    stored = {event.id: event for event in await inbox.list()}
    assert [r["id"] for r in records] == ["plain", "hostile", "form", "binary"]
    for record in records:
        event = stored[record["id"]]
        assert record["seq"] == event.seq
        assert (record["signing_token"], record["action"]) == ("sig-1", event.action)
        assert (record["state"], record["attempts"]) == (event.state, event.attempts)
        assert (record["replays"], record["replay_handler"]) == (
            event.replays,
            event.replay_handler,
        )
        assert record["handlers_done"] == sorted(event.handlers_done)
        assert record["content_type"] == event.content_type
        when = datetime.fromisoformat(record["received_at"])
        assert when == datetime.fromtimestamp(event.received_at, tz=timezone.utc)
    plain, hostile, form, binary = records
    assert plain["body_encoding"] == "json"
    assert plain["body"] == json.loads(EVENTS[0][3])
    assert plain["handlers_done"] == ["audit", "email"]
    assert (plain["last_error"], hostile["state"], hostile["attempts"]) == (None, "dead", 1)
    assert (binary["replays"], binary["replay_handler"]) == (1, "email")
    assert form["body_encoding"] == binary["body_encoding"] == "base64"
    assert base64.b64decode(form["body"]).startswith(b"action=signing_completed&x=***&u=")
    assert base64.b64decode(binary["body"]).startswith(b"\xff\xfe***\x00https://app.example/")


async def test_no_secret_leaves_in_any_spelling(inbox: Inbox) -> None:
    """Neither the access token (in any spelling a body or an error carried it) nor a
    postback URL's secret segment appears in the export: not in its text, not in any
    string of its records, not in a base64 body once decoded."""
    _, text, records = await exported(inbox)
    seen = [text]
    for record in records:
        seen += list(strings(record))
        if record["body_encoding"] == "base64":
            seen.append(base64.b64decode(record["body"]).decode("latin-1"))
    for shown in seen:
        for spelling in SPELLINGS:
            assert spelling not in shown
        assert SEGMENT not in shown
        assert SEGMENT.split(".")[1] not in shown
    hostile = records[1]
    assert "***" in hostile["last_error"]
    assert "***" in hostile["body"]  # the key that was the token
    assert hostile["body"]["***"]["deep"] == ["x***y"]


async def test_export_chooses_by_state_time_and_action(inbox: Inbox) -> None:
    """state, received_after (inclusive), received_before (exclusive) and action
    choose the events exported; together, every one must hold."""

    async def ids(**options: Any) -> list[str]:
        count, _, records = await exported(inbox, **options)
        assert count == len(records)
        return [r["id"] for r in records]

    assert await ids(state="done") == ["plain", "binary"]
    assert await ids(state="dead") == ["hostile"]
    assert await ids(received_after=200, received_before=400) == ["hostile", "form"]
    assert await ids(action="signer_signed") == ["plain", "hostile"]
    assert await ids(state="done", action="signer_signed", received_after=150) == []
    with pytest.raises(InvalidArgumentError):
        await ids(state="finished")


async def test_an_export_of_more_than_a_page_writes_each_event_once(tmp_path: Path) -> None:
    """1,200 events (more than two pages of 500) are each written once, by seq."""
    async with SQLiteInbox(tmp_path / "pb.db") as inbox:
        for n in range(1200):
            await inbox.add(
                id=f"e{n:04}",
                signing_token="",
                action="signer_signed",
                body=b"{}",
                content_type=J,
                received_at=float(n),
            )
        count, _, records = await exported(inbox)
        assert count == 1200
        assert [r["id"] for r in records] == [f"e{n:04}" for n in range(1200)]
