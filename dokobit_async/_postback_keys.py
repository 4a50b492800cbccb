"""The postback secrets a receiver holds: one, or several while one is rotated.

Pure, no I/O. ``PostbackReceiver(secret=...)`` and ``dokobit-async listen`` both
check what they are given here, so that the rules are one: the first secret mints new
postback URLs and any of them verifies one
(``docs/architecture.md#rotating-the-postback-secret``); each is 16 bytes or more (an
HMAC key shorter than that is guessable); the same secret twice is refused (a list
that holds the old secret twice does not hold the new one, which is what a rotation
that was meant to add it needs to hear); an empty list is an error, never "no secret"
(``None`` says that). An error names a secret by its position, never by its value.
"""

from __future__ import annotations

from collections.abc import Sequence

from .exceptions import InvalidArgumentError

__all__ = ["MIN_SECRET_BYTES", "postback_keys", "shown_keys"]

MIN_SECRET_BYTES = 16
"""The shortest postback secret accepted."""


def postback_keys(
    secret: bytes | str | Sequence[bytes | str], names: Sequence[str] = ()
) -> tuple[bytes, ...]:
    """``secret`` (one, or several: the first mints, any verifies) as checked keys.

    Text is UTF-8 encoded. An error names each secret ``secret[i]`` (or ``secret``
    when there is one), or ``names[i]`` when given (a line of a file, say).

    Raises:
        InvalidArgumentError: No secret at all, one that is not bytes or text, one
            shorter than :data:`MIN_SECRET_BYTES`, or the same secret twice.
    """
    many = not isinstance(secret, (bytes, str))
    if many and not isinstance(secret, Sequence):  # a set has no first one
        raise InvalidArgumentError(
            f"secret must be bytes, str or a sequence of them, not {type(secret).__name__}"
        )
    items: Sequence[object] = secret if many else (secret,)
    if not items:
        raise InvalidArgumentError("secret is an empty sequence (None means no URL check)")

    def label(index: int) -> str:
        if index < len(names):
            return names[index]
        return f"secret[{index}]" if many else "secret"

    keys: list[bytes] = []
    for index, item in enumerate(items):
        name = label(index)
        if not isinstance(item, (bytes, str)):
            raise InvalidArgumentError(f"{name} must be bytes or str, not {type(item).__name__}")
        key = item.encode() if isinstance(item, str) else item
        if len(key) < MIN_SECRET_BYTES:
            raise InvalidArgumentError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long")
        if key in keys:
            first = label(keys.index(key))
            raise InvalidArgumentError(f"{name} is the same as {first}: give each secret once")
        keys.append(key)
    return tuple(keys)


def shown_keys(keys: Sequence[bytes]) -> tuple[str, ...]:
    """The keys as text could show them, for redaction: UTF-8 text, where a byte that
    is not UTF-8 reads ``\\xNN`` as in a ``bytes`` repr."""
    return tuple(key.decode("utf-8", "backslashreplace") for key in keys)
