"""The emulator's in-memory state and the signing state machine (no I/O here).

A signing is ``pending`` until every participant with role ``signer`` has signed,
then ``completed``; viewers never block (``docs/wire-notes.md#order-of-events``).
Transitions return the postback actions they cause; the emulator turns those into
deliveries.
"""

from __future__ import annotations

import io
import secrets
import zipfile
from datetime import datetime, timezone
from typing import Any

from attrs import define, field

from . import errors as codes
from .documents import CONTAINER_MIMETYPES, Mark, build_container, mime_type_of, sign_pdf
from .errors import EmulatedApiError, EmulatedFieldError
from .validate import FileSpec, SignerSpec

__all__ = [
    "EmulatedDelivery",
    "EmulatedRecipient",
    "Participant",
    "Signing",
    "StateError",
    "Validation",
    "new_token",
    "utcnow",
]

EXTERNAL = "signing-external"
INTERNAL = "signing-internal"


def new_token() -> str:
    """A fresh opaque token (40 hex characters, like the real ones)."""
    return secrets.token_hex(20)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class StateError(EmulatedApiError):
    """An action refused because of the signing's state (HTTP 400 envelope)."""

    def __init__(self, field_path: str, message: str) -> None:
        error = EmulatedFieldError(field=field_path, message=message, error_code=codes.WRONG_STATE)
        super().__init__(400, "Data validation failed", code=codes.VALIDATION_CODE, errors=[error])


@define(kw_only=True)
class Participant:
    """A signer or viewer of a signing."""

    token: str
    """Participant token (used by remind, remove, sign)."""
    spec: SignerSpec
    """What the integrator sent for this participant."""
    status: str = "pending"
    """``pending``, ``signed`` or ``declined``."""
    signed_at: datetime | None = None
    """When the participant signed."""
    declined_at: datetime | None = None
    """When the participant declined."""
    signing_option: str | None = None
    """How the participant signed (``smartid``, ``mobile``...)."""

    @property
    def role(self) -> str:
        """``signer`` or ``viewer``."""
        return self.spec.role


