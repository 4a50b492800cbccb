"""Pure builders of every Universal API call, with their argument checks.

Each builder returns a :class:`~dokobit_async.sansio.Request` or raises
:class:`~dokobit_async.exceptions.InvalidArgumentError` before anything is sent. Paths
and fields follow docs/wire-notes.md#endpoints.

A builder is the single source of its client method's parameters, and its docstring
is that method's docstring (``_namespaces`` binds them): written for users, it
describes the call as sent (its ``Returns:`` names the answer's model, its
``Raises:`` the API errors, its ``Note:`` the wire path), not the builder's own
return value, which is always a ``Request``. The docstring lives here, beside the
parameter list, so that an argument and its description change in one place; a test
checks that every parameter has its ``Args:`` entry. Builders shared by both flows
write ``{flow}`` where the flow's name goes.

Modules: ``checks`` (argument checks and the request cores shared by both flows),
``signings`` (builders of both flows), ``external``, ``internal``, ``services``
(e-seal, e-delivery, validation).
"""

from __future__ import annotations

from .checks import Flow
from .external import external_add_signers, external_create, external_update, remind
from .internal import internal_add_signers, internal_create, internal_update
from .services import e_delivery_create, seal, validation_report, validation_upload
from .signings import delete, download, remove_signers, status

__all__ = [
    "Flow",
    "delete",
    "download",
    "e_delivery_create",
    "external_add_signers",
    "external_create",
    "external_update",
    "internal_add_signers",
    "internal_create",
    "internal_update",
    "remind",
    "remove_signers",
    "seal",
    "status",
    "validation_report",
    "validation_upload",
]
