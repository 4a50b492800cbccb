"""Test kit: an emulator of the Dokobit Universal API on loopback, and a pytest plugin.

See :class:`Emulator`. The emulator is a second, independent reading of the wire
notes; where the notes mark a behaviour as inferred, :class:`EmulatorConfig` has a
switch for it. :func:`postback_body`, :func:`postback_url` and
:func:`verify_postback_url` make what Dokobit posts, for tests of your own receiver.
The pytest plugin (:mod:`dokobit_async.testing.pytest_plugin`) gives
the ``dokobit_emulator`` and ``dokobit_client`` fixtures.

Names are imported on first use (PEP 562): pytest loads the plugin, and with it this
package, in every test run, and a run that never uses the emulator should not pay
for importing it and aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from ._emulator.config import EmulatorConfig, FaultKind, Faults
    from ._emulator.documents import make_pdf
    from ._emulator.emulator import Emulator
    from ._emulator.errors import EmulatedApiError, EmulatedFieldError
    from ._emulator.records import OutboxMessage, PostbackAttempt, RequestRecord
    from ._emulator.state import (
        EmulatedDelivery,
        EmulatedRecipient,
        Participant,
        Signing,
        StateError,
        Validation,
    )
    from ._postbacks import DEFAULT_PATH, postback_body, postback_url, verify_postback_url

_EXPORTS: dict[str, str] = {
    "DEFAULT_PATH": "_postbacks",
    "EmulatedApiError": "_emulator.errors",
    "EmulatedDelivery": "_emulator.state",
    "EmulatedFieldError": "_emulator.errors",
    "EmulatedRecipient": "_emulator.state",
    "Emulator": "_emulator.emulator",
    "EmulatorConfig": "_emulator.config",
    "FaultKind": "_emulator.config",
    "Faults": "_emulator.config",
    "OutboxMessage": "_emulator.records",
    "Participant": "_emulator.state",
    "PostbackAttempt": "_emulator.records",
    "RequestRecord": "_emulator.records",
    "Signing": "_emulator.state",
    "StateError": "_emulator.state",
    "Validation": "_emulator.state",
    "make_pdf": "_emulator.documents",
    "postback_body": "_postbacks",
    "postback_url": "_postbacks",
    "verify_postback_url": "_postbacks",
}


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "DEFAULT_PATH",
    "EmulatedApiError",
    "EmulatedDelivery",
    "EmulatedFieldError",
    "EmulatedRecipient",
    "Emulator",
    "EmulatorConfig",
    "FaultKind",
    "Faults",
    "OutboxMessage",
    "Participant",
    "PostbackAttempt",
    "RequestRecord",
    "Signing",
    "StateError",
    "Validation",
    "make_pdf",
    "postback_body",
    "postback_url",
    "verify_postback_url",
]
