"""Tests for ``dokobit_async.events``: parsing postbacks, duplicate keys, URL secrets.

The wire facts pinned here are in ``docs/wire-notes.md#postbacks``: a JSON body with an ``action``
(``#postback-body``), the actions (``#postback-actions``), retries of the same postback
(``#postback-delivery``) and no signature of Dokobit's own (``#postback-authenticity``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _profiles import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dokobit_async.events import (
    DocumentReceived,
    Event,
    SignerDeclined,
    SignerInfo,
    SignerSigned,
    SigningArchived,
    SigningArchiveFailed,
    SigningCompleted,
    SigningCreated,
    UnknownEvent,
    event_key,
    mint_postback_secret,
    parse_postback,
    verify_postback_secret,
)
from dokobit_async.exceptions import InvalidPostbackError

# Derandomized, no example database (tests/_profiles.py); 500 examples, scaled by
# the Hypothesis profile.
PROPERTY = settings(max_examples=examples(500), suppress_health_check=[HealthCheck.too_slow])


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def parse(payload: Any, content_type: str | None = "application/json") -> Event:
    return parse_postback(body_of(payload), content_type)


# The full example of docs/wire-notes.md#postback-body, verbatim but for concrete values.
GATEWAY_PAYLOAD: dict[str, Any] = {
    "status": "ok",
    "token": "3b0a2f0e-sign-token",
    "action": "signing_completed",
    "file": "https://beta.dokobit.com/api/signing/3b0a2f0e/download",
    "file_digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "valid_to": "2020-01-01 00:00:00",
    "signer": "signer-1",
    "signer_info": {
        "code": "51001091072",
        "phone": "+37060000666",
        "country_code": "lt",
        "signing_option": "mobile",
        "signing_time": "2020-01-01T00:00:00+02:00",
        "type": "qes",
    },
}


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(
    ("action", "cls"),
    [
        ("signing_created", SigningCreated),
        ("signer_signed", SignerSigned),
        ("signer_declined", SignerDeclined),
        ("signing_completed", SigningCompleted),
        ("signing_archived", SigningArchived),
        ("signing_archive_failed", SigningArchiveFailed),
        ("document_received", DocumentReceived),
    ],
)
def test_each_documented_action_parses_to_its_class(action: str, cls: type[Event]) -> None:
    """Every action of ``#postback-actions`` maps to its own class, with token and signer typed."""
    event = parse({"action": action, "token": "T", "signer": "S"})
    assert type(event) is cls
    assert action == cls.ACTION
    assert (event.action, event.token, event.signer) == (action, "T", "S")
    assert event.signer_info is None


@pytest.mark.parametrize("cls", [SigningCompleted, SigningArchived])
def test_file_actions_carry_file_and_digest(cls: type[Event]) -> None:
    """``signing_completed``/``signing_archived`` carry the signed ``file`` URL and its
    ``file_digest`` (``#postback-body``)."""
    event = parse(
        {"action": cls.ACTION, "token": "T", "file": "https://x/f.pdf", "file_digest": "ab12"}
    )
    assert isinstance(event, cls)
    assert event.file == "https://x/f.pdf"  # type: ignore[attr-defined]
    assert event.file_digest == "ab12"  # type: ignore[attr-defined]
    assert event.valid_to is None  # type: ignore[attr-defined]


def test_gateway_full_example_parses_completely() -> None:
    """The full example payload of ``#postback-body`` parses with every field typed."""
    event = parse(GATEWAY_PAYLOAD)
    assert isinstance(event, SigningCompleted)
    assert event.token == "3b0a2f0e-sign-token"
    assert event.signer == "signer-1"
    assert event.file == GATEWAY_PAYLOAD["file"]
    assert event.file_digest == GATEWAY_PAYLOAD["file_digest"]
    assert event.valid_to == "2020-01-01 00:00:00"
    info = event.signer_info
    assert isinstance(info, SignerInfo)
    assert (info.code, info.phone, info.country_code, info.signing_option, info.type) == (
        "51001091072",
        "+37060000666",
        "lt",
        "mobile",
        "qes",
    )
    assert info.signing_time == datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert info.signing_time.utcoffset() == timedelta(hours=2)
    assert dict(info.raw) == GATEWAY_PAYLOAD["signer_info"]
    # ``status`` is not a field of its own but is kept with everything else.
    assert dict(event.raw) == GATEWAY_PAYLOAD


