"""What a replay (or an export) chooses, and how a replayed event runs: shared by the
inboxes (:meth:`Inbox.replay <dokobit_async.inbox.Inbox.replay>`), the export, the
dispatcher and the Redis workers (docs/architecture.md#replay-and-export).

A replay moves ``done`` events back to ``pending``, counted in ``replays``; the
handlers see ``event.replay`` (:func:`replayed`), and a replay for one handler runs
that one alone, whatever ``handlers_done`` says of the others, pipeline consumers and
handlers registered since included (:func:`skipped_handlers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

import attrs

from ._inbox_base import StoredEvent
from ._redact import printable
from .events import Event
from .exceptions import InvalidArgumentError

__all__ = ["Selection", "check_replay", "replayed", "skipped_handlers"]

logger = logging.getLogger("dokobit_async.receiver")

_Event = TypeVar("_Event", bound=Event)


@attrs.frozen(kw_only=True)
class Selection:
    """Which events a replay or an export is about: received in ``[received_after,
    received_before)`` (unix time; None: no bound) and of ``action`` (None: any)."""

    received_after: float | None = None
    received_before: float | None = None
    action: str | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("received_after", "received_before"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise InvalidArgumentError(f"{name} must be a unix time or None: {value!r}")
        if self.action is not None and not isinstance(self.action, str):
            raise InvalidArgumentError(f"action must be a string or None: {self.action!r}")

    @property
    def everything(self) -> bool:
        """Whether no condition is given."""
        bounds = (self.received_after, self.received_before, self.action)
        return all(bound is None for bound in bounds)

    def matches(self, event: StoredEvent) -> bool:
        """Whether ``event`` meets every condition."""
        return (
            (self.received_after is None or event.received_at >= self.received_after)
            and (self.received_before is None or event.received_at < self.received_before)
            and (self.action is None or event.action == self.action)
        )


def check_replay(
    ids: Collection[str],
    received_after: float | None,
    received_before: float | None,
    action: str | None,
    handler: str | None,
) -> tuple[frozenset[str] | None, Selection]:
    """The arguments of :meth:`Inbox.replay` checked: the ids (None: any id) and the
    conditions.

    Raises:
        InvalidArgumentError: Neither ids nor a condition (a replay of everything is
            asked for with ``received_after=0``), ``ids`` is a string or holds
            something else, ``handler`` is empty or not a string, or a condition has
            the wrong type.
    """
    chosen = frozenset(() if isinstance(ids, str) else ids)
    if isinstance(ids, str) or not all(isinstance(i, str) and i for i in chosen):
        raise InvalidArgumentError("ids must be a collection of event ids")
    if handler is not None and not (isinstance(handler, str) and handler):
        raise InvalidArgumentError(f"handler must be a handler's name or None: {handler!r}")
    selection = Selection(
        received_after=received_after, received_before=received_before, action=action
    )
    if not chosen and selection.everything:
        raise InvalidArgumentError(
            "replay needs ids or a condition; to replay every done event, pass received_after=0"
        )
    return (chosen or None), selection


def skipped_handlers(
    stored: StoredEvent, names: Callable[[], Iterable[str]], more: Iterable[str] = ()
) -> frozenset[str]:
    """The handlers that an attempt at ``stored`` does not run: the ones done and, on
    a replay for one handler, every other one of ``names()`` (the handlers that match
    the event, asked for only then) and ``more``. Shared by the dispatcher and the
    Redis workers."""
    if stored.replay_handler is None:
        return stored.handlers_done
    every = frozenset(names()).union(more)
    if stored.replay_handler not in every:  # (a name mistyped, or a handler since removed)
        logger.warning(
            "postback %s replayed for handler %s, which does not handle it: nothing runs",
            printable(stored.action),
            printable(stored.replay_handler),
        )
    return stored.handlers_done | (every - {stored.replay_handler})


def replayed(event: _Event, stored: StoredEvent) -> _Event:
    """``event`` (parsed from ``stored``) as its handlers see it: its ``replay`` is
    ``stored.replays``."""
    return attrs.evolve(event, replay=stored.replays) if stored.replays else event
