"""``Router``: which async handlers run for which postback event.

::

    router = Router()

    @router.on(SigningCompleted)          # by event class (subclasses match too)
    async def archive(event): ...

    @router.on("signer_signed")           # by action string (unknown actions too)
    async def note(event): ...

    @router.on_any
    async def audit(event): ...

    app_router = Router(router, other_router)   # routers compose

The handlers of one event run concurrently, and one handler's failure never keeps
another from running: :meth:`Router.dispatch` returns each handler's outcome. Each
handler has a stable name (``module.qualname``) so that the receiver can remember
which handlers already succeeded for an event across restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from . import _telemetry
from ._redact import error_text, printable
from .events import Event
from .exceptions import HandlerError

if TYPE_CHECKING:
    from ._inbox_base import StoredEvent
    from ._telemetry import ReceiverHooks

__all__ = ["Handler", "Router", "dispatch_attempt"]

Handler = Callable[[Any], Awaitable[object]]
"""An async callable that takes an event; what it returns is ignored."""
H = TypeVar("H", bound=Handler)
Key = type[Event] | str | None  # None: every event
_FOUND_MAX = 256  # (event class, action) pairs whose handlers a router remembers


def _base_name(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


class Router:
    """Which async handlers run for which postback event.

    Args:
        *routers: Routers whose handlers this one runs too (``Router(a, b)``); they
            are read at dispatch time, so handlers added to them later count.
    """

    def __init__(self, *routers: Router):
        self._routes: list[tuple[Key, Handler]] = []
        self._names: dict[int, str] = {}  # id(handler) -> explicit name
        self._keep: list[Handler] = []
        self._children = routers
        # what handlers_for found, by (event class, action), while the routes of this
        # router and its children stay as they were (they only ever grow)
        self._found: dict[tuple[type[Event], str], dict[str, Handler]] = {}
        self._found_for: object = None

    def __repr__(self) -> str:
        return f"<Router {len(self.handlers())} handlers>"

    def add(
        self, key: type[Event] | str | None, handler: Handler, *, name: str | None = None
    ) -> None:
        """Register ``handler`` for an event class, an action string, or every event.

        Args:
            key: An event class (its subclasses match too, e.g.
                ``SigningCompleted``), an action string (``"signer_signed"``; unknown
                actions too), or ``None`` for every event.
            handler: An async callable taking the event.
            name: What the receiver records when the handler succeeds for an event,
                so that it is not run again after a restart. Default:
                ``module.qualname``. Give one when several handlers share a qualname
                (lambdas, factories): unnamed ones are told apart by registration
                order (``#2``, ``#3``), which must then stay the same across deploys.

        Raises:
            TypeError: ``key`` is none of the above, or ``handler`` is not callable.
            ValueError: ``name`` is empty or already taken in this router.
        """
        if not (
            key is None
            or isinstance(key, str)
            or (isinstance(key, type) and issubclass(key, Event))
        ):
            raise TypeError(f"not an event class, an action string or None: {key!r}")
        if not callable(handler):
            raise TypeError(f"handler must be an async callable, not {handler!r}")
        if name is not None:
            if not name or name in self._names.values():
                raise ValueError(f"handler name {name!r} is empty or taken")
            self._names[id(handler)] = name
            self._keep.append(handler)  # so that id(handler) stays this handler's
        self._routes.append((key, handler))

    def on(self, key: type[Event] | str, *, name: str | None = None) -> Callable[[H], H]:
        """Decorator: register the decorated handler for an event class or an action.

        Args:
            key: An event class (subclasses match too) or an action string.
            name: The handler's stable name, as for :meth:`add`.

        Returns:
            Callable: The decorator; it returns the handler unchanged.
        """

        def register(handler: H) -> H:
            self.add(key, handler, name=name)
            return handler

        return register

    def on_any(self, handler: H) -> H:
        """Decorator: register ``handler`` for every event.

        Args:
            handler: An async callable taking the event.

        Returns:
            Callable: ``handler`` itself, unchanged.
        """
        self.add(None, handler)
        return handler

    def _all_routes(self) -> list[tuple[Key, Handler, str | None]]:
        routes = [(key, h, self._names.get(id(h))) for key, h in self._routes]
        for child in self._children:
            routes.extend(child._all_routes())
        return routes

    def handlers(self) -> dict[str, Handler]:
        """Every registered handler, this router's and its children's, by stable name.

        Returns:
            dict[str, Handler]: Each handler once (a handler registered for several
            keys too), under its explicit name or ``module.qualname`` (``#2``,
            ``#3`` for repeats).

        Raises:
            ValueError: Two different handlers were given the same explicit name.
        """
        named: dict[str, Handler] = {}
        routes = self._all_routes()
        for _, handler, explicit in routes:  # explicit names first: they never move
            if explicit is not None:
                if explicit in named and named[explicit] != handler:
                    raise ValueError(f"two handlers are named {explicit!r}")
                named[explicit] = handler
        for _, handler, _explicit in routes:
            # equality, not identity: each ``obj.method`` access is a new bound method
            if any(handler == known for known in named.values()):
                continue
            base = name = _base_name(handler)
            index = 1
            while name in named:
                index += 1
                name = f"{base}#{index}"
            named[name] = handler
        return named

    def handlers_for(self, event: Event) -> dict[str, Handler]:
        """The handlers that match ``event``, by stable name.

        Args:
            event: A postback event.

        Returns:
            dict[str, Handler]: The handlers registered for its class (or a base
            class), its action string, or every event, in registration order.
        """
        return dict(self._handlers_for(event))

    def _routes_now(self) -> object:
        return (len(self._routes), tuple(child._routes_now() for child in self._children))

    def _handlers_for(self, event: Event) -> dict[str, Handler]:
        # the same answer for every event of one class and action: found once
        routes_now = self._routes_now()
        if routes_now != self._found_for:
            self._found.clear()
            self._found_for = routes_now
        key = (type(event), event.action)
        found = self._found.get(key)
        if found is None:
            if len(self._found) >= _FOUND_MAX:  # (unknown actions are the sender's choice)
                self._found.clear()
            found = self._found[key] = self._match(event)
        return found

    def _match(self, event: Event) -> dict[str, Handler]:
        named = self.handlers()
        chosen: dict[str, Handler] = {}
        for key, handler, _ in self._all_routes():
            if not (
                key is None
                or (isinstance(key, str) and key == event.action)
                or (isinstance(key, type) and isinstance(event, key))
            ):
                continue
            # equality, not identity: each ``obj.method`` access is a new bound method
            name = next(n for n, h in named.items() if h == handler)
            chosen.setdefault(name, named[name])
        return chosen

    async def dispatch(
        self, event: Event, *, skip: Collection[str] = ()
    ) -> dict[str, BaseException | None]:
        """Run the handlers that match ``event``; each one's outcome.

        The contract, as the receiver relies on it: every matching handler runs,
        whatever the others do; they run concurrently, none waits for another, and
        none is skipped or cancelled because another failed. Their exceptions are
        collected, not raised: each handler's outcome comes back by name, in
        registration order. Only cancellation propagates (of the dispatch, or of a
        handler). :meth:`receive` is the same run, with the failures raised together.

        Args:
            event: A postback event.
            skip: Names of handlers not to run (those that already succeeded for
                this event).

        Returns:
            dict[str, BaseException | None]: Each handler's outcome by name: ``None``
            for success, else the exception it raised.

        Raises:
            asyncio.CancelledError: The dispatch, or a handler, was cancelled.
        """
        return await self._dispatch(event, skip, None)

    async def _dispatch(
        self, event: Event, skip: Collection[str], traced: _Traced | None
    ) -> dict[str, BaseException | None]:
        chosen = {n: h for n, h in self._handlers_for(event).items() if n not in skip}
        if traced is None:  # (not instrumented: as it always was)
            runs = [self._run(handler, event) for handler in chosen.values()]
        else:
            runs = [traced.run(name, handler, event) for name, handler in chosen.items()]
        results = await asyncio.gather(*runs, return_exceptions=True)
        outcome: dict[str, BaseException | None] = {}
        for name, result in zip(chosen, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            outcome[name] = result if isinstance(result, BaseException) else None
        return outcome

    async def receive(self, event: Event) -> None:
        """Run every handler that matches ``event`` (as :meth:`dispatch` does), then
        report every failure together, as octokit's ``receive`` does.

        Args:
            event: A postback event.

        Raises:
            HandlerError: One or more handlers failed; ``errors`` holds each one's
                exception by handler name (the first is also the ``__cause__``).
            asyncio.CancelledError: The run, or a handler, was cancelled.
        """
        outcome = await self.dispatch(event)
        errors = {name: error for name, error in outcome.items() if error is not None}
        if not errors:
            return
        failed = "; ".join(f"{name}: {error_text(error)}" for name, error in errors.items())
        message = (
            f"{len(errors)} of {len(outcome)} handlers failed for "
            f"{printable(event.action)}: {printable(failed, 2000)}"
        )
        raise HandlerError(message, event=event, errors=errors) from next(iter(errors.values()))

    @staticmethod
    async def _run(handler: Handler, event: Event) -> None:
        await handler(event)


class _Traced:
    """Runs each handler of one attempt at a stored event in a span of its own
    (docs/architecture.md#postbacks-and-handlers)."""

    __slots__ = ("attempt", "hooks", "last", "stored")

    def __init__(self, hooks: ReceiverHooks, stored: StoredEvent, max_attempts: int):
        self.hooks = hooks
        self.stored = stored
        self.attempt = stored.attempts + 1  # (``attempts`` counts the failed ones)
        self.last = self.attempt >= max_attempts  # a failure now makes a dead letter

    async def run(self, name: str, handler: Handler, event: Event) -> None:
        # entered here, in the handler's own task: the span is current for the
        # handler's own work (its API calls are its children), and for nothing else
        with self.hooks.handler(name, self.stored, self.attempt) as span:
            try:
                await handler(event)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                span.finished(exc, dead=self.last)
                raise
            span.finished(None)


def dispatch_attempt(
    router: Router,
    event: Event,
    stored: StoredEvent,
    skip: Collection[str],
    max_attempts: int,
) -> Awaitable[dict[str, BaseException | None]]:
    """:meth:`Router.dispatch` for an attempt at ``stored``, as the dispatcher and the
    Redis workers run it: while instrumented, each handler in a span (its attempt, and
    whether a failure makes the event a dead letter, from ``stored.attempts`` and
    ``max_attempts``); otherwise exactly the plain run, the telemetry's slot read once."""
    hooks = _telemetry.receiver
    return router._dispatch(
        event, skip, None if hooks is None else _Traced(hooks, stored, max_attempts)
    )
