"""What the library shows: secrets masked, sender-supplied text made harmless.

Pure, no I/O. Every log line, exception message, ``repr`` and CLI table that carries
text from outside goes through here:

* :func:`printable` shows text a sender controls (a postback's ``action`` or
  ``token``, a stored body, a server's file name) so that it can neither forge a log
  line (a newline), nor drive the operator's terminal (ESC, OSC and other control
  sequences), nor reorder what is shown (bidi overrides), nor flood a log (it is cut
  to a limit, with a marker that says how much was left out).
* :func:`redact` masks secrets: each given secret (the access token) in every
  spelling a server, a proxy or a log may give it back in (raw, percent-encoded in
  either case or twice, form-encoded, JSON- or HTML-escaped, and any mix of these,
  character by character), the value of any ``access_token`` parameter, and the
  ``nonce.mac`` secret segment of a minted postback URL. :func:`redact_bytes` does the
  same to a raw body and :func:`redact_data` to every string of decoded JSON.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .events import SECRET_SEGMENT

__all__ = [
    "MASK",
    "SHOWN_LIMIT",
    "error_text",
    "printable",
    "redact",
    "redact_bytes",
    "redact_data",
    "shown_token",
    "unshowable",
]

SHOWN_LIMIT = 200
"""How many characters of one sender-supplied value a log line or a table shows."""

# Cc: C0 and C1 controls, DEL; Cf: format characters (bidi overrides and isolates,
# zero-width joiners, the BOM); Zl/Zp: line and paragraph separators; Cs: lone
# surrogates; Co/Cn: private use and unassigned (a terminal may render them oddly).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def unshowable(char: str) -> bool:
    """Whether ``char`` is one that :func:`printable` escapes (a control, format, bidi
    or separator character, a lone surrogate, private use or unassigned)."""
    return char != " " and unicodedata.category(char) in _ESCAPED_CATEGORIES


def _escape(char: str, backslashes: bool = True) -> str:
    if char == "\\" and backslashes:
        return "\\\\"
    if not unshowable(char):
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(value: object, limit: int = SHOWN_LIMIT, *, backslashes: bool = True) -> str:
    """``value`` as text that is safe to put in a log line or on a terminal.

    Control, format (bidi) and separator characters become ``\\xNN``/``\\uNNNN``
    escapes, a backslash becomes ``\\\\`` (so an escape cannot be forged), and text
    longer than ``limit`` characters is cut, ending in ``…[+N chars]``. For text that
    went through here already (a log line, a stored error), ``backslashes=False``
    leaves backslashes as they are, so that escapes are not doubled.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and text.isprintable() and not (backslashes and "\\" in text):
        return text  # the common case: nothing to do
    shown: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = _escape(char, backslashes)
        if size + len(piece) > limit:
            return "".join(shown) + f"…[+{len(text) - index} chars]"
        shown.append(piece)
        size += len(piece)
    return "".join(shown)


def error_text(error: BaseException | None) -> str:
    """``Type: message`` of an exception, even one whose ``str()`` fails (not yet
    redacted nor printable)."""
    try:
        text = str(error)
    except Exception:
        text = "(its str() failed)"
    return f"{type(error).__name__}: {text}"


def shown_token(token: str | None) -> str:
    """A signing token as logs show it: a short prefix (printable), or ``-``."""
    return f"{printable(token[:6])}..." if token else "-"


# ------------------------------------------------------------------ secrets

MASK = "***"
"""What a masked secret reads as."""

Secrets = str | Iterable[str]

_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}

# a parameter value ends at the next parameter, in plain or percent-encoded form
_VALUE_CHAR = r"(?!%26|%2526|\\u0026)[^&#\s\"'<>]"
_PARAM = rf"(access_token(?:=|%3D|%253D|\\u003d))(?:{_VALUE_CHAR})*"
_JSON_PARAM = r'("access_token"\s*:\s*")(?:[^"\\]|\\.)*(")'


@functools.cache
def _rules() -> tuple[tuple[str, str], ...]:
    """Patterns and replacements that need no secret: parameters, postback secrets."""
    # the dot of nonce.mac may itself be escaped
    segment = SECRET_SEGMENT.pattern.replace(r"\.", r"(?:\.|%2E|%252E|\\u002E)")
    return (_PARAM, rf"\g<1>{MASK}"), (_JSON_PARAM, rf"\g<1>{MASK}\g<2>"), (segment, MASK)


@functools.cache
def _text_rules() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(p, re.IGNORECASE), r) for p, r in _rules())


@functools.cache
def _bytes_rules() -> tuple[tuple[re.Pattern[bytes], bytes], ...]:
    return tuple((re.compile(p.encode(), re.IGNORECASE), r.encode()) for p, r in _rules())


def _hex(value: int, digits: int) -> str:
    """``value`` in hex as a pattern that matches either case."""
    return "".join(
        f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{digits}X}"
    )


def _spellings(char: str) -> str:
    """A pattern for every spelling of one character of a secret."""
    code = ord(char)
    units = [code] if code <= 0xFFFF else [0xD800 + ((code - 0x10000) >> 10),
                                           0xDC00 + ((code - 0x10000) & 0x3FF)]  # fmt: skip
    options = [
        re.escape(char),
        # percent-encoded (UTF-8), once or twice
        "".join(f"%(?:25)?{_hex(byte, 2)}" for byte in char.encode("utf-8")),
        "".join(rf"\\u{_hex(unit, 4)}" for unit in units),
        rf"&#(?:0*{code}|[xX]0*{_hex(code, 1)});",
    ]
    if char in _JSON_ESCAPES:
        options.append(re.escape(_JSON_ESCAPES[char]))
    if char in _HTML_ESCAPES:
        options.append(re.escape(_HTML_ESCAPES[char]))
    if char == " ":
        options.append(r"\+")  # the form encoding
    return f"(?:{'|'.join(options)})"


@functools.lru_cache(maxsize=32)
def _patterns(secrets: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[bytes]] | None:
    if not secrets:
        return None
    # longest first, so that a secret that contains another is masked whole
    ordered = sorted(secrets, key=len, reverse=True)
    text = "|".join("".join(_spellings(char) for char in s) for s in ordered)
    return re.compile(text), re.compile(text.encode("utf-8"))


def _normalised(secrets: Secrets) -> tuple[str, ...]:
    items = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    return tuple(sorted({s for s in items if isinstance(s, str) and s.strip()}))


def redact(text: str, secrets: Secrets = ()) -> str:
    """``text`` with every spelling of each of ``secrets`` (a string or several), any
    ``access_token`` parameter value and any postback URL secret replaced by ``***``.

    Used for every string that an exception, a ``repr`` or a log line can carry.
    """
    text = str(text)
    patterns = _patterns(_normalised(secrets))
    if patterns is not None:
        text = patterns[0].sub(MASK, text)
    for pattern, replacement in _text_rules():
        text = pattern.sub(replacement, text)
    return text


def redact_bytes(body: bytes, secrets: Secrets = ()) -> bytes:
    """:func:`redact` for a raw body, which need not be valid UTF-8."""
    patterns = _patterns(_normalised(secrets))
    if patterns is not None:
        body = patterns[1].sub(MASK.encode(), body)
    for pattern, replacement in _bytes_rules():
        body = pattern.sub(replacement, body)
    return body


def redact_data(value: Any, secrets: Secrets = ()) -> Any:
    """Decoded JSON with :func:`redact` applied to every string in it, at any depth,
    mapping keys included; other values are kept."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_data(item, secrets) for item in value)
    return value
