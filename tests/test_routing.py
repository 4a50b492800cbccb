"""Tests for ``dokobit_async.routing.Router``: matching, composition, names, dispatch."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import attrs
import pytest

from dokobit_async.events import (
    Event,
    SignerSigned,
    SigningArchived,
    SigningCompleted,
    UnknownEvent,
)
from dokobit_async.exceptions import HandlerError
from dokobit_async.routing import Router

# Every event is built directly: routing must not depend on parsing.
COMPLETED = SigningCompleted(action="signing_completed", token="T")
ARCHIVED = SigningArchived(action="signing_archived", token="T")
SIGNED = SignerSigned(action="signer_signed", token="T", signer="S")
UNKNOWN_X = UnknownEvent(action="x", token="T")
ALL_EVENTS = [COMPLETED, ARCHIVED, SIGNED, UNKNOWN_X]


@attrs.frozen(kw_only=True)
class SpecialCompleted(SigningCompleted):
    """A user subclass: handlers of ``SigningCompleted`` must see it too."""


SPECIAL = SpecialCompleted(action="signing_completed", token="T")


class Recorder:
    """Makes named async handlers that note which events they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Event]] = []

    def handler(self, label: str) -> Any:
        async def handle(event: Event) -> None:
            self.calls.append((label, event))

        handle.__qualname__ = f"Recorder.{label}"
        return handle

    def labels(self) -> list[str]:
        return sorted(label for label, _ in self.calls)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def matched(router: Router, event: Event) -> list[str]:
    """The qualname tails of the handlers that match ``event``."""
    return sorted(name.rsplit(".", 1)[-1] for name in router.handlers_for(event))


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (SigningCompleted, [COMPLETED, SPECIAL]),
        (SigningArchived, [ARCHIVED]),
        (UnknownEvent, [UNKNOWN_X]),
        (Event, [*ALL_EVENTS, SPECIAL]),
        ("signing_completed", [COMPLETED, SPECIAL]),
        ("signer_signed", [SIGNED]),
        ("x", [UNKNOWN_X]),
        ("y", []),
        (None, [*ALL_EVENTS, SPECIAL]),
    ],
    ids=[
        "class",
        "sibling class",
        "UnknownEvent class",
        "Event base",
        "action string",
        "other action string",
        "unknown action string",
        "unmatched string",
        "None = any",
    ],
)
async def test_key_matches_exactly_its_events(
    key: type[Event] | str | None, expected: list[Event], rec: Recorder
) -> None:
    """A class key matches instances (subclasses too), a string the ``action`` (unknown
    actions too), ``None`` everything; nothing else runs."""
    router = Router()
    router.add(key, rec.handler("h"))
    for event in [*ALL_EVENTS, SPECIAL]:
        outcome = await router.dispatch(event)
        assert list(outcome.values()) == ([None] if event in expected else [])
    assert [event for _, event in rec.calls] == [
        e for e in [*ALL_EVENTS, SPECIAL] if e in expected
    ]


async def test_decorators_register_and_return_the_handler(rec: Recorder) -> None:
    """``on(cls)``, ``on(action)`` and ``on_any`` register and hand the function back."""
    router = Router()
    by_class, by_action, anything = rec.handler("cls"), rec.handler("act"), rec.handler("any")
    assert router.on(SigningCompleted)(by_class) is by_class
    assert router.on("x")(by_action) is by_action
    assert router.on_any(anything) is anything
    assert matched(router, COMPLETED) == ["any", "cls"]
    assert matched(router, UNKNOWN_X) == ["act", "any"]
    assert matched(router, SIGNED) == ["any"]
    await router.dispatch(UNKNOWN_X)
    assert rec.labels() == ["act", "any"]


@pytest.mark.parametrize("key", [dict, int, Exception, attrs.Attribute])
def test_registering_a_non_event_class_raises_type_error(key: type, rec: Recorder) -> None:
    """A class that is not an ``Event`` is a mistake, caught at registration."""
    router = Router()
    with pytest.raises(TypeError, match="not an event class"):
        router.add(key, rec.handler("h"))
    with pytest.raises(TypeError, match="not an event class"):
        router.on(key)(rec.handler("h"))
    assert router.handlers() == {}


def test_registering_a_non_callable_raises_type_error() -> None:
    """A handler must be callable."""
    router = Router()
    with pytest.raises(TypeError, match="handler must be"):
        router.add(SigningCompleted, "not callable")  # type: ignore[arg-type]
    assert router.handlers() == {}


# --------------------------------------------------------------------------- composition


