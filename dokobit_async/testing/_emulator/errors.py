"""The emulator's error envelope and the exceptions that produce it.

Shape (``docs/wire-notes.md#error-envelope``): ``{"status": "error", "message",
"error_code", "code", "errors": [{"message", "error_code", "field"}]}`` with
bracket-notation field paths.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from attrs import frozen

__all__ = [
    "EmulatedApiError",
    "EmulatedFieldError",
    "ValidationFailed",
    "envelope",
    "error_response",
]

VALIDATION_CODE = 10000

# Per-field error codes (invented: the real numbers are not published).
REQUIRED = 1001
INVALID_VALUE = 1002
INVALID_TYPE = 1003
INVALID_BASE64 = 1004
DIGEST_MISMATCH = 1005
NOT_PDF = 1006
DEPENDENT_REQUIRED = 1007
NOT_FOUND = 1
WRONG_STATE = 1010
TOO_MANY = 1011


@frozen(kw_only=True)
class EmulatedFieldError:
    """One entry of ``errors[]``: what is wrong with which field."""

    field: str
    """Bracket path of the field, e.g. ``[signers][0][external_id]``."""
    message: str
    """Human-readable reason."""
    error_code: int = INVALID_VALUE
    """Numeric reason code."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this error."""
        return {"message": self.message, "error_code": self.error_code, "field": self.field}


class EmulatedApiError(Exception):
    """An error the API answers with the JSON envelope."""

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        code: int | None = None,
        errors: list[EmulatedFieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.code = http_status if code is None else code
        self.errors = list(errors or [])
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The aiohttp response carrying this error."""
        return error_response(
            self.http_status,
            self.message,
            code=self.code,
            errors=self.errors,
            headers=self.headers,
        )


class ValidationFailed(EmulatedApiError):
    """HTTP 400 "Data validation failed" with one entry per invalid field."""

    def __init__(self, errors: list[EmulatedFieldError], *, http_status: int = 400) -> None:
        super().__init__(
            http_status, "Data validation failed", code=VALIDATION_CODE, errors=errors
        )


def envelope(
    message: str, code: int, errors: list[EmulatedFieldError] | None = None
) -> dict[str, Any]:
    """The error envelope as a dict (both ``error_code`` and ``code`` are set)."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "error_code": code,
        "code": code,
    }
    if errors is not None:
        body["errors"] = [e.to_json() for e in errors]
    return body


def error_response(
    http_status: int,
    message: str,
    *,
    code: int | None = None,
    errors: list[EmulatedFieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error response in the API's envelope."""
    body = envelope(message, http_status if code is None else code, errors if errors else [])
    return web.Response(
        status=http_status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
