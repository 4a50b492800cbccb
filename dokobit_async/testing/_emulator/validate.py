"""Validation of parsed request bodies into typed specs, one error per invalid field.

Field names, enums and required fields follow ``docs/wire-notes.md#endpoints`` and ``#formats``;
every check reports a bracket path (``[signers][0][country_code]``) as the API does
(``#error-envelope``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.parse
from datetime import datetime, timezone
from typing import Any

from attrs import frozen

from . import errors as codes
from .documents import is_pdf
from .errors import EmulatedFieldError, ValidationFailed
from .forms import path_of

__all__ = ["Checker", "FileSpec", "SignerSpec", "parse_deadline"]

Path = tuple[str | int, ...]

SIGNING_TYPES = ("pdf", "asice", "bdoc", "edoc", "adoc", "adoc.cedoc")
ROLES = ("signer", "viewer")
COUNTRIES = ("lt", "lv", "ee", "is", "no", "fi", "be", "se")
INTERNAL_COUNTRIES = (*COUNTRIES, "pl")
DELIVERY_COUNTRIES = ("lt", "lv", "ee", "is")
LANGUAGES = ("en", "lt", "lv", "et", "is", "no", "fr", "se", "de", "fi", "dk", "nl")
ANNOTATION_LANGUAGES = ("en", "lt", "lv", "et", "is")
ANNOTATION_POSITIONS = ("first_top", "first_bottom", "last_top", "last_bottom", "none")
SIGNING_METHODS = (
    "mobile",
    "smartid",
    "smartcard",
    "eparaksts_mobile",
    "bankid_no",
    "bankid_se",
    "audkenni_app",
    "ftn",
    "mitid",
    "electronic_id",
    "itsme",
    "idin",
    "swisscom",
    "sms_otp",
)
VALIDATION_EXTENSIONS = ("asice", "asics", "sce", "bdoc", "edoc", "pdf", "p7s", "xml")
_TRUE = ("1", "true", "True", "TRUE", "on", "yes")
_FALSE = ("0", "false", "False", "FALSE", "off", "no", "")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_WS = re.compile(r"\s+")


@frozen(kw_only=True)
class FileSpec:
    """An uploaded file, decoded."""

    name: str
    data: bytes


@frozen(kw_only=True)
class SignerSpec:
    """A participant as sent in ``signers[]`` (external or internal shape)."""

    external_id: str
    role: str = "signer"
    name: str | None = None
    surname: str | None = None
    email: str | None = None
    phone: str | None = None
    code: str | None = None
    country_code: str | None = None
    company: str | None = None
    position: str | None = None
    sequence: int | None = None
    language: str | None = None
    custom_reason: str | None = None


def parse_deadline(value: str) -> datetime | None:
    """An ISO-8601 time (``Z`` allowed; no zone means UTC), or None if unparseable."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Checker:
    """Reads fields from a parsed body, collecting one :class:`EmulatedFieldError` per
    bad field."""

    def __init__(self) -> None:
        self.errors: list[EmulatedFieldError] = []

    def fail(self, path: Path, message: str, code: int = codes.INVALID_VALUE) -> None:
        """Record an error for ``path``."""
        self.errors.append(
            EmulatedFieldError(field=path_of(path), message=message, error_code=code)
        )

    def done(self) -> None:
        """Raise :class:`ValidationFailed` if any error was recorded."""
        if self.errors:
            raise ValidationFailed(list(self.errors))

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        path: Path = (),
        *,
        required: bool = False,
        choices: tuple[str, ...] | None = None,
        lower: bool = False,
    ) -> str | None:
        """A string field (JSON numbers accepted); checked against ``choices``."""
        here = (*path, key)
        value = obj.get(key)
        if isinstance(value, (bool, dict, list)):
            self.fail(here, "This value should be of type string.", codes.INVALID_TYPE)
            return None
        if isinstance(value, (int, float)):
            value = str(value)
        if value is None or value == "":
            if required:
                self.fail(here, "This value should not be blank.", codes.REQUIRED)
            return None
        assert isinstance(value, str)
        if lower:
            value = value.lower()
        if choices is not None and value not in choices:
            self.fail(here, f"The value you selected is not a valid choice: {value[:40]}.")
            return None
        return value

    def url(self, obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
        """An absolute http(s) URL."""
        value = self.text(obj, key, required=required)
        if value is None:
            return None
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail((key,), "This value is not a valid URL.")
            return None
        return value

    def boolean(self, obj: dict[str, Any], key: str, path: Path = ()) -> bool | None:
        """A boolean: JSON bool, 1/0, true/false, True/False; None when absent."""
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value in _TRUE:
            return True
        if isinstance(value, str) and value in _FALSE:
            return False
        self.fail((*path, key), "This value should be of type bool.", codes.INVALID_TYPE)
        return None

    def integer(
        self, obj: dict[str, Any], key: str, path: Path = (), *, minimum: int = 0
    ) -> int | None:
        """A non-negative integer (JSON int or digit string); None when absent."""
        value = obj.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail((*path, key), f"This value should be an integer >= {minimum}.")
            return None
        return value

    def mapping(
        self, obj: dict[str, Any], key: str, path: Path = (), *, required: bool = False
    ) -> dict[str, Any] | None:
        """A nested object field."""
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.fail((*path, key), "This value should not be blank.", codes.REQUIRED)
            return None
        if not isinstance(value, dict):
            self.fail((*path, key), "This value should be an object.", codes.INVALID_TYPE)
            return None
        return value

    def items(
        self, obj: dict[str, Any], key: str, *, required: bool = False
    ) -> list[tuple[Path, dict[str, Any]]]:
        """The objects of a list field with their paths; non-objects are errors."""
        value = obj.get(key)
        if value is None or value == "" or value == []:
            if required:
                self.fail(
                    (key,), "This collection should contain 1 element or more.", codes.REQUIRED
                )
            return []
        if not isinstance(value, list):
            self.fail((key,), "This value should be a list.", codes.INVALID_TYPE)
            return []
        result: list[tuple[Path, dict[str, Any]]] = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                result.append(((key, index), item))
            else:
                self.fail((key, index), "This value should be an object.", codes.INVALID_TYPE)
        return result

    def strings(self, obj: dict[str, Any], key: str, choices: tuple[str, ...]) -> list[str] | None:
        """A list of strings from ``choices`` (a single string is a one-item list)."""
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, list):
            self.fail((key,), "This value should be a list.", codes.INVALID_TYPE)
            return None
        result = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or item not in choices:
                self.fail((key, index), "The value you selected is not a valid choice.")
            else:
                result.append(item)
        return result

    def deadline(self, obj: dict[str, Any], key: str = "deadline") -> datetime | None:
        """An ISO-8601 date-time field."""
        value = self.text(obj, key)
        if value is None:
            return None
        moment = parse_deadline(value)
        if moment is None:
            self.fail((key,), "This value is not a valid datetime.")
        return moment

    def file(
        self, item: dict[str, Any], path: Path, *, pdf_only: bool, require_digest: bool
    ) -> FileSpec | None:
        """A ``{name, content, digest}`` file; base64, digest and PDF magic checked."""
        name = self.text(item, "name", path, required=True)
        content = self.text(item, "content", path, required=True)
        digest = self.text(item, "digest", path, required=require_digest)
        if content is None:
            return None
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            try:
                data = base64.b64decode(_WS.sub("", content), validate=True)
            except (binascii.Error, ValueError):
                self.fail((*path, "content"), "Invalid base64 content.", codes.INVALID_BASE64)
                return None
        if not data:
            self.fail((*path, "content"), "File is empty.", codes.REQUIRED)
            return None
        if digest is not None:
            if not _HEX64.match(digest):
                self.fail((*path, "digest"), "Digest must be a hex SHA-256.")
            elif hashlib.sha256(data).hexdigest() != digest.lower():
                self.fail(
                    (*path, "digest"), "File digest does not match content.", codes.DIGEST_MISMATCH
                )
        if pdf_only and not is_pdf(data):
            self.fail((*path, "content"), "File is not a valid PDF document.", codes.NOT_PDF)
            return None
        if name is None:
            return None
        return FileSpec(name=name, data=data)

    def files(
        self, body: dict[str, Any], *, pdf_only: bool, require_digest: bool
    ) -> list[FileSpec]:
        """The required ``files[]`` list."""
        result = []
        for path, item in self.items(body, "files", required=True):
            spec = self.file(item, path, pdf_only=pdf_only, require_digest=require_digest)
            if spec is not None:
                result.append(spec)
        return result

    def signer(self, item: dict[str, Any], path: Path, *, internal: bool) -> SignerSpec | None:
        """One ``signers[]`` entry in the external or internal shape."""
        before = len(self.errors)
        countries = INTERNAL_COUNTRIES if internal else COUNTRIES
        external_id = self.text(item, "external_id", path, required=True)
        role = self.text(item, "role", path, choices=ROLES) or "signer"
        code = self.text(item, "code", path)
        country = self.text(item, "country_code", path, choices=countries, lower=True)
        if code is not None and country is None and not item.get("country_code"):
            self.fail(
                (*path, "country_code"),
                "Country code is required with a personal code.",
                codes.DEPENDENT_REQUIRED,
            )
        phone = self.text(item, "phone", path)
        language_key = "language" if internal else "notifications_language"
        language = self.text(item, language_key, path, choices=LANGUAGES)
        annotation = self.mapping(item, "annotation", path)
        if annotation is not None:
            for key in ("page", "top", "left"):
                self.integer(
                    annotation, key, (*path, "annotation"), minimum=1 if key == "page" else 0
                )
            self.text(annotation, "language", (*path, "annotation"), choices=ANNOTATION_LANGUAGES)
        extra: dict[str, Any] = {}
        if not internal:
            extra = {
                k: self.text(item, k, path)
                for k in ("name", "surname", "email", "company", "position")
            }
            extra["sequence"] = self.integer(item, "sequence", path)
            if extra["email"] is None and phone is None and not item.get("email"):
                self.fail(
                    (*path, "email"),
                    "Either email or phone is required.",
                    codes.DEPENDENT_REQUIRED,
                )
        if len(self.errors) > before or external_id is None:
            return None
        return SignerSpec(
            external_id=external_id,
            role=role,
            code=code,
            country_code=country,
            phone=phone,
            language=language,
            custom_reason=self.text(item, "custom_reason", path),
            **extra,
        )

    def signers(
        self, body: dict[str, Any], *, internal: bool, required: bool = False
    ) -> list[SignerSpec]:
        """The ``signers[]`` list."""
        result = []
        for path, item in self.items(body, "signers", required=required):
            spec = self.signer(item, path, internal=internal)
            if spec is not None:
                result.append(spec)
        return result
