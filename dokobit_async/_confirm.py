"""Confirming a postback against the API before its handlers run.

Dokobit does not sign its postbacks: the receiver's URL secret says a postback came
through a URL we minted, not that what it says happened. A *confirmation* is an
async callable ``(event) -> True | False | None``: ``True`` the API agrees,
``False`` it does not (yet: the API can lag the postback, so the dispatcher asks
again, per its :class:`~dokobit_async.DispatchPolicy`, before setting the event aside
as ``unconfirmed``), ``None`` it cannot tell. :func:`api_confirmation` builds the
default one from a client; tests and users may pass their own.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .events import Event, SignerDeclined, SignerSigned, SigningCompleted
from .exceptions import NotFoundError

if TYPE_CHECKING:
    from .client import DokobitClient
    from .models import SigningStatus

__all__ = ["Confirmation", "api_confirmation", "chosen", "confirm", "confirmed"]

Confirmation = Callable[[Event], Awaitable[bool | None]]
"""Whether the API agrees with an event: True, False (not, or not yet) or None."""

_REMEMBERED = 4096
"""Signings per client whose flow :func:`confirm` remembers (the most recent ones)."""

# the flow that knew each signing, per client: a signing's next events ask that flow
# first, so an internal signing's events cost one status read each, not two
_flows: weakref.WeakKeyDictionary[DokobitClient, OrderedDict[str, bool]] = (
    weakref.WeakKeyDictionary()
)


async def confirm(client: DokobitClient, event: Event) -> bool | None:
    """Whether the status endpoint agrees with ``event``.

    A completed event is confirmed by a signing that is ``completed`` (or already
    ``archived``), a signed or declined one by that signer's status. Events the
    status endpoint does not show (created, archived, e-delivery, unknown) are
    ``None``. A signing neither flow knows is ``False``. The flow that knew a
    signing is asked first for its next events.
    """
    if not isinstance(event, (SigningCompleted, SignerSigned, SignerDeclined)) or not event.token:
        return None
    status: SigningStatus | None = None
    known = _flows.setdefault(client, OrderedDict())
    internal_first = known.get(event.token, False)
    for internal in (internal_first, not internal_first):
        flow = client.internal if internal else client.external
        try:
            status = await flow.status(event.token)
        except NotFoundError:
            continue
        known[event.token] = internal
        known.move_to_end(event.token)
        if len(known) > _REMEMBERED:
            known.popitem(last=False)
        break
    if status is None:
        return False
    if isinstance(event, SigningCompleted):  # an archived signing was completed first
        return status.status in ("completed", "archived")
    wanted = "signed" if isinstance(event, SignerSigned) else "declined"
    people = [s for s in status.signers if event.signer in (s.token, s.external_id)]
    return any(s.status == wanted for s in people) if people else True


def api_confirmation(client: DokobitClient) -> Confirmation:
    """The default confirmation: :func:`confirm` with ``client`` (its reads share the
    client's rate limit)."""
    return functools.partial(confirm, client)


def chosen(client: DokobitClient | None, confirm: bool | Confirmation) -> Confirmation | None:
    """The confirmation that ``confirm`` asks for: your callable as it is; with
    ``True``, :func:`api_confirmation` of ``client`` (none without a client); none
    with ``False``."""
    if callable(confirm):
        return confirm
    return api_confirmation(client) if client is not None and confirm else None


async def confirmed(
    confirmation: Confirmation, event: Event, *, attempts: int, delay: float
) -> bool | None:
    """Ask ``confirmation`` about ``event`` up to ``attempts`` times while it says
    ``False`` (the API can lag the postback), ``delay`` seconds before the second
    read, doubling. ``False`` when every read contradicted the event; what the
    confirmation raised propagates (the caller retries the event later)."""
    for attempt in range(attempts):
        verdict = await confirmation(event)
        if verdict is not False:
            return verdict
        if attempt + 1 < attempts:
            await asyncio.sleep(delay * 2**attempt)
    return False
