"""The one cattrs converter: API JSON in, response models out.

Rules: field names are the wire names; a missing or ``null`` field takes its default;
every model keeps the whole object in ``raw``; open enums keep unknown values as
``str``; dates are parsed leniently (an unparseable date becomes ``None``, the text
stays in ``raw``); scalars are coerced to ``str`` where the model wants text (the API
is not consistent about sending codes as numbers or strings).
"""

from __future__ import annotations

import enum
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
        item_hook = _hook(typing.get_args(tp)[0])

        def many(value: Any, _: Any = None) -> tuple[Any, ...]:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return tuple([item_hook(item, None) for item in value])

        return many
    if _is_response_model(tp):
        return _model_structurer(tp)
    return converter.get_structure_hook(tp)


@cache
def _model_structurer(cls: type[Any]) -> Hook:
    attrs.resolve_types(cls)
    fields = [
        (f.name, hook, hook is _structure_str)
        for f in attrs.fields(cls)
        if f.name != "raw"
        for hook in (_hook(f.type),)
    ]

    def structure(data: Any, _: Any = None) -> Any:
        if type(data) is not dict and not isinstance(data, Mapping):  # (ABC check: slow)
            raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        kwargs = {}
        get = data.get
        for name, hook, is_text in fields:
            value = get(name)
            if value is None:
                continue
            # the common case, text where text is expected, skips the call (hot path)
            kwargs[name] = value if is_text and type(value) is str else hook(value, None)
        raw = data if type(data) is dict else dict(data)
        return cls(**kwargs, raw=MappingProxyType(raw))

    return structure


def _is_response_model(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and "raw" in attrs.fields_dict(tp)


converter.register_structure_hook_factory(_is_response_model, _model_structurer)


def structure(data: Any, cls: type[T]) -> T:
    """Structure a decoded JSON object into the response model ``cls``."""
    return converter.structure(data, cls)