def test_naive_or_zulu_signing_time_becomes_aware_utc() -> None:
    """``signing_time`` is always an aware datetime; a naive or ``Z`` time is UTC."""
    for text in ("2020-01-01 10:00:00", "2020-01-01T10:00:00Z"):
        info = parse({"action": "signer_signed", "signer_info": {"signing_time": text}})
        assert info.signer_info is not None
        assert info.signer_info.signing_time == datetime(2020, 1, 1, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize("action", ["signer_approved", "something_new"])
def test_unknown_action_becomes_unknown_event_with_raw(action: str) -> None:
    """An action this version does not know is an ``UnknownEvent``, not an error, and
    the whole body is in ``raw`` (design: forward compatibility)."""
    payload = {"action": action, "token": "T", "novel": {"nested": [1, 2]}, "n": 3}
    event = parse(payload)
    assert type(event) is UnknownEvent
    assert event.action == action
    assert event.token == "T"
    assert dict(event.raw) == payload


def test_only_action_is_required() -> None:
    """Every field but ``action`` is optional (``#postback-body``: tolerate missing fields)."""
    event = parse({"action": "signing_completed"})
    assert isinstance(event, SigningCompleted)
    assert (event.token, event.signer, event.signer_info) == (None, None, None)
    assert (event.file, event.file_digest, event.valid_to) == (None, None, None)


@pytest.mark.parametrize("empty", [None, ""])
def test_null_or_empty_text_fields_are_absent(empty: Any) -> None:
    """``null`` and ``""`` in ``token``/``signer``/``file`` mean "not sent"."""
    event = parse({"action": "signing_completed", "token": empty, "signer": empty, "file": empty})
    assert isinstance(event, SigningCompleted)
    assert (event.token, event.signer, event.file) == (None, None, None)


@pytest.mark.parametrize("empty", [None, "", []])
def test_empty_signer_info_is_absent(empty: Any) -> None:
    """``signer_info`` of ``null``, ``""`` or ``[]`` (PHP's empty array) is ``None``."""
    assert parse({"action": "signer_signed", "signer_info": empty}).signer_info is None


def test_signer_info_missing_fields_and_bad_time_are_none() -> None:
    """A partial ``signer_info`` leaves the rest ``None``; an unparseable
    ``signing_time`` is ``None`` rather than an error."""
    event = parse({"action": "signer_signed", "signer_info": {"code": "1", "signing_time": "?"}})
    assert event.signer_info == SignerInfo(code="1")


def test_unknown_fields_are_kept_in_raw() -> None:
    """Fields Dokobit adds later survive in ``raw`` (event and signer_info alike)."""
    payload = {
        "action": "signer_signed",
        "token": "T",
        "new_field": "v",
        "signer_info": {"code": "1", "certificate": "MII..."},
    }
    event = parse(payload)
    assert event.raw["new_field"] == "v"
    assert event.signer_info is not None
    assert event.signer_info.raw["certificate"] == "MII..."


def test_numeric_signer_and_codes_become_text() -> None:
    """A numeric ``signer`` (or ``signer_info.code``) is turned into text."""
    event = parse(
        {"action": "signer_signed", "token": 42, "signer": 7, "signer_info": {"code": 9}}
    )
    assert (event.token, event.signer) == ("42", "7")
    assert event.signer_info is not None
    assert event.signer_info.code == "9"


def test_received_at_defaults_to_now_and_can_be_given() -> None:
    """``received_at`` is an aware "now" by default, or what the caller passes."""
    before = datetime.now(timezone.utc)
    event = parse_postback(b'{"action": "x"}')
    assert before <= event.received_at <= datetime.now(timezone.utc)
    when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert parse_postback(b'{"action": "x"}', received_at=when).received_at == when


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_form_encoded_body_is_accepted(content_type: str | None) -> None:
    """A form body with ``signer_info[...]`` keys parses like the JSON equivalent."""
    event = parse_postback(b"action=signer_signed&token=T&signer_info[code]=123", content_type)
    assert isinstance(event, SignerSigned)
    assert event.token == "T"
    assert event.signer_info is not None
    assert event.signer_info.code == "123"
    assert dict(event.raw) == {
        "action": "signer_signed",
        "token": "T",
        "signer_info": {"code": "123"},
    }


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"],
)
def test_json_is_tried_first_whatever_the_content_type(content_type: str | None) -> None:
    """JSON is parsed regardless of the header (``#postback-body``: the header is undocumented)."""
    event = parse_postback(body_of({"action": "signer_signed", "token": "T"}), content_type)
    assert isinstance(event, SignerSigned)
    assert event.token == "T"


