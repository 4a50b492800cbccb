"""Postback events: what Dokobit POSTs to a signing's ``postback_url``, typed.

Dokobit sends a JSON object with an ``action`` and, depending on the action, the
signing ``token``, the ``signer``, ``signer_info``, and for a completed or archived
signing the signed ``file`` URL and its ``file_digest``
(``docs/wire-notes.md#postback-body``). Every field but ``action`` is optional here,
unknown fields are kept in ``raw``, and an action this version does not know becomes
:class:`UnknownEvent` instead of an error.

Everything in this module is pure: :func:`parse_postback` turns bytes into an event,
:func:`event_key` gives the key that duplicates share, and :func:`mint_postback_secret`
/ :func:`verify_postback_secret` make and check the unguessable part of the
``postback_url`` (Dokobit's postbacks carry no signature of their own).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import attrs

from ._convert import parse_datetime
from .exceptions import InvalidPostbackError

__all__ = [
    "POSTBACK_PATH",
    "DocumentReceived",
    "Event",
    "SignerDeclined",
    "SignerInfo",
    "SignerSigned",
    "SigningArchiveFailed",
    "SigningArchived",
    "SigningCompleted",
    "SigningCreated",
    "UnknownEvent",
    "event_key",
    "is_valid_token",
    "mint_postback_secret",
    "parse_postback",
    "verify_postback_secret",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

MARKER = "dokobit_async"
"""The body field under which the reconciler marks the postbacks it rebuilt."""

ONCE_PER_SIGNING = frozenset(
    {"signing_created", "signing_completed", "signing_archived", "signing_archive_failed"}
)
"""The actions that happen at most once per signing: keyed by ``(token, action)``."""


@attrs.frozen(kw_only=True)
class SignerInfo:
    """Who signed and how (``signer_info`` of a postback); fields as Dokobit sends."""

    code: str | None = None
    phone: str | None = None
    country_code: str | None = None
    signing_option: str | None = None
    signing_time: datetime | None = None
    type: str | None = None
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, repr=False, eq=False)


@attrs.frozen(kw_only=True)
class Event:
    """Base of every postback event.

    ``token`` is the signing (or e-delivery) token, ``signer`` the participant's
    identifier as Dokobit sends it, ``received_at`` when the receiver got it, and
    ``raw`` the whole decoded body. ``replay`` is 0 on a first delivery (and its
    retries) and N when the event comes again because it was replayed for the Nth
    time (``dokobit-async inbox replay``, :meth:`Inbox.replay
    <dokobit_async.inbox.Inbox.replay>`); it takes no part in equality, so a
    replayed event equals its first delivery.
    """

    ACTION: ClassVar[str] = ""

    action: str
    token: str | None = None
    signer: str | None = None
    signer_info: SignerInfo | None = None
    received_at: datetime = attrs.field(factory=lambda: datetime.now(timezone.utc))
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, repr=False, eq=False)
    replay: int = attrs.field(default=0, eq=False)

    @property
    def via(self) -> str:
        """``"reconciler"`` when the reconciler rebuilt this event from a status answer
        (a postback that never arrived), else ``"postback"``.

        Read from the body's ``dokobit_async`` marker (``docs/architecture.md#reconciliation``).
        A sender that forges the marker changes nothing but this attribute: the key,
        the order and the handlers are the same either way.
        """
        marker = self.raw.get(MARKER)
        if isinstance(marker, Mapping) and marker.get("via") == "reconciler":
            return "reconciler"
        return "postback"


@attrs.frozen(kw_only=True)
class SigningCreated(Event):
    """``signing_created``: the signing exists."""

    ACTION: ClassVar[str] = "signing_created"


@attrs.frozen(kw_only=True)
class SignerSigned(Event):
    """``signer_signed``: one participant signed."""

    ACTION: ClassVar[str] = "signer_signed"


@attrs.frozen(kw_only=True)
class SignerDeclined(Event):
    """``signer_declined``: one participant declined."""

    ACTION: ClassVar[str] = "signer_declined"


@attrs.frozen(kw_only=True)
class _WithFile(Event):
    file: str | None = None
    """URL of the signed file; fetch it with ``client.download_file`` (adds the token)."""
    file_digest: str | None = None
    """Hex SHA-256 of the signed file, when Dokobit sends it."""
    valid_to: str | None = None


@attrs.frozen(kw_only=True)
class SigningCompleted(_WithFile):
    """``signing_completed``: every signer signed; ``file`` is the signed document."""

    ACTION: ClassVar[str] = "signing_completed"


@attrs.frozen(kw_only=True)
class SigningArchived(_WithFile):
    """``signing_archived``: the long-term (LTV) version is ready at ``file``."""

    ACTION: ClassVar[str] = "signing_archived"


@attrs.frozen(kw_only=True)
class SigningArchiveFailed(Event):
    """``signing_archive_failed``: the long-term archiving failed."""

    ACTION: ClassVar[str] = "signing_archive_failed"


@attrs.frozen(kw_only=True)
class DocumentReceived(Event):
    """``document_received``: an e-delivery recipient confirmed receipt."""

    ACTION: ClassVar[str] = "document_received"


@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """Any action this version does not know; everything is in ``raw``."""


EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType(
    {
        cls.ACTION: cls
        for cls in (
            SigningCreated,
            SignerSigned,
            SignerDeclined,
            SigningCompleted,
            SigningArchived,
            SigningArchiveFailed,
            DocumentReceived,
        )
    }
)


def _text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return _encodable(name, str(value))
    raise InvalidPostbackError(f"field {name!r} must be text, not {type(value).__name__}")


def is_valid_token(value: object) -> bool:
    """Whether ``value`` can be a Dokobit token (signing, signer or validation token).

    A non-blank string that is not ``.`` or ``..`` (surrounding whitespace ignored):
    quoted into a path, those would be dot segments, and aiohttp resolves
    ``/api/signing-external/../status.json`` to ``/api/status.json``. Every other
    character is quoted, ``/`` included, so no other token can change the path. The
    client refuses such tokens as arguments, the receiver as a postback's ``token``.
    """
    return isinstance(value, str) and value.strip() not in ("", ".", "..")


def _encodable(name: str, text: str) -> str:
    """JSON escapes can carry lone surrogates, which no UTF-8 store accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPostbackError(f"field {name!r} is not valid Unicode text") from None
    return text


