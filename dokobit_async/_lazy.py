"""A package's public names, imported on first use (PEP 562).

``dokobit_async`` and ``dokobit_async.testing`` list each public name with the
private module that defines it; a name is imported when it is first read, then kept
in the package's namespace. So importing the package, or a pure module of it, does
not import aiohttp, and ``dir()`` still shows every public name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's ``__name__``.
        exports: Each public name and the module, relative to ``package``, that
            defines it.
        namespace: The package's ``globals()``; a name read once is stored there.

    Returns:
        tuple: ``(__getattr__, __dir__)``, to assign at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