def test_utf8_bom_json_is_accepted() -> None:
    """A JSON body with a UTF-8 byte order mark still parses."""
    event = parse_postback(b"\xef\xbb\xbf" + body_of({"action": "signer_signed"}))
    assert isinstance(event, SignerSigned)


# --------------------------------------------------------------------------- garbage

GARBAGE: list[tuple[str, bytes, str | None]] = [
    ("empty body", b"", None),
    ("empty body as JSON", b"", "application/json"),
    ("non-JSON with JSON content type", b"action=signer_signed", "application/json"),
    ("non-JSON with JSON+charset", b"{nope", "Application/JSON; charset=utf-8"),
    ("JSON array", b'[{"action": "signer_signed"}]', None),
    ("JSON string", b'"signer_signed"', None),
    ("JSON number", b"42", None),
    ("JSON null", b"null", None),
    ("JSON true", b"true", None),
    ("object without action", b'{"token": "T"}', None),
    ("empty action", b'{"action": ""}', None),
    ("blank action", b'{"action": "  "}', None),
    ("action null", b'{"action": null}', None),
    ("action a number", b'{"action": 5}', None),
    ("action a list", b'{"action": ["signer_signed"]}', None),
    ("action an object", b'{"action": {"a": 1}}', None),
    ("token an object", b'{"action": "signer_signed", "token": {"a": 1}}', None),
    ("token a list", b'{"action": "signer_signed", "token": ["T"]}', None),
    ("token a bool", b'{"action": "signer_signed", "token": true}', None),
    ("token a float", b'{"action": "signer_signed", "token": 1.5}', None),
    ("signer a bool", b'{"action": "signer_signed", "signer": false}', None),
    ("file an object", b'{"action": "signing_completed", "file": {}}', None),
    ("signer_info a string", b'{"action": "signer_signed", "signer_info": "x"}', None),
    ("signer_info a number", b'{"action": "signer_signed", "signer_info": 1}', None),
    ("signer_info a list", b'{"action": "signer_signed", "signer_info": [1]}', None),
    ("signer_info.code an object", b'{"action":"x","signer_info":{"code":{}}}', None),
    ("invalid UTF-8", b'{"action": "\xff\xfe\xfd"}', None),
    ("invalid UTF-8 as JSON", b"\xc3\x28", "application/json"),
    ("invalid UTF-8 as form", b"action=\xff", None),
    ("not form either", b"{not json", None),
    ("form without action", b"token=T", None),
    ("form: value then object", b"action=x&signer_info=a&signer_info[code]=1", None),
    ("form: object then value", b"action=x&extra[a]=1&extra=2", None),
    ("form: too many fields", b"action=x&" + b"&".join(b"f%d=1" % i for i in range(200)), None),
    ("deeply nested JSON array", b"[" * 100_000, None),
    ("deeply nested JSON object", b'{"action": "x", "a": ' * 100_000, "application/json"),
]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [pytest.param(body, ctype, id=name) for name, body, ctype in GARBAGE],
)
def test_garbage_raises_invalid_postback_with_one_line_reason(
    body: bytes, content_type: str | None
) -> None:
    """Anything that is not a postback raises ``InvalidPostbackError`` (a ``ValueError``)
    whose ``reason`` is one non-empty line, never another exception."""
    with pytest.raises(InvalidPostbackError) as caught:
        parse_postback(body, content_type)
    reason = caught.value.reason
    assert isinstance(reason, str)
    assert reason.strip()
    assert "\n" not in reason
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------- properties

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ACTIONS = st.sampled_from(["signer_signed", "signing_completed", "signing_archived", "x", ""])
# Objects shaped like postbacks, so that the typed fields meet arbitrary values.
POSTBACK_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "action": ACTIONS | JSON_VALUES,
        "token": JSON_VALUES,
        "signer": JSON_VALUES,
        "file": JSON_VALUES,
        "file_digest": JSON_VALUES,
        "valid_to": JSON_VALUES,
        "signer_info": st.fixed_dictionaries(
            {},
            optional={
                name: JSON_VALUES
                for name in ("code", "phone", "country_code", "signing_option", "type")
            }
            | {"signing_time": st.text() | st.datetimes().map(str) | JSON_VALUES},
        )
        | JSON_VALUES,
    },
)
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/x-www-form-urlencoded"])