def _signer_info(value: Any) -> SignerInfo | None:
    if value is None or value == "" or value == []:
        return None
    if not isinstance(value, Mapping):
        raise InvalidPostbackError("field 'signer_info' must be an object")
    texts = {
        name: _text(value, name)
        for name in ("code", "phone", "country_code", "signing_option", "type")
    }
    return SignerInfo(
        **texts,
        signing_time=parse_datetime(value.get("signing_time")),
        raw=MappingProxyType(dict(value)),
    )


def _decode(body: bytes, content_type: str | None) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        if body.lstrip()[:1] in (b"[", b"{"):
            raise InvalidPostbackError("the body is not valid JSON") from None
    if "json" in (content_type or "").lower():
        raise InvalidPostbackError("the body is not valid JSON")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise InvalidPostbackError("the body is neither JSON nor form-encoded") from None
    decoded: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("]") and "[" in key:  # signer_info[code]=... (one level)
            outer, inner = key[:-1].split("[", 1)
            nested = decoded.setdefault(outer, {})
            if not isinstance(nested, dict):
                raise InvalidPostbackError(f"field {outer!r} is both a value and an object")
            nested[inner] = value
        elif isinstance(decoded.get(key), dict):
            raise InvalidPostbackError(f"field {key!r} is both a value and an object")
        else:
            decoded[key] = value
    return decoded