@define(kw_only=True)
class Signing:
    """One signing (external or internal flow)."""

    token: str
    """Signing token."""
    flow: str
    """``signing-external`` or ``signing-internal``."""
    type: str
    """Document type: ``pdf``, ``asice``, ``bdoc``, ``edoc``, ``adoc``, ``adoc.cedoc``."""
    name: str
    """Signing name."""
    files: list[FileSpec]
    """The uploaded files, as uploaded."""
    created: datetime
    """Creation time."""
    postback_url: str | None = None
    """Where postbacks go."""
    redirect_uri: str | None = None
    """Internal flow: where signers return after signing."""
    deadline: datetime | None = None
    """Signing deadline."""
    options: dict[str, Any] = field(factory=dict)
    """Every other option sent at create or update (booleans, methods, comment...)."""
    participants: dict[str, Participant] = field(factory=dict)
    """Participants by token, in the order they were added."""
    status: str = "pending"
    """Document status: ``pending``, ``completed`` (or the configured declined status)."""
    marks: list[Mark] = field(factory=list)
    """Signatures and seals applied so far."""
    current: list[bytes] = field(factory=list)
    """Current bytes of each file (PDFs gain an update per mark)."""

    @property
    def hard_deadline(self) -> bool:
        """True if signing after the deadline is refused."""
        return bool(self.options.get("hard_deadline"))

    def participant(self, token: str, field_path: str = "[signer]") -> Participant:
        """The participant with ``token``, or :class:`StateError`."""
        found = self.participants.get(token)
        if found is None:
            raise StateError(field_path, "Signer with such token not found.")
        return found

    def add(self, specs: list[SignerSpec]) -> list[Participant]:
        """Add participants; refused once completed or on a duplicate ``external_id``."""
        if self.status == "completed":
            raise StateError("[signers]", "Signing is already completed.")
        taken = {p.spec.external_id for p in self.participants.values()}
        for index, spec in enumerate(specs):
            if spec.external_id in taken:
                raise StateError(
                    f"[signers][{index}][external_id]", "Signer with such external_id exists."
                )
            taken.add(spec.external_id)
        added = [Participant(token=new_token(), spec=spec) for spec in specs]
        for participant in added:
            self.participants[participant.token] = participant
        return added

    def remove(self, tokens: list[str], *, declined_status: str | None) -> list[str]:
        """Remove participants who have not signed; returns the postback actions."""
        for index, token in enumerate(tokens):
            participant = self.participant(token, f"[signers][{index}][token]")
            if participant.status == "signed":
                raise StateError(f"[signers][{index}][token]", "Signer has already signed.")
        for token in tokens:
            self.participants.pop(token, None)
        return self.refresh(declined_status)

    def sign(
        self, token: str, now: datetime, method: str, *, declined_status: str | None
    ) -> list[str]:
        """Record a signature; returns the postback actions it causes."""
        participant = self._actionable(token, now)
        if participant.status == "signed":
            raise StateError("[signer]", "Signer has already signed.")
        participant.status = "signed"
        participant.signed_at = now
        participant.signing_option = method
        self.apply(
            Mark(kind="signature", who=token, time=now, reason=participant.spec.custom_reason)
        )
        return ["signer_signed", *self.refresh(declined_status)]

    def decline(self, token: str, now: datetime, *, declined_status: str | None) -> list[str]:
        """Record a decline; returns the postback actions it causes."""
        participant = self._actionable(token, now)
        if participant.status != "pending":
            raise StateError("[signer]", f"Signer has already {participant.status}.")
        participant.status = "declined"
        participant.declined_at = now
        return ["signer_declined", *self.refresh(declined_status)]

    def _actionable(self, token: str, now: datetime) -> Participant:
        participant = self.participant(token)
        if participant.role != "signer":
            raise StateError("[signer]", "Participant is a viewer and cannot sign.")
        if self.status == "completed":
            raise StateError("[token]", "Signing is already completed.")
        if self.hard_deadline and self.deadline is not None and now > self.deadline:
            raise StateError("[deadline]", "Signing deadline has passed.")
        return participant

    def refresh(self, declined_status: str | None) -> list[str]:
        """Recompute the document status; ``["signing_completed"]`` when it completes."""
        signers = [p for p in self.participants.values() if p.role == "signer"]
        if signers and all(p.status == "signed" for p in signers):
            if self.status != "completed":
                self.status = "completed"
                return ["signing_completed"]
            return []
        declined = any(p.status == "declined" for p in signers)
        self.status = declined_status if declined and declined_status else "pending"
        return []

    def apply(self, mark: Mark) -> None:
        """Apply a signature or seal to the documents."""
        self.marks.append(mark)
        if self.type == "pdf":
            self.current = [sign_pdf(data, mark) for data in self.current]

    def document(self) -> tuple[bytes, str, str]:
        """``(bytes, filename, mime type)`` of the download in its current state."""
        if self.type == "pdf" and len(self.current) == 1:
            return self.current[0], self.files[0].name, "application/pdf"
        if self.type == "pdf":
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for spec, data in zip(self.files, self.current, strict=True):
                    archive.writestr(spec.name, data)
            return out.getvalue(), f"{self.name}.zip", "application/zip"
        data = build_container(self.type, [(f.name, f.data) for f in self.files], self.marks)
        single = len(self.files) == 1 and self.files[0].data[:2] == b"PK"
        filename = self.files[0].name if single else f"{self.name}.{self.type.split('.')[-1]}"
        return data, filename, CONTAINER_MIMETYPES.get(self.type, "application/zip")

    def file(self, index: int) -> tuple[bytes, str, str]:
        """``(bytes, name, mime type)`` of one file: a PDF signed so far, or the raw data."""
        spec = self.files[index]
        data = self.current[index] if self.type == "pdf" else spec.data
        return data, spec.name, mime_type_of(spec.name)


@define(kw_only=True)
class EmulatedRecipient:
    """An e-delivery recipient."""

    token: str
    """Recipient token."""
    external_id: str | None
    code: str | None
    country_code: str | None
    email: str | None
    phone: str | None
    language: str | None = None
    received_at: datetime | None = None
    """When the recipient confirmed receipt."""


@define(kw_only=True)
class EmulatedDelivery:
    """An e-delivery."""

    token: str
    name: str
    files: list[FileSpec]
    created: datetime
    postback_url: str | None = None
    comment: str | None = None
    recipients: dict[str, EmulatedRecipient] = field(factory=dict)


@define(kw_only=True)
class Validation:
    """An uploaded validation request."""

    token: str
    file: FileSpec
    created: datetime