def _parses_or_rejects(body: bytes, content_type: str | None) -> None:
    reason: str | None = None
    try:
        event = parse_postback(body, content_type)
    except InvalidPostbackError as error:
        reason = error.reason
    if reason is None:
        assert isinstance(event, Event)
        assert re.fullmatch(r"[0-9a-f]{64}", event_key(event))
    else:
        assert reason.strip()
        assert "\n" not in reason


@PROPERTY
@given(body=st.binary(max_size=200), content_type=CONTENT_TYPES)
def test_arbitrary_bytes_parse_or_raise_invalid_postback(
    body: bytes, content_type: str | None
) -> None:
    """On any bytes, ``parse_postback`` returns an ``Event`` (with a key) or raises
    ``InvalidPostbackError``; nothing else escapes."""
    _parses_or_rejects(body, content_type)


@PROPERTY
@given(value=JSON_VALUES | POSTBACK_LIKE, content_type=CONTENT_TYPES)
def test_arbitrary_json_parses_or_raises_invalid_postback(
    value: Any, content_type: str | None
) -> None:
    """On any JSON value (including postback-shaped objects with wrongly typed fields),
    ``parse_postback`` returns an ``Event`` or raises ``InvalidPostbackError``."""
    _parses_or_rejects(json.dumps(value).encode(), content_type)


@PROPERTY
@given(
    pairs=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), min_size=0, max_size=8)
)
def test_arbitrary_form_bodies_parse_or_raise_invalid_postback(
    pairs: list[tuple[str, str]],
) -> None:
    """Form bodies, including ``a[b]`` keys in any order, never raise anything but
    ``InvalidPostbackError``."""
    from urllib.parse import urlencode

    _parses_or_rejects(urlencode(pairs).encode(), None)


# --------------------------------------------------------------------------- event_key

BASE = {"action": "signer_signed", "token": "T", "signer": "S"}


def key_of(payload: dict[str, Any]) -> str:
    return event_key(parse(payload))


def test_same_body_twice_has_same_key() -> None:
    """Parsing the same body twice (different ``received_at``) gives the same key."""
    first = parse_postback(body_of(GATEWAY_PAYLOAD))
    second = parse_postback(
        body_of(GATEWAY_PAYLOAD), received_at=datetime(2030, 1, 1, tzinfo=timezone.utc)
    )
    assert event_key(first) == event_key(second)
    assert re.fullmatch(r"[0-9a-f]{64}", event_key(first))


@pytest.mark.parametrize(
    "retry",
    [
        {**BASE, "status": "ok"},
        {**BASE, "signer_info": {"code": "1", "signing_time": "2020-01-01T00:00:00Z"}},
        {**BASE, "extra": [1, 2, 3]},
        dict(reversed(list(BASE.items()))),
    ],
    ids=["status added", "signer_info added", "unknown field", "reordered"],
)
def test_retry_of_same_postback_has_same_key(retry: dict[str, Any]) -> None:
    """Dokobit's retries repeat (token, action, signer); other fields do not change the
    key (``docs/architecture.md#the-dedupe-key``)."""
    assert key_of(retry) == key_of(BASE)


def test_completed_retry_with_changed_file_url_has_same_key() -> None:
    """A retry of ``signing_completed`` whose ``file`` URL differs is the same event."""
    changed = {**GATEWAY_PAYLOAD, "file": "https://elsewhere/file.pdf", "status": "retry"}
    assert key_of(changed) == key_of(GATEWAY_PAYLOAD)


def test_numeric_and_text_signer_share_key() -> None:
    """``signer`` 7 and ``"7"`` are the same signer (numbers become text first)."""
    assert key_of({**BASE, "signer": 7}) == key_of({**BASE, "signer": "7"})


@pytest.mark.parametrize(
    "other",
    [
        {**BASE, "action": "signer_declined"},
        {**BASE, "signer": "S2"},
        {**BASE, "token": "T2"},
        {"action": "signer_signed", "token": "T"},
    ],
    ids=["action", "signer", "token", "no signer"],
)
def test_different_action_signer_or_token_has_different_key(other: dict[str, Any]) -> None:
    """A different action, signer or token is a different event."""
    assert key_of(other) != key_of(BASE)


