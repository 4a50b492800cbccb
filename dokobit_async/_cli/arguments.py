"""Arguments of the ``dokobit-async`` command, shared by all its sub-commands: the
argument types, and the helper type through which each module adds its parsers.

Each argument type is an argparse ``type``: a value it refuses raises
``argparse.ArgumentTypeError``, which the parser turns into a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Collection, Iterator
from datetime import datetime

from ..models import Annotation, ExternalSigner, InternalSigner, Recipient

__all__ = [
    "ANNOTATION_KEYS",
    "EXTERNAL_SIGNER_KEYS",
    "INTERNAL_SIGNER_KEYS",
    "RECIPIENT_KEYS",
    "Command",
    "aware_datetime",
    "key_values",
    "non_negative",
    "parse_annotation",
    "parse_recipient",
    "parse_signer",
    "port_number",
    "positive_seconds",
    "whole_number",
]

EXTERNAL_SIGNER_KEYS = frozenset(
    f.name for f in ExternalSigner.__attrs_attrs__ if f.name != "annotation"
)
"""The ``--signer`` keys of an external signing: :class:`ExternalSigner`'s fields."""
INTERNAL_SIGNER_KEYS = frozenset(
    f.name for f in InternalSigner.__attrs_attrs__ if f.name != "annotation"
)
"""The ``--signer`` keys of an internal signing: :class:`InternalSigner`'s fields."""
RECIPIENT_KEYS = frozenset(f.name for f in Recipient.__attrs_attrs__)
"""The ``--recipient`` keys of an e-delivery: :class:`Recipient`'s fields."""
ANNOTATION_KEYS = frozenset(f.name for f in Annotation.__attrs_attrs__)
"""The ``--annotation`` keys of a seal: :class:`Annotation`'s fields."""

Command = Callable[..., argparse.ArgumentParser]
"""``cli.build_parser``'s helper that adds a sub-command's parser:
``command(name, helptext, *, uses_api=True)``."""


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0 picks a free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def non_negative(text: str) -> float:
    """argparse type: a number >= 0 (seconds, a time scale)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text!r}")
    return value


def whole_number(minimum: int = 0) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum`` (a count, a limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}: {text!r}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (a timeout)."""
    try:
        value = non_negative(text)
    except argparse.ArgumentTypeError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0: {text!r}")
    return value


def aware_datetime(text: str) -> datetime:
    """argparse type: an ISO 8601 date and time with its offset
    (``2030-01-31T17:00:00+02:00``; ``Z`` for UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date and time: {text!r}") from None
    if value.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"give the offset too (e.g. +02:00 or Z), a bare time is ambiguous: {text!r}"
        )
    return value


def _split_pairs(text: str) -> Iterator[str]:
    """Split on commas; ``\\,`` is a literal comma and ``\\\\`` a backslash."""
    item: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            item.append(next(chars, "\\"))
        elif char == ",":
            yield "".join(item)
            item = []
        else:
            item.append(char)
    yield "".join(item)


def key_values(known: Collection[str], what: str) -> Callable[[str], dict[str, str]]:
    """argparse type: ``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}`` with keys from
    ``known``; ``what`` names the thing in messages (``signer``, ``recipient``).

    A syntax error, an unknown or repeated key becomes a usage error (exit 2).
    """

    def parse(text: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        for pair in _split_pairs(text):
            if not pair.strip():
                continue
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq or not key:
                raise argparse.ArgumentTypeError(f"expected key=value, got {pair.strip()!r}")
            if key not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} field {key!r}; known: {', '.join(sorted(known))}"
                )
            if key in fields:
                raise argparse.ArgumentTypeError(f"{what} field {key!r} is given twice")
            fields[key] = value.strip()
        if not fields:
            raise argparse.ArgumentTypeError(f"empty {what}; expected key=value,...")
        return fields

    return parse


parse_signer = key_values(EXTERNAL_SIGNER_KEYS | INTERNAL_SIGNER_KEYS, "signer")
"""``"external_id=u1,email=a@b.lt"`` -> ``{"external_id": "u1", "email": "a@b.lt"}``.

Which keys a flow accepts is checked later, when the flow is known."""
parse_recipient = key_values(RECIPIENT_KEYS, "recipient")
"""An e-delivery's ``--recipient``: ``"code=3800...,country_code=lt,email=..."``."""
parse_annotation = key_values(ANNOTATION_KEYS, "annotation")
"""A seal's ``--annotation``: ``"page=1,top=10,left=20"``."""
