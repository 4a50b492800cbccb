"""Test kit: an emulator of the Dokobit Universal API on loopback.

See :class:`Emulator`. The emulator is a second, independent reading of the wire
notes; where the notes mark a behaviour as inferred, :class:`EmulatorConfig` has a
switch for it.
"""

from __future__ import annotations

from ._emu_config import EmulatorConfig, FaultKind, Faults
from ._emu_documents import make_pdf
from ._emu_errors import ApiError, FieldError
from ._emu_records import OutboxMessage, PostbackAttempt, RequestRecord
from ._emu_state import Delivery, Participant, Recipient, Signing, StateError, Validation
from .emulator import Emulator

__all__ = [
    "ApiError",
    "Delivery",
    "Emulator",
    "EmulatorConfig",
    "FaultKind",
    "Faults",
    "FieldError",
    "OutboxMessage",
    "Participant",
    "PostbackAttempt",
    "Recipient",
    "RequestRecord",
    "Signing",
    "StateError",
    "Validation",
    "make_pdf",
]
