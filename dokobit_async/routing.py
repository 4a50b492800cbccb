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
from typing import Any, TypeVar

from .events import Event

__all__ = ["Handler", "Router"]

Handler = Callable[[Any], Awaitable[object]]
H = TypeVar("H", bound=Handler)
Key = type[Event] | str | None  # None: every event


def _base_name(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


class Router:
    """Handler registry; ``Router(a, b)`` also runs the handlers of ``a`` and ``b``."""

    def __init__(self, *routers: Router):
        self._routes: list[tuple[Key, Handler]] = []
        self._names: dict[int, str] = {}  # id(handler) -> explicit name
        self._keep: list[Handler] = []
        self._children = routers

    def __repr__(self) -> str:
        return f"<Router {len(self.handlers())} handlers>"

    def add(
        self, key: type[Event] | str | None, handler: Handler, *, name: str | None = None
    ) -> None:
        """Register ``handler`` for an event class, an action string, or (``None``)
        every event.

        ``name`` is what the receiver records when the handler succeeds for an event
        (default ``module.qualname``). Give one when several handlers share a
        qualname (lambdas, factories): unnamed ones are told apart by registration
        order (``#2``, ``#3``), which must then stay the same across deploys.
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
        """Decorator: register for an event class or an action string (``name`` as
        for :meth:`add`)."""

        def register(handler: H) -> H:
            self.add(key, handler, name=name)
            return handler

        return register

    def on_any(self, handler: H) -> H:
        """Decorator: register for every event."""
        self.add(None, handler)
        return handler

    def _all_routes(self) -> list[tuple[Key, Handler, str | None]]:
        routes = [(key, h, self._names.get(id(h))) for key, h in self._routes]
        for child in self._children:
            routes.extend(child._all_routes())
        return routes

    def handlers(self) -> dict[str, Handler]:
        """Every registered handler by its stable name (duplicates registered once)."""
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
        """The handlers that match ``event``, by name."""
        matching = [
            handler
            for key, handler, _ in self._all_routes()
            if key is None
            or (isinstance(key, str) and key == event.action)
            or (isinstance(key, type) and isinstance(event, key))
        ]
        return {name: h for name, h in self.handlers().items() if h in matching}

    async def dispatch(
        self, event: Event, *, skip: Collection[str] = ()
    ) -> dict[str, BaseException | None]:
        """Run the matching handlers (but those named in ``skip``) concurrently.

        Returns each handler's outcome: ``None`` for success, else its exception. A
        handler's exception never stops the others; cancellation still propagates.
        """
        chosen = {n: h for n, h in self.handlers_for(event).items() if n not in skip}
        results = await asyncio.gather(
            *(self._run(handler, event) for handler in chosen.values()),
            return_exceptions=True,
        )
        outcome: dict[str, BaseException | None] = {}
        for name, result in zip(chosen, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            outcome[name] = result if isinstance(result, BaseException) else None
        return outcome

    @staticmethod
    async def _run(handler: Handler, event: Event) -> None:
        await handler(event)
