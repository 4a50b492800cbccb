"""How a pure builder from ``_actions`` becomes an honest client method.

``create = json_action(_actions.external_create, CreatedSigning)`` in a class body
makes a coroutine method that builds the request with the builder, sends it through
the owner's ``_json`` and decodes the answer into the model. The builder stays the
single source of the parameters; the method tells the truth about itself at runtime:

- ``__signature__``: ``self``, then the builder's parameters without the internal
  ones (the ``flow`` that ``flow=`` fixes), and the model as the return annotation,
  so ``inspect.signature``, ``help()``, Jupyter and Sphinx show what the API takes;
- ``__annotations__``: the same, evaluated, so ``typing.get_type_hints`` works;
- ``__name__``, ``__qualname__`` (``ExternalSignings.create``) and ``__module__`` of
  the class it is assigned in;
- ``__doc__``: the builder's docstring, which is written for users of the method
  (``{flow}`` replaced by the flow);
- a ``TypeError`` for a call that does not fit names the method, not the private
  builder (it is raised on ``await``, as for any coroutine function taking
  ``*args``; mypy reports such a call before it runs).

mypy sees precise parameter and return types through :class:`JSONAction`'s
``__get__`` (a ``ParamSpec``). At runtime the descriptor lives only until its class
is created: ``__set_name__`` puts the plain function in its place, so the class holds
an ordinary function, which is what every documentation tool expects.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from ._actions import Flow
from ._request import Request

__all__ = ["JSONAction", "json_action"]

P = ParamSpec("P")
T = TypeVar("T")

_SELF = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Sends(Protocol):
    def _json(self, request: Request, model: type[T]) -> Awaitable[T]: ...


class JSONAction(Generic[P, T]):
    """A method made by :func:`json_action`; replaces itself by its function.

    Args:
        function: The method, already carrying its signature and docstring.
    """

    def __init__(self, function: Callable[..., Coroutine[Any, Any, T]]):
        self.function = function

    def __set_name__(self, owner: type, name: str) -> None:
        self.function.__name__ = name
        self.function.__qualname__ = f"{owner.__qualname__}.{name}"
        self.function.__module__ = owner.__module__
        # type.__new__ calls __set_name__ on a copy of the class namespace, so the
        # class may be changed here: it keeps the plain function, not this descriptor
        setattr(owner, name, self.function)

    @overload
    def __get__(
        self, obj: None, owner: type | None = None
    ) -> Callable[Concatenate[_Sends, P], Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(
        self, obj: _Sends, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: _Sends | None, owner: type | None = None) -> Any:
        # only reached when the descriptor was not assigned in a class body
        return self.function if obj is None else types.MethodType(self.function, obj)


@overload
def json_action(
    builder: Callable[Concatenate[Flow, P], Request], model: type[T], *, flow: Flow
) -> JSONAction[P, T]: ...
@overload
def json_action(builder: Callable[P, Request], model: type[T]) -> JSONAction[P, T]: ...
def json_action(
    builder: Callable[..., Request], model: type[T], *, flow: Flow | None = None
) -> JSONAction[Any, T]:
    """Bind ``builder`` as a method that sends its request and returns a ``model``.

    Args:
        builder: A pure builder from ``_actions``; its docstring becomes the
            method's.
        model: The attrs model the JSON answer is decoded into.
        flow: For a builder shared by both signing flows (its first parameter):
            the flow this method is for.

    Returns:
        JSONAction: Assign it in a class body; the class then holds the method.
    """
    shown = inspect.signature(builder)
    hints = typing.get_type_hints(builder)
    parameters = list(shown.parameters.values())
    call = builder
    if flow is not None:
        hints.pop(parameters[0].name, None)
        parameters = parameters[1:]
        call = functools.partial(builder, flow)
    public = shown.replace(parameters=parameters, return_annotation=model.__name__)

    async def method(self: _Sends, *args: Any, **kwargs: Any) -> T:
        try:
            request = call(*args, **kwargs)
        except TypeError:
            _reword_mismatch(public, method.__qualname__, args, kwargs)
            raise
        return await self._json(request, model)

    method.__name__ = method.__qualname__ = builder.__name__
    doc = builder.__doc__ or ""
    method.__doc__ = doc if flow is None else doc.replace("{flow}", flow)
    method.__annotations__ = {**hints, "return": model}
    setattr(method, "__signature__", public.replace(parameters=[_SELF, *parameters]))  # noqa: B010 - mypy: no such attribute on a function
    return JSONAction(method)


def _reword_mismatch(
    public: inspect.Signature, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Raise the builder's ``TypeError`` for a wrong call again, naming the method.

    Returns without raising when the arguments do fit: the ``TypeError`` came from
    inside the builder and stays as it is.
    """
    try:
        public.bind(*args, **kwargs)
    except TypeError as mismatch:
        raise TypeError(f"{name}(): {mismatch}") from None