async def test_composed_router_runs_handlers_of_all_children(rec: Recorder) -> None:
    """``Router(a, b)`` runs its own handlers and those of ``a`` and ``b``, including
    handlers registered on a child after composing."""
    a, b = Router(), Router()
    a.on(SigningCompleted)(rec.handler("a1"))
    b.on("signing_completed")(rec.handler("b1"))
    app = Router(a, b)
    app.on_any(rec.handler("own"))
    a.on_any(rec.handler("a_late"))
    nested = Router(app)
    outcome = await nested.dispatch(COMPLETED)
    assert rec.labels() == ["a1", "a_late", "b1", "own"]
    assert sorted(name.rsplit(".", 1)[-1] for name in outcome) == rec.labels()
    assert set(outcome.values()) == {None}


async def test_handlers_added_after_a_dispatch_count_at_the_next(rec: Recorder) -> None:
    """What a router found for an event class and action is not kept past a change:
    a handler registered on the router, or on a child, after events were dispatched
    runs for the next event, and its name is in ``handlers_for``."""
    child = Router()
    child.on(SigningCompleted)(rec.handler("first"))
    app = Router(child)
    assert list(await app.dispatch(COMPLETED)) == list(app.handlers_for(COMPLETED))
    child.on("signing_completed")(rec.handler("child_late"))
    app.on_any(rec.handler("own_late"))
    assert len(await app.dispatch(COMPLETED)) == 3
    assert rec.labels() == ["child_late", "first", "first", "own_late"]
    assert matched(app, COMPLETED) == ["child_late", "first", "own_late"]
    assert matched(app, SIGNED) == ["own_late"]


async def test_a_lone_handler_keeps_the_dispatch_contract() -> None:
    """With one matching handler, its failure is its outcome (never raised), and its
    cancellation propagates, as with several."""
    failing, cancelled = Router(), Router()

    @failing.on_any
    async def broken(event: Event) -> None:
        raise KeyError("no such row")

    @cancelled.on_any
    async def gives_up(event: Event) -> None:
        raise asyncio.CancelledError

    outcome = await failing.dispatch(COMPLETED)
    [(name, error)] = outcome.items()
    assert name.endswith("broken")
    assert isinstance(error, KeyError)
    with pytest.raises(HandlerError):
        await failing.receive(COMPLETED)
    with pytest.raises(asyncio.CancelledError):
        await cancelled.dispatch(COMPLETED)


async def test_each_handler_runs_in_a_context_of_its_own() -> None:
    """A context variable a handler sets stays with that run: the next event's
    handler, dispatched from the same task (as a dispatch worker does), does not see
    it, with one handler as with several."""
    seen: list[str | None] = []
    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    lone = Router()

    @lone.on_any
    async def note(event: Event) -> None:
        seen.append(marker.get())
        marker.set(event.action)

    await lone.dispatch(COMPLETED)
    await lone.dispatch(SIGNED)
    assert seen == [None, None]
    assert marker.get() is None


async def test_handler_registered_in_several_places_runs_once(rec: Recorder) -> None:
    """One function registered by class, by action, for any, and in two composed
    routers is one handler: listed once, run once."""
    shared = rec.handler("shared")
    a, b = Router(), Router()
    a.on(SigningCompleted)(shared)
    a.on("signing_completed")(shared)
    b.on_any(shared)
    app = Router(a, b)
    app.on_any(shared)
    assert len(app.handlers()) == 1
    outcome = await app.dispatch(COMPLETED)
    assert len(outcome) == 1
    assert rec.labels() == ["shared"]


async def test_bound_method_registered_twice_runs_once() -> None:
    """``obj.method`` makes a new (equal) bound-method object on each access; the
    same method registered twice is still one handler that runs once."""

    class Service:
        def __init__(self) -> None:
            self.seen: list[Event] = []

        async def on_completed(self, event: Event) -> None:
            self.seen.append(event)

    service = Service()
    router = Router()
    router.on(SigningCompleted)(service.on_completed)
    router.on_any(service.on_completed)
    outcome = await router.dispatch(COMPLETED)
    assert list(outcome) == [f"{__name__}.{Service.on_completed.__qualname__}"]
    assert service.seen == [COMPLETED]


def test_repr_counts_handlers(rec: Recorder) -> None:
    """``repr`` shows how many distinct handlers the router (with children) holds."""
    child = Router()
    child.on_any(rec.handler("a"))
    router = Router(child)
    router.on_any(rec.handler("b"))
    assert repr(router) == "<Router 2 handlers>"


# --------------------------------------------------------------------------- names


async def handler_at_module_level(event: Event) -> None:
    """A plain module-level handler."""