def parse_postback(
    body: bytes, content_type: str | None = None, *, received_at: datetime | None = None
) -> Event:
    """The event in a postback body: JSON first, form-encoded accepted too.

    Raises :class:`~dokobit_async.exceptions.InvalidPostbackError` (with a one-line
    ``reason``) for anything that is not a postback: not an object, no ``action``,
    wrongly typed fields, a ``token`` that is blank, ``.`` or ``..``.
    """
    payload = _decode(body, content_type)
    if not isinstance(payload, Mapping):
        raise InvalidPostbackError("the body is not a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action.strip():
        raise InvalidPostbackError("the body has no 'action'")
    _encodable("action", action)
    cls = EVENT_TYPES.get(action, UnknownEvent)
    token = _text(payload, "token")
    if token is not None and not is_valid_token(token):
        raise InvalidPostbackError("field 'token' is blank, '.' or '..': not a signing token")
    fields: dict[str, Any] = {
        "action": action,
        "token": token,
        "signer": _text(payload, "signer"),
        "signer_info": _signer_info(payload.get("signer_info")),
        "raw": MappingProxyType(dict(payload)),
    }
    if received_at is not None:
        fields["received_at"] = received_at
    if issubclass(cls, _WithFile):
        fields.update(
            file=_text(payload, "file"),
            file_digest=_text(payload, "file_digest"),
            valid_to=_text(payload, "valid_to"),
        )
    return cls(**fields)


def event_key(event: Event) -> str:
    """The key that all copies of one postback share (Dokobit's retries repeat it).

    ``(token, action)`` for the actions that happen once per signing
    (``signing_created``, ``signing_completed``, ``signing_archived``,
    ``signing_archive_failed``); ``(token, action, signer)`` when there is a token and
    a signer; otherwise the whole body (Dokobit's retries repeat it byte for byte).
    The reconciler rebuilds a missed postback with the same key, so a handler runs
    once whichever copy is stored first (``docs/architecture.md#the-dedupe-key``).
    Without a signer, ``(token, action)`` alone would merge the postbacks of different
    people, and where the signer is named is only inferred for the Universal API.
    """
    if event.token and event.action in ONCE_PER_SIGNING:
        basis: Any = [event.token, event.action]
    elif event.token and event.signer:
        basis = [event.token, event.action, event.signer]
    else:
        basis = dict(event.raw)
    canonical = json.dumps(basis, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def inbox_fields(event: Event) -> dict[str, str]:
    """What an inbox files ``event`` under: its key, signing token and action (the
    receiver's HTTP path and its ``store`` share it)."""
    return {"id": event_key(event), "signing_token": event.token or "", "action": event.action}


POSTBACK_PATH = "/dokobit/postback"
"""Where a receiver listens by default; the minted secret is the segment after it."""

_NONCE_BYTES = 16
_MAC_CHARS = 32
SECRET_SEGMENT = re.compile(rf"[0-9a-f]{{{2 * _NONCE_BYTES}}}\.[0-9a-f]{{{_MAC_CHARS}}}")
"""The shape of a minted ``nonce.mac`` segment (logs mask anything that matches)."""


def _mac(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()[:_MAC_CHARS]


def mint_postback_secret(secret: bytes) -> str:
    """A fresh ``nonce.mac`` path segment for a ``postback_url``."""
    nonce = secrets.token_hex(_NONCE_BYTES)
    return f"{nonce}.{_mac(secret, nonce)}"


def verify_postback_secret(secret: bytes | Sequence[bytes], segment: str) -> bool:
    """Whether ``segment`` was minted under ``secret``, or under any one of several
    secrets (``docs/architecture.md#rotating-the-postback-secret``).

    Each comparison is constant-time, and every secret is tried even after one
    matched: the time taken does not tell which one did.
    """
    if not SECRET_SEGMENT.fullmatch(segment):
        return False
    nonce, _, mac = segment.partition(".")
    keys = (secret,) if isinstance(secret, bytes) else secret
    matches = [hmac.compare_digest(_mac(key, nonce), mac) for key in keys]
    return any(matches)