def test_tokenless_events_are_keyed_by_whole_body_regardless_of_key_order() -> None:
    """Without a token the whole body is the key: key order does not matter, any field
    (even nested) does."""
    one = b'{"action": "something_new", "a": 1, "b": {"x": 1, "y": 2}}'
    same = b'{"b": {"y": 2, "x": 1}, "a": 1, "action": "something_new"}'
    other = b'{"action": "something_new", "a": 1, "b": {"x": 1, "y": 3}}'
    assert event_key(parse_postback(one)) == event_key(parse_postback(same))
    assert event_key(parse_postback(one)) != event_key(parse_postback(other))
    assert event_key(parse_postback(one)) != event_key(parse_postback(b'{"action": "x"}'))


# --------------------------------------------------------------------------- secrets

SECRET = b"receiver-secret"


def test_minted_segment_verifies_under_its_secret_only() -> None:
    """A minted ``nonce.mac`` verifies under its secret and under no other."""
    segment = mint_postback_secret(SECRET)
    assert re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", segment)
    assert verify_postback_secret(SECRET, segment) is True
    assert verify_postback_secret(b"another-secret", segment) is False
    assert verify_postback_secret(b"", segment) is False


def test_two_mints_differ() -> None:
    """Each mint has a fresh nonce (so each postback URL is unique)."""
    segments = {mint_postback_secret(SECRET) for _ in range(20)}
    assert len(segments) == 20


def _flip(text: str, index: int) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1 :]


GOOD = mint_postback_secret(SECRET)
NONCE, MAC = GOOD.split(".")

BAD_SEGMENTS = {
    "tampered nonce first char": f"{_flip(NONCE, 0)}.{MAC}",
    "tampered nonce last char": f"{_flip(NONCE, 31)}.{MAC}",
    "tampered mac": f"{NONCE}.{_flip(MAC, 5)}",
    "swapped halves": f"{MAC}.{NONCE}",
    "nonce too short": f"{NONCE[:-1]}.{MAC}",
    "nonce too long": f"{NONCE}0.{MAC}",
    "mac too short": f"{NONCE}.{MAC[:-1]}",
    "mac too long": f"{NONCE}.{MAC}0",
    "full-length hmac": f"{NONCE}.{MAC}{'0' * 32}",
    "empty": "",
    "only a dot": ".",
    "missing dot": NONCE + MAC,
    "nonce only": NONCE,
    "empty mac": f"{NONCE}.",
    "empty nonce": f".{MAC}",
    "extra dot at end": f"{GOOD}.",
    "extra dot segment": f"{GOOD}.{MAC}",
    "dot inside mac": f"{NONCE}.{MAC[:16]}.{MAC[17:]}",
    "upper-case mac": f"{NONCE}.{MAC.upper()}" if MAC.upper() != MAC else f"{NONCE}.{'G' * 32}",
    "non-hex mac": f"{NONCE}.{'z' * 32}",
    "non-hex nonce": f"{'z' * 32}.{MAC}",
    "non-ASCII mac": f"{NONCE}.{'é' * 32}",
    "non-ASCII nonce": f"{'é' * 32}.{MAC}",
    "whitespace around": f" {GOOD} ",
    "NUL in mac": f"{NONCE}.{MAC[:-1]}\x00",
}


@pytest.mark.parametrize("segment", list(BAD_SEGMENTS.values()), ids=list(BAD_SEGMENTS))
def test_bad_segments_are_rejected_without_exception(segment: str) -> None:
    """Tampered, mis-sized, mis-dotted or non-hex segments verify ``False``, never raise
    (the receiver answers 404, not 500)."""
    assert verify_postback_secret(SECRET, GOOD) is True
    assert verify_postback_secret(SECRET, segment) is False


@PROPERTY
@given(
    segment=st.text(max_size=80)
    | st.builds(
        "{}.{}".format,
        st.text(min_size=32, max_size=32),
        st.text(min_size=32, max_size=32),
    )
)
def test_verify_never_raises_on_arbitrary_text(segment: str) -> None:
    """``verify_postback_secret`` answers a bool for any text at all."""
    assert verify_postback_secret(SECRET, segment) is False


def test_postbacks_without_a_signer_are_keyed_by_their_whole_body() -> None:
    """Where the signer is not named, two people's ``signer_signed`` of one signing
    must not collapse into one "duplicate"; a byte-identical retry still does."""
    first = b'{"action": "signer_signed", "token": "T", "signer_info": {"code": "1"}}'
    second = b'{"action": "signer_signed", "token": "T", "signer_info": {"code": "2"}}'
    assert event_key(parse_postback(first)) != event_key(parse_postback(second))
    assert event_key(parse_postback(first)) == event_key(parse_postback(first))