class CallableHandler:
    async def __call__(self, event: Event) -> None:
        """A callable object as handler."""


def test_handler_names_are_module_and_qualname() -> None:
    """Names are ``module.qualname`` (the class's, for a callable object), so they stay
    the same across restarts."""

    async def nested(event: Event) -> None:
        """A handler defined inside a function."""

    router = Router()
    router.on_any(handler_at_module_level)
    router.on_any(nested)
    router.on_any(CallableHandler())
    assert list(router.handlers()) == [
        f"{__name__}.handler_at_module_level",
        f"{__name__}.test_handler_names_are_module_and_qualname.<locals>.nested",
        f"{__name__}.CallableHandler",
    ]


def test_same_qualname_is_disambiguated_stably() -> None:
    """Two different functions with the same qualname (lambdas) get ``#2``, ``#3`` in
    registration order, and the same registrations give the same names again."""

    def build() -> tuple[Router, list[Any]]:
        router = Router()
        functions = [lambda event: asyncio.sleep(0) for _ in range(3)]
        for function in functions:
            router.on_any(function)
        return router, functions

    router, functions = build()
    base = f"{__name__}.{functions[0].__qualname__}"
    assert base.endswith(".<lambda>")
    names = router.handlers()
    assert list(names) == [base, f"{base}#2", f"{base}#3"]
    assert list(names.values()) == functions
    assert list(router.handlers()) == list(names)  # stable on every call
    assert list(build()[0].handlers()) == list(names)  # and across instances


async def test_lambda_handlers_all_run_under_their_names() -> None:
    """Disambiguated handlers are distinct in ``dispatch``'s result too."""
    seen: list[int] = []

    def note(i: int) -> Coroutine[Any, Any, None]:
        seen.append(i)
        return asyncio.sleep(0)

    router = Router()
    for index in range(2):
        router.on_any(lambda event, i=index: note(i))
    outcome = await router.dispatch(COMPLETED)
    assert len(outcome) == 2
    assert list(outcome.values()) == [None, None]
    assert sorted(seen) == [0, 1]


# --------------------------------------------------------------------------- dispatch


async def test_handlers_of_one_event_run_concurrently() -> None:
    """Handler A waits for what B sets; in sequence (A first) this would deadlock."""
    b_ran = asyncio.Event()
    a_saw_b = asyncio.Event()

    async def handler_a(event: Event) -> None:
        await b_ran.wait()
        a_saw_b.set()

    async def handler_b(event: Event) -> None:
        b_ran.set()
        await a_saw_b.wait()  # B also waits for A: neither order works sequentially

    router = Router()
    router.on(SigningCompleted)(handler_a)
    router.on_any(handler_b)
    outcome = await asyncio.wait_for(router.dispatch(COMPLETED), timeout=5)
    assert list(outcome.values()) == [None, None]
    assert b_ran.is_set()
    assert a_saw_b.is_set()


async def test_failing_handler_does_not_stop_others_and_outcome_names_each() -> None:
    """One handler's exception is returned under its name, others still run and map to
    ``None``; dispatch itself does not raise."""
    ran: list[str] = []
    boom = ValueError("boom")

    async def first(event: Event) -> None:
        ran.append("first")

    async def failing(event: Event) -> None:
        raise boom

    async def slow_after_failure(event: Event) -> None:
        await asyncio.sleep(0.01)
        ran.append("slow")

    async def failing_too(event: Event) -> None:
        raise KeyError("k")

    router = Router()
    for handler in (first, failing, slow_after_failure, failing_too):
        router.on_any(handler)
    outcome = await router.dispatch(SIGNED)
    prefix = f"{__name__}.test_failing_handler_does_not_stop_others_and_outcome_names_each"
    assert list(outcome) == [
        f"{prefix}.<locals>.{name}"
        for name in ("first", "failing", "slow_after_failure", "failing_too")
    ]
    values = list(outcome.values())
    assert values[0] is None
    assert values[1] is boom
    assert values[2] is None
    assert isinstance(values[3], KeyError)
    assert sorted(ran) == ["first", "slow"]


async def test_non_awaitable_handler_fails_alone(rec: Recorder) -> None:
    """A sync function registered by mistake is reported as that handler's failure."""

    def sync_handler(event: Event) -> None:
        return None

    router = Router()
    router.on_any(sync_handler)  # type: ignore[type-var]  # not async, on purpose
    router.on_any(rec.handler("ok"))
    outcome = await router.dispatch(COMPLETED)
    by_tail = {name.rsplit(".", 1)[-1]: result for name, result in outcome.items()}
    assert isinstance(by_tail["sync_handler"], TypeError)
    assert by_tail["ok"] is None
    assert rec.labels() == ["ok"]


