"""The one cattrs converter: API JSON in, response models out.

Rules: field names are the wire names; a missing or ``null`` field takes its default;
every model keeps the whole object in ``raw``; open enums keep unknown values as
``str``; dates are parsed leniently (an unparseable date becomes ``None``, the text
stays in ``raw``); scalars are coerced to ``str`` where the model wants text (the API
is not consistent about sending codes as numbers or strings).
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import cache
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import cattrs

T = TypeVar("T")

converter = cattrs.Converter()


Hook = Callable[[Any, Any], Any]


def _without_none(tp: Any) -> Any:
    """``X`` for ``X | None``; ``tp`` itself otherwise (``None`` values never reach
    the hooks: a ``null`` field takes its default)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = tuple(a for a in typing.get_args(tp) if a is not type(None))
        if len(args) == 1:
            return args[0]
        return typing.Union[args]  # noqa: UP007 - built from a runtime tuple
    return tp


def _open_enum_of(tp: Any) -> type[enum.Enum] | None:
    """The enum class of an ``Enum | str`` annotation."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(tp)
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if len(enums) == 1 and str in args and len(args) == 2:
        return enums[0]
    return None


def _structure_str(value: Any, _: Any = None) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__}")


_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
_FRACTION = re.compile(r"\.(\d+)")


def parse_datetime(value: Any, _: Any = None) -> datetime | None:
    """ISO-8601 (``Z`` allowed) or ``YYYY-MM-DD HH:MM:SS``; naive results are UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # what Python 3.10's fromisoformat does not read: "+0200", 1-5 or 7+ digit
        # fractions (normalised only on failure: this runs for every date answered)
        text = _OFFSET.sub(r"\1:\2", text)
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


@cache
def _hook(tp: Any) -> Hook:
    """The structuring function for one field type, resolved once per type."""
    tp = _without_none(tp)
    enum_cls = _open_enum_of(tp)
    if enum_cls is not None:
        known = {member.value: member for member in enum_cls}

        def open_enum(value: Any, _: Any = None) -> Any:
            text = value if type(value) is str else _structure_str(value)
            return known.get(text, text)

        return open_enum
    if tp is str:
        return _structure_str
    if tp is datetime:
        return parse_datetime
    if typing.get_origin(tp) is tuple:
        item_type = typing.get_args(tp)[0]
        item_hook = _hook(item_type)

        def many(value: Any, _: Any = None) -> tuple[Any, ...]:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return tuple([item_hook(item, item_type) for item in value])

        return many
    if _is_response_model(tp):
        return _model_structurer(tp)
    return converter.get_structure_hook(tp)


def _expression(index: int, tp: Any, scope: dict[str, Any]) -> str:
    """The generated code that structures ``v`` (not ``None``) into ``tp``: the common
    cases inline (text as it is, a known enum value, a list), the rest a hook call."""
    hook = scope[f"hook{index}"] = _hook(tp)
    tp = scope[f"type{index}"] = _without_none(tp)  # what cattrs' own hooks are told
    call = f"hook{index}(v, type{index})"
    enum_cls = _open_enum_of(tp)
    if enum_cls is not None:
        scope[f"known{index}"] = {member.value: member for member in enum_cls}
        return f"known{index}.get(v, v) if type(v) is str else {call}"
    if typing.get_origin(tp) is tuple:
        item_type = scope[f"item_type{index}"] = typing.get_args(tp)[0]
        scope[f"item{index}"] = _hook(item_type)
        return (
            f"tuple([item{index}(x, item_type{index}) for x in v]) if type(v) is list else {call}"
        )
    if hook is _structure_str:
        return f"v if type(v) is str else {call}"
    return call


def _slot(cls: type[Any], name: str) -> Any:
    """The descriptor of the slot ``name`` of ``cls`` (``None`` if it is no slot)."""
    found = inspect.getattr_static(cls, name, None)
    return found if isinstance(found, types.MemberDescriptorType) else None


def _built_directly(cls: type[Any]) -> bool:
    """Whether instances of ``cls`` may be built by setting their slots: every field
    is a slot, and nothing in its ``__init__`` does more than store each argument (no
    validator, converter or init hook), which is what every answer model is."""
    fields = attrs.fields(cls)
    return (
        all(_slot(cls, f.name) is not None for f in fields)
        and not any(f.validator or f.converter for f in fields)
        and not hasattr(cls, "__attrs_pre_init__")
        and not hasattr(cls, "__attrs_post_init__")
    )


@cache
def _model_structurer(cls: type[Any]) -> Hook:
    """The structuring function of a response model, generated as straight-line code.

    Every status answer structures several objects, so this is the call path's
    hottest pure code: one generated statement per field costs about half what a loop
    over a table of fields does (attrs generates its ``__init__`` the same way), and
    storing each value in its slot, half what the frozen ``__init__`` does with the
    same values. Each field: absent or ``null`` takes its default (a required one
    fails), text where text is expected is taken as it is, anything else goes through
    its hook.
    """
    attrs.resolve_types(cls)
    name = cls.__name__
    direct = _built_directly(cls)
    scope: dict[str, Any] = {
        "cls": cls,
        "new": object.__new__,
        "Mapping": Mapping,
        "MappingProxyType": MappingProxyType,
    }
    body = [
        "def structure(data, _=None):",
        "    if type(data) is dict:",
        "        raw = data",
        "    elif isinstance(data, Mapping):",  # the ABC check is slow: dicts skip it
        "        raw = dict(data)",
        "    else:",
        f"        raise TypeError('{name}: expected an object, got ' + type(data).__name__)",
        "    get = raw.get",
    ]
    values = []
    for index, field in enumerate(attrs.fields(cls)):
        if field.name == "raw":
            values.append((field, "MappingProxyType(raw)"))
            continue
        body.append(f"    v = get({field.name!r})")
        value = _expression(index, field.type, scope)
        default = field.default
        if default is attrs.NOTHING:
            body.append(f"    if v is None: raise TypeError('{name}: {field.name} is missing')")
        else:
            assert not isinstance(default, attrs.Factory), f"{name}.{field.name}"  # type: ignore[arg-type]
            scope[f"default{index}"] = default
            value = f"default{index} if v is None else {value}"
        body.append(f"    a{index} = {value}")
        values.append((field, f"a{index}"))
    if direct:
        body.append("    built = new(cls)")
        for index, (field, value) in enumerate(values):
            scope[f"store{index}"] = _slot(cls, field.name).__set__
            body.append(f"    store{index}(built, {value})")
        body.append("    return built")
    else:
        arguments = ", ".join(f"{field.alias}={value}" for field, value in values)
        body.append(f"    return cls({arguments})")
    exec("\n".join(body), scope)  # noqa: S102 - our own code, built from our own models
    structure: Hook = scope["structure"]
    return structure


def _is_response_model(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and "raw" in attrs.fields_dict(tp)


converter.register_structure_hook_factory(_is_response_model, _model_structurer)


_structurer_of: Callable[[Any], Hook] = cache(converter.get_structure_hook)  # once per class


def structure(data: Any, cls: type[T]) -> T:
    """Structure a decoded JSON object into the response model ``cls``."""
    result: T = _structurer_of(cls)(data, cls)
    return result
