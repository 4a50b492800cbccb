"""Helpers for your own tests of a postback receiver: bodies and URLs as Dokobit's.

A receiver is easiest to test by posting to it what Dokobit would post: a body for
any event (:func:`postback_body`), sent to a URL minted under the receiver's secret
(:func:`postback_url`, the same as ``PostbackReceiver.postback_url``), or checked
against one (:func:`verify_postback_url`)::

    url = postback_url(base_url, secret)
    body = postback_body(SigningCompleted, token="signing-1", file=file_url)
    async with session.post(url, data=body,
                            headers={"Content-Type": "application/json"}) as answer:
        assert answer.status == 200
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .._postback_keys import postback_keys
from ..events import (
    EVENT_TYPES,
    POSTBACK_PATH,
    Event,
    SignerDeclined,
    SignerSigned,
    mint_postback_secret,
    parse_postback,
    verify_postback_secret,
)
from ..exceptions import InvalidArgumentError

__all__ = ["DEFAULT_PATH", "postback_body", "postback_url", "verify_postback_url"]

DEFAULT_PATH = POSTBACK_PATH
"""The receiver's default path."""


def postback_body(
    event: type[Event] | str,
    *,
    token: str = "test-signing-token",  # noqa: S107 - a signing token in test data
    signer: str | None = None,
    signer_info: Mapping[str, Any] | None = None,
    file: str | None = None,
    file_digest: str | None = None,
    form: bool = False,
    **fields: Any,
) -> bytes:
    """A valid postback body for ``event``, as Dokobit would POST it.

    Args:
        event: An event class (``SigningCompleted``) or an action string (any
            string: an unknown one makes an ``UnknownEvent``).
        token: The signing (or e-delivery) token.
        signer: The participant; for ``SignerSigned`` and ``SignerDeclined`` it
            defaults to ``"test-signer"``.
        signer_info: ``signer_info`` (who signed and how), as a mapping.
        file: The signed file's URL (completed and archived signings).
        file_digest: The signed file's SHA-256, in hex.
        form: Form-encode the body (``application/x-www-form-urlencoded``) instead
            of JSON (``application/json``); send the matching ``Content-Type``.
        **fields: Any other fields, kept as given (they end up in ``event.raw``).

    Returns:
        bytes: The body. It parses back (``parse_postback``) into ``event``.

    Raises:
        InvalidArgumentError: What was given is not a postback (e.g. a ``token`` of
            ``..``, or a field of the wrong type).
    """
    action = event if isinstance(event, str) else event.ACTION
    if not action:
        raise InvalidArgumentError(f"{event!r} has no action: pass an event class or a string")
    if signer is None and EVENT_TYPES.get(action) in (SignerSigned, SignerDeclined):
        signer = "test-signer"
    payload: dict[str, Any] = {"action": action, "token": token, **fields}
    for name, value in (
        ("signer", signer),
        ("signer_info", signer_info),
        ("file", file),
        ("file_digest", file_digest),
    ):
        if value is not None:
            payload[name] = dict(value) if isinstance(value, Mapping) else value
    if form:
        pairs: list[tuple[str, Any]] = []
        for name, value in payload.items():
            if isinstance(value, Mapping):  # signer_info[code]=...
                pairs += [(f"{name}[{key}]", item) for key, item in value.items()]
            else:
                pairs.append((name, value))
        body = urlencode(pairs).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = json.dumps(payload, separators=(",", ":")).encode()
        content_type = "application/json"
    try:
        parse_postback(body, content_type)  # what we hand out must be a postback
    except ValueError as exc:
        raise InvalidArgumentError(f"not a valid postback: {exc}") from None
    return body


def _key(secret: bytes | str) -> bytes:
    """``secret`` checked as the receiver checks its own (one secret here)."""
    return postback_keys((secret,), ("secret",))[0]


def postback_url(public_base_url: str, secret: bytes | str, *, path: str = DEFAULT_PATH) -> str:
    """A postback URL minted under ``secret``, as ``PostbackReceiver.postback_url``
    makes it: ``public_base_url``, ``path``, then a fresh ``nonce.mac`` segment.

    Treat it as a secret: it is what makes a postback authentic.

    Raises:
        InvalidArgumentError: ``secret`` is not bytes or text, or is shorter than the
            receiver accepts (16 bytes).
    """
    segment = mint_postback_secret(_key(secret))
    return f"{public_base_url.rstrip('/')}{path}/{segment}"


def verify_postback_url(url: str, secret: bytes | str, *, path: str = DEFAULT_PATH) -> bool:
    """Whether ``url`` is a postback URL minted under ``secret`` for ``path``
    (compared in constant time).

    Raises:
        InvalidArgumentError: ``secret`` is not one the receiver accepts, as for
            :func:`postback_url`.
    """
    route, _, segment = urlsplit(url).path.rpartition("/")
    return route.endswith(path) and verify_postback_secret(_key(secret), segment)