async def test_skip_leaves_out_named_handlers(rec: Recorder) -> None:
    """``skip=`` names handlers (e.g. those that already succeeded) not to run again;
    they are absent from the result; unknown names in ``skip`` are ignored."""
    router = Router()
    for label in ("a", "b", "c"):
        router.on_any(rec.handler(label))
    names = list(router.handlers())
    outcome = await router.dispatch(COMPLETED, skip={names[0], names[2], "no.such.handler"})
    assert list(outcome) == [names[1]]
    assert rec.labels() == ["b"]
    assert await router.dispatch(COMPLETED, skip=names) == {}
    assert rec.labels() == ["b"]


async def test_dispatch_with_no_matching_handler_is_empty(rec: Recorder) -> None:
    """No match: nothing runs, an empty result."""
    router = Router()
    router.on("other")(rec.handler("h"))
    assert await router.dispatch(COMPLETED) == {}
    assert await Router().dispatch(COMPLETED) == {}
    assert rec.calls == []


async def test_cancelling_dispatch_propagates_and_cancels_handlers() -> None:
    """Cancelling ``dispatch`` raises ``CancelledError`` in the caller (not a result
    entry) and cancels the running handlers."""
    started = asyncio.Event()
    cancelled: list[str] = []

    async def waits_forever(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("waits_forever")
            raise

    async def quick(event: Event) -> None:
        return None

    router = Router()
    router.on_any(waits_forever)
    router.on_any(quick)
    task = asyncio.create_task(router.dispatch(COMPLETED))
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert task.cancelled()
    assert cancelled == ["waits_forever"]


async def test_explicit_names_are_recorded_and_never_shift() -> None:
    """Handlers that share a qualname can be named; named ones keep their name
    whatever the registration order, and a name cannot be taken twice."""

    def make() -> Callable[[Event], Awaitable[None]]:
        async def handler(event: Event) -> None:
            return None

        return handler

    first, second = make(), make()
    router = Router()
    router.add(None, second, name="second")
    router.add(None, first, name="first")
    assert router.handlers() == {"first": first, "second": second}
    with pytest.raises(ValueError, match="taken"):
        router.add(None, make(), name="first")
    other = Router()
    other.add(None, make(), name="first")
    with pytest.raises(ValueError, match="two handlers are named"):
        Router(router, other).handlers()


async def test_receive_runs_every_handler_and_reports_every_failure_together() -> None:
    """``receive`` runs all matching handlers, failing or not, then raises one
    ``HandlerError`` that names each failed handler with its exception; with no
    failure it returns quietly."""
    ran: list[str] = []
    router = Router()

    @router.on(SigningCompleted, name="ok")
    async def ok(event: Event) -> None:
        ran.append("ok")

    @router.on(SigningCompleted, name="first")
    async def first(event: Event) -> None:
        ran.append("first")
        raise ValueError("first broke")

    @router.on(SigningCompleted, name="second")
    async def second(event: Event) -> None:
        ran.append("second")
        raise KeyError("second broke")

    event = SigningCompleted(action="signing_completed", token="T")
    with pytest.raises(HandlerError) as caught:
        await router.receive(event)
    assert sorted(ran) == ["first", "ok", "second"]
    error = caught.value
    assert error.event is event
    assert list(error.errors) == ["first", "second"]
    assert isinstance(error.errors["first"], ValueError)
    assert isinstance(error.errors["second"], KeyError)
    assert error.__cause__ is error.errors["first"]
    assert "2 of 3 handlers failed for signing_completed" in str(error)
    assert "first broke" in str(error)
    assert "second broke" in str(error)
    quiet = Router()
    quiet.add(SigningCompleted, ok)
    assert cast(object, await quiet.receive(event)) is None  # typed None: checked at run time


async def test_outcomes_come_back_in_registration_order_named_or_not() -> None:
    """``dispatch`` reports in the order the handlers were registered, whether they
    have an explicit name or not, so ``receive``'s first failure is the first
    registered."""
    router = Router()

    async def first(event: Event) -> None:
        raise ValueError("first")

    async def second(event: Event) -> None:
        raise ValueError("second")

    router.add(None, first)
    router.add(None, second, name="named-second")
    event = SigningCompleted(action="signing_completed", token="T")
    outcome = await router.dispatch(event)
    assert list(outcome) == [f"{__name__}.{first.__qualname__}", "named-second"]
    with pytest.raises(HandlerError) as caught:
        await router.receive(event)
    assert str(caught.value.__cause__) == "first"
