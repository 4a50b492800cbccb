"""Griffe extension: the client's actions made by ``json_action``, as the methods they are.

The namespaces' actions are written ``create = json_action(_actions.external_create,
CreatedSigning)``: at runtime that makes a method whose signature is the builder's
(less the ``flow`` that ``flow=`` fixes) and whose docstring is the builder's
(``{flow}`` replaced). Griffe reads the source without running it, so it sees an
attribute, and the reference would have neither the method nor its signature. This
extension builds the same method from the source: ``self``, the builder's parameters
(without the first when ``flow=`` is given), the model as the return type, and the
builder's docstring.

A problem in such a docstring (a parameter it documents that the signature lacks)
is reported at the ``json_action`` line that made the method; the text itself is the
builder's, in ``dokobit_async._actions``. A ``json_action`` whose builder cannot be
found stops the build: the reference would silently lack that method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import griffe

_MAKER = "json_action"


def _classes(obj: griffe.Object) -> Iterator[griffe.Class]:
    if isinstance(obj, griffe.Class):
        yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _classes(member)  # type: ignore[arg-type]


def _keyword(call: griffe.ExprCall, name: str) -> str | None:
    for argument in call.arguments:
        if isinstance(argument, griffe.ExprKeyword) and argument.name == name:
            return str(argument.value).strip("'\"")
    return None


class UnboundActionError(Exception):
    """A ``json_action`` call this extension cannot follow: the reference would miss
    the method, so the build stops instead."""


def _method(attribute: griffe.Attribute, call: griffe.ExprCall) -> griffe.Function:
    """The method that ``call`` makes; raises :class:`UnboundActionError` when its
    builder cannot be found."""
    where = f"{attribute.path} (line {attribute.lineno})"
    positional = [a for a in call.arguments if not isinstance(a, griffe.ExprKeyword)]
    if len(positional) != 2:
        raise UnboundActionError(f"{where}: json_action takes (builder, Model)")
    builder_ref, model = positional
    path = getattr(builder_ref, "canonical_path", None)
    try:
        builder = attribute.modules_collection[path] if path else None
        if isinstance(builder, griffe.Alias):  # re-exported by the builders' package
            builder = builder.final_target
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        builder = None
    if not isinstance(builder, griffe.Function):
        raise UnboundActionError(f"{where}: builder {path or builder_ref} not found")
    flow = _keyword(call, "flow")
    parameters = list(builder.parameters)[1 if flow else 0 :]
    method = griffe.Function(
        attribute.name,
        lineno=attribute.lineno,
        endlineno=attribute.endlineno,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind("positional or keyword")),
            *parameters,
        ),
        returns=model,
    )
    method.labels.add("async")
    if builder.docstring is not None:
        text = builder.docstring.value
        method.docstring = griffe.Docstring(
            text.replace("{flow}", flow) if flow else text,
            lineno=attribute.lineno,
            endlineno=attribute.endlineno,
            parent=method,
            parser=builder.docstring.parser,
            parser_options=builder.docstring.parser_options,
        )
    return method


class BoundActions(griffe.Extension):
    """Replaces each ``name = json_action(builder, Model)`` attribute of a class by the
    method it makes (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe once the whole package is loaded (names resolve)."""
        for cls in list(_classes(pkg)):
            for name, member in list(cls.members.items()):
                value = getattr(member, "value", None)
                if (
                    isinstance(member, griffe.Attribute)
                    and isinstance(value, griffe.ExprCall)
                    and str(value.function).rsplit(".", 1)[-1] == _MAKER
                ):
                    cls.set_member(name, _method(member, value))
