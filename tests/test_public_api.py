"""The public surface is deliberate: sorted, complete, documented; pure modules pure."""

from __future__ import annotations

import inspect
import subprocess
import sys

import dokobit_async
from dokobit_async import exceptions, models


def test_all_is_sorted_and_unique() -> None:
    """``__all__`` is kept sorted (case-sensitive, as ruff's RUF022 sorts it)."""
    assert dokobit_async.__all__ == sorted(set(dokobit_async.__all__), key=_ruff_order)


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
        "print('aiohttp' in sys.modules, 'asyncio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "False"]
