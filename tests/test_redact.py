"""The one redaction function: every spelling of a secret
(``docs/architecture.md#no-secret-in-any-output``).

A server, a proxy or a log may echo the access token raw, percent-encoded (``%2F``,
``%2f``, twice), form-encoded (``+`` for a space, ``%2B`` for a plus), JSON-escaped
(``\\/``, ``\\u00f8``) or inside a query string as the client sent it; each of these
is masked, and so is any ``access_token=`` value and a minted postback URL secret.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from urllib.parse import quote, quote_plus, urlencode

import pytest
from yarl import URL

from dokobit_async import _redact
from dokobit_async.events import mint_postback_secret

TOKENS = [
    "Kq3vW/Zz8pQ+Rt5mJ=Yx2nL%Hb7cX",
    "Ab9Dk%2FGh4Jm/Np6Qr+St8Uv==",
    "Wx5Yz Ce3Fg/Ij7Kl+Mn1Op=Qs%7E",
    'Øy6Rb/Tc2Vd+Ef4Gh=Jk8Lm%Pq"Zr\\',
    "beta_0123456789abcdef0123456789abcdef01234567",
]


def fragments(secret: str) -> list[str]:
    """Runs of 4+ letters and digits: what any spelling of ``secret`` still shows."""
    return re.findall(r"[A-Za-z0-9]{4,}", secret)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def spellings(secret: str) -> dict[str, str]:
    """Every way the tests expect ``secret`` to travel back (built independently of
    the code under test)."""
    quoted = quote(secret, safe="")
    dumped = json.dumps(secret)[1:-1]
    return {
        "raw": secret,
        "percent": quoted,
        "percent-lower": _lower_hex(quoted),
        "percent-twice": quote(quoted, safe=""),
        "form": quote_plus(secret, safe=""),
        "form-lower": _lower_hex(quote_plus(secret, safe="")),
        "path": quote(secret),
        "query-as-sent": str(URL("http://h/x").with_query({"access_token": secret}).query_string),
        "urlencode": urlencode({"t": secret})[2:],
        "json": dumped,
        "json-slash": dumped.replace("/", "\\/"),
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-of-percent": json.dumps(quoted)[1:-1],
        "html": html.escape(secret),
        "html-numeric": "".join(f"&#{ord(c)};" if not c.isalnum() else c for c in secret),
    }


CASES = [
    pytest.param(secret, name, spelled, id=f"{index}-{name}")
    for index, secret in enumerate(TOKENS)
    for name, spelled in spellings(secret).items()
]


@pytest.mark.parametrize(("secret", "name", "spelled"), CASES)
def test_every_spelling_of_the_secret_is_masked(secret: str, name: str, spelled: str) -> None:
    """Inside any surrounding text, each spelling becomes ``***``, and nothing of the
    secret (no run of its letters and digits) is left."""
    text = f'error: "{spelled}" at https://api/x?{spelled}#{spelled}'
    shown = _redact.redact(text, [secret])

    assert "***" in shown
    for piece in fragments(secret):
        assert piece not in shown
    assert shown.startswith('error: "')
    assert "https://api/x?" in shown


@pytest.mark.parametrize(("secret", "name", "spelled"), CASES)
def test_bytes_form_masks_every_spelling(secret: str, name: str, spelled: str) -> None:
    """:func:`redact_bytes` masks the same spellings in a raw body (UTF-8 or not)."""
    body = b"\xff\xfe prefix " + spelled.encode("utf-8") + b' {"k": 1}'
    shown = _redact.redact_bytes(body, [secret])

    assert b"***" in shown
    for piece in fragments(secret):
        assert piece.encode() not in shown
    assert shown.startswith(b"\xff\xfe prefix ")
    assert shown.endswith(b' {"k": 1}')


def test_several_secrets_and_a_secret_inside_another() -> None:
    """Two secrets, one containing the other: both masked, whole."""
    text = "a=LongSecretValue b=Secret c=other"
    assert _redact.redact(text, ["Secret", "LongSecretValue"]) == "a=*** b=*** c=other"


def test_text_without_secrets_is_unchanged() -> None:
    """Only secrets are touched: other text, escapes and percent signs stay."""
    text = 'path /api/x%2Fy?a=1&b=%ZZ "q\\/r" \\u00f8 100% *** +'
    assert _redact.redact(text, ["not-there"]) == text
    assert _redact.redact(text, []) == text
    assert _redact.redact(text, ["", "   "]) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://h/x?access_token=abc/d+e", "https://h/x?access_token=***"),
        ("https://h/x?a=1&ACCESS_TOKEN=abc&b=2", "https://h/x?a=1&ACCESS_TOKEN=***&b=2"),
        ("u=h%2Fx%3Faccess_token%3Dab%2Fc%26n%3D1", "u=h%2Fx%3Faccess_token%3D***%26n%3D1"),
        ('{"url": "x?access_token=ab\\/c", "n": 1}', '{"url": "x?access_token=***", "n": 1}'),
        ('{"access_token": "ab\\"c", "n": 1}', '{"access_token": "***", "n": 1}'),
        ("url='http://h/?access_token=abc'", "url='http://h/?access_token=***'"),
    ],
)  # fmt: skip
def test_any_access_token_parameter_is_masked(text: str, shown: str) -> None:
    """A token we were not told about is still masked where it is a parameter value:
    in a URL, a URL-encoded URL, a JSON string or a JSON object."""
    assert _redact.redact(text, []) == shown
    assert _redact.redact_bytes(text.encode(), []) == shown.encode()


def test_postback_secret_segment_is_masked_in_each_spelling() -> None:
    """The ``nonce.mac`` segment of a minted postback URL is masked raw, with its dot
    percent-encoded, and JSON-escaped."""
    segment = mint_postback_secret(b"k" * 32)
    nonce, mac = segment.split(".")
    for spelled in [segment, f"{nonce}%2E{mac}", f"{nonce}%2e{mac}", f"{nonce}\\u002e{mac}"]:
        text = f"postback_url=https://example.com/dokobit/{spelled}/x"
        shown = _redact.redact(text, [])
        assert nonce not in shown
        assert mac not in shown
        assert shown == "postback_url=https://example.com/dokobit/***/x"


def test_redact_data_masks_every_string_keys_too() -> None:
    """Decoded JSON: every string, at any depth, dict keys included; other values
    kept as they are."""
    secret = TOKENS[0]
    data = {
        "message": f"bad {secret}",
        secret: [quote(secret, safe=""), {"deep": (secret, 5, None, True)}],
        "n": 3,
    }
    shown = _redact.redact_data(data, [secret])

    assert shown == {
        "message": "bad ***",
        "***": ["***", {"deep": ("***", 5, None, True)}],
        "n": 3,
    }
    assert secret not in json.dumps(shown, default=list)


def test_redaction_module_is_pure() -> None:
    """``_redact`` can be used by the receiver and the CLI without loading aiohttp."""
    code = "import sys, dokobit_async._redact\nprint('aiohttp' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False"]
