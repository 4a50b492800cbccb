"""The one cattrs converter: API JSON in, response models out.

Rules: field names are the wire names; a missing or ``null`` field takes its default;
every model keeps the whole object in ``raw``; open enums keep unknown values as
``str``; dates are parsed leniently (an unparseable date becomes ``None``, the text
stays in ``raw``); scalars are coerced to ``str`` where the model wants text (the API
is not consistent about sending codes as numbers or strings).
"""

from __future__ import annotations

import enum
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


def _open_enum_of(tp: Any) -> type[enum.Enum] | None:
    """The enum class of an ``Enum | str`` (or ``Enum | str | None``) annotation."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if len(enums) == 1 and str in args and len(args) == 2:
        return enums[0]
    return None


def _structure_open_enum(value: Any, tp: Any) -> Any:
    if value is None:
        return None
    enum_cls = _open_enum_of(tp)
    assert enum_cls is not None
    text = str(value)
    try:
        return enum_cls(text)
    except ValueError:
        return text


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__}")


def parse_datetime(value: Any) -> datetime | None:
    """ISO-8601 (``Z`` allowed) or ``YYYY-MM-DD HH:MM:SS``; naive results are UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _is_optional_datetime(tp: Any) -> bool:
    return tp is datetime or (
        typing.get_origin(tp) in (typing.Union, types.UnionType)
        and datetime in typing.get_args(tp)
    )


def _is_response_model(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and "raw" in attrs.fields_dict(tp)


@cache
def _model_structurer(cls: type[Any]) -> Callable[[Any, Any], Any]:
    attrs.resolve_types(cls)
    fields = [(f.name, f.type) for f in attrs.fields(cls) if f.name != "raw"]

    def structure(data: Any, _: Any) -> Any:
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        kwargs = {
            name: converter.structure(data[name], tp)
            for name, tp in fields
            if data.get(name) is not None
        }
        return cls(**kwargs, raw=MappingProxyType(dict(data)))

    return structure


def _is_tuple(tp: Any) -> bool:
    origin: Any = typing.get_origin(tp)
    return origin is tuple


def _structure_tuple(value: Any, tp: Any) -> tuple[Any, ...]:
    (item_type, _ellipsis) = typing.get_args(tp)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(converter.structure(item, item_type) for item in value)


converter.register_structure_hook_func(
    lambda tp: _open_enum_of(tp) is not None, _structure_open_enum
)
converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook_func(
    _is_optional_datetime, lambda value, _: parse_datetime(value)
)
converter.register_structure_hook_func(_is_tuple, _structure_tuple)
converter.register_structure_hook_factory(_is_response_model, _model_structurer)


def structure(data: Any, cls: type[T]) -> T:
    """Structure a decoded JSON object into ``cls`` with our converter."""
    return converter.structure(data, cls)
