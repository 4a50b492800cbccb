"""The pure core: redaction, URLs, Retry-After, body encodings."""

from __future__ import annotations

import json
from email.utils import formatdate
from urllib.parse import parse_qsl

import pytest

from dokobit_async import sansio
from dokobit_async._actions import external_create
from dokobit_async._answers import parse_retry_after
from dokobit_async._bodies import Base64Content, encode_body
from dokobit_async._redact import redact, redact_bytes
from dokobit_async._urls import file_url_path
from dokobit_async.models import ExternalSigner, SigningFile


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/api/x.json?access_token=abc123", "https://h/api/x.json?access_token=***"),
        ("https://h/x?a=1&access_token=abc&b=2", "https://h/x?a=1&access_token=***&b=2"),
        ("https://h/x?ACCESS_TOKEN=abc#frag", "https://h/x?ACCESS_TOKEN=***#frag"),
        ("https://h/x?a=1", "https://h/x?a=1"),
    ],
)
def test_redact_url_masks_every_access_token(url: str, shown: str) -> None:
    """Whatever the case or position of the parameter, its value becomes ***."""
    assert redact(url) == shown


def test_redact_text_and_bytes_mask_the_secret_anywhere() -> None:
    """An answer that echoes the token (even outside a URL) is masked too."""
    assert redact("token s3cr3t leaked", "s3cr3t") == "token *** leaked"
    body = b'{"message": "bad s3cr3t", "url": "x?access_token=zzz"}'
    assert redact_bytes(body, "s3cr3t") == b'{"message": "bad ***", "url": "x?access_token=***"}'


@pytest.mark.parametrize(
    ("base", "url", "path"),
    [
        ("https://h", "https://h/api/s/T/download", "/api/s/T/download"),
        ("https://h", "https://h:443/api/f?x=1&access_token=old", "/api/f?x=1"),
        ("https://h", "/api/relative", "/api/relative"),
        ("https://h/pre", "https://h/pre/api/f", "/api/f"),
        ("https://h/pre", "https://h/elsewhere/api/f", None),
        ("https://h", "http://h/api/f", None),
        ("https://h", "https://evil.example/api/f", None),
        ("https://h", "https://h.evil.example/api/f", None),
        ("https://h", "https://user:pw@h/api/f", None),
        ("https://h", "https://h:8443/api/f", None),
        ("https://h", "https://h:0/api/f", None),
        ("https://h", "https://h:bad/api/f", None),
        ("https://h", "https://h:99999/api/f", None),
        ("https://h", "https:h/api/f", None),
        ("https://h", "https:/api/f", None),
        ("https://h", "javascript:alert(1)", None),
        ("https://h", "api/f", None),
        ("https://h", "", None),
        ("https://h", "https://[::1/api/f", None),
        ("https://h", "https://h/api/f x", None),
        ("https://h", "https://h/api/f\nX: 1", None),
        ("https://h", "https://h\\@evil/api/f", None),
        ("https://h/pre", "https://h/pre/../api/f", None),
        ("https://h", "https://h/api/%2e%2E/f", None),
        ("https://h", "https://h/api/a.b/f", "/api/a.b/f"),
    ],
)
def test_file_urls_are_accepted_only_on_the_api_host(
    base: str, url: str, path: str | None
) -> None:
    """The token is only ever appended to URLs under the configured base URL; a
    malformed URL (bad port, no ``//``, not http(s), whitespace, a dot segment) is
    refused too, never a ``ValueError``."""
    assert file_url_path(base, url) == path


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Delta-seconds, an HTTP date (relative to now), nonsense, and the past."""
    now = 1_800_000_000.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


class _Prepared:
    digest = "d" * 64
    head = b"%PDF-"


def _request() -> sansio.Request:
    return external_create(
        name="A & B = C",
        type="pdf",
        files=[SigningFile.from_bytes(b"%PDF-1.4", name="a+b.pdf")],
        signers=[ExternalSigner(external_id="u1", email="u@x.lt", sequence=2)],
        hard_deadline=False,
    )


def test_form_encoding_uses_php_brackets_and_escapes_values() -> None:
    """Bracket names, booleans as 1/0, ints as text, and a placeholder where the
    base64 goes; ``&``/``=``/``+`` in values are escaped."""
    request = _request()
    prepared = {request.files[0]: _Prepared()}
    segments = encode_body(request, "form", prepared)
    assert isinstance(segments[1], Base64Content)
    text = b"".join(s for s in segments if isinstance(s, bytes)).decode()
    fields = dict(parse_qsl(text.replace("files%5B0%5D%5Bcontent%5D=", "")))
    assert fields["name"] == "A & B = C"
    assert fields["files[0][name]"] == "a+b.pdf"
    assert fields["files[0][digest]"] == "d" * 64
    assert fields["signers[0][sequence]"] == "2"
    assert fields["hard_deadline"] == "0"


def test_json_encoding_nests_and_cannot_be_confused_by_caller_text() -> None:
    """The placeholder marker is random: a name that looks like one stays text."""
    request = _request()
    prepared = {request.files[0]: _Prepared()}
    segments = encode_body(request, "json", prepared)
    assert sum(isinstance(s, Base64Content) for s in segments) == 1
    text = "".join(s.decode() if isinstance(s, bytes) else "QUJD" for s in segments)
    body = json.loads(text)
    assert body["files"][0] == {"name": "a+b.pdf", "content": "QUJD", "digest": "d" * 64}
    assert body["hard_deadline"] is False
    assert body["signers"] == [{"external_id": "u1", "email": "u@x.lt", "sequence": 2}]


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2020-01-01T00:00:00+0200", "2020-01-01T00:00:00+02:00"),
        ("2020-01-01T00:00:00.12Z", "2020-01-01T00:00:00.120000+00:00"),
        ("2020-01-01 10:00:00", "2020-01-01T10:00:00+00:00"),
        ("2020-01-01T00:00:00.1234567+02:00", "2020-01-01T00:00:00.123456+02:00"),
    ],
)
def test_dates_parse_the_same_on_every_supported_python(text: str, iso: str) -> None:
    """PHP-style offsets and odd fraction lengths parse on 3.10 as on 3.11+."""
    from dokobit_async._convert import parse_datetime

    parsed = parse_datetime(text)
    assert parsed is not None
    assert parsed.isoformat() == iso
