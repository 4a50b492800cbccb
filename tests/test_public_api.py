"""The public surface is deliberate: sorted, complete, documented; pure modules pure."""

from __future__ import annotations

import inspect
import subprocess
import sys
from types import ModuleType

import pytest

import dokobit_async
import dokobit_async.otel
import dokobit_async.redis
import dokobit_async.sansio
import dokobit_async.testing
from dokobit_async import exceptions, models

PUBLIC_MODULES = [
    dokobit_async,
    dokobit_async.testing,
    dokobit_async.sansio,
    dokobit_async.redis,
    dokobit_async.otel,
]
"""The public API, as the README states it (the optional extra's face included):
everything else is private."""


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(module: ModuleType) -> None:
    """``__all__`` is kept sorted (case-sensitive, as ruff's RUF022 sorts it)."""
    assert module.__all__ == sorted(set(module.__all__), key=_ruff_order)


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_exactly_what_the_module_exports(module: ModuleType) -> None:
    """Each public module exports exactly its ``__all__``: every name in it resolves
    and is documented, and every other name the module binds to one of the package's
    classes, functions or values starts with ``_`` (so nothing is public by accident);
    a lazy module's table of exports is ``__all__`` itself."""
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
    exports = getattr(module, "_EXPORTS", None)
    if exports is not None:  # lazy (PEP 562): names come from the table only
        assert set(exports) == set(module.__all__) - {"__version__"}
        assert not hasattr(module, "NoSuchThing")
        for name in exports:  # load them all, then look at what the module binds
            getattr(module, name)
    stray = [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and name not in module.__all__
        and not isinstance(obj, ModuleType)
        and (getattr(obj, "__module__", None) or "").startswith("dokobit_async")
    ]
    assert stray == [], f"{module.__name__} binds public names outside __all__: {stray}"


def test_no_public_name_means_two_things() -> None:
    """A name exported by two public modules is the same object in both."""
    seen: dict[str, object] = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            assert seen.setdefault(name, obj) is obj, f"{name} means two things"


def _ruff_order(name: str) -> tuple[int, str]:
    # RUF022 "isort-style": SCREAMING_CASE first, then CamelCase, then the rest
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def test_all_names_resolve_and_cover_every_public_model_and_error() -> None:
    """Every name in ``__all__`` imports, and no public model or error is missing."""
    for name in dokobit_async.__all__:
        assert getattr(dokobit_async, name) is not None
    expected = set(exceptions.__all__) | set(models.__all__)
    assert expected <= set(dokobit_async.__all__)


def test_every_public_name_has_a_docstring() -> None:
    """Docstrings on every public class and function."""
    missing = [
        name
        for name in dokobit_async.__all__
        if (inspect.isclass(obj := getattr(dokobit_async, name)) or inspect.isfunction(obj))
        and not inspect.getdoc(obj)
    ]
    assert missing == []


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The lazy re-export does not invent names."""
    assert not hasattr(dokobit_async, "NoSuchThing")


def test_pure_modules_do_not_import_aiohttp() -> None:
    """The sans-I/O core (and the models and retry rules) never load aiohttp."""
    code = (
        "import sys\n"
        "import dokobit_async.sansio, dokobit_async._actions, dokobit_async.retry\n"
        "import dokobit_async.models, dokobit_async.exceptions, dokobit_async._convert\n"
        "import dokobit_async.events, dokobit_async._redact, dokobit_async._urls\n"
        "import dokobit_async._answers, dokobit_async._request, dokobit_async._bodies\n"
        "print('aiohttp' in sys.modules, 'asyncio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "False"]
