"""The package's layout keeps the architecture: layers, no cycles, small modules.

Every module of ``dokobit_async`` is parsed with :mod:`ast` (nothing is imported), and
its imports of the package's own modules become the edges of a graph:

* (a) no import cycle among the modules, over the imports that run: those at module
  level and those inside functions (a lazy import is how a cycle hides, as the
  inbox's ``__getattr__`` once did). Imports under ``if TYPE_CHECKING:`` never run,
  so they cannot make a runtime cycle; they are left out of this check and the
  typing-only back-references are printed instead.
* (b) no module imports "upward". The layers, from the bottom: the pure core; the
  client and the receiver side by side; the CLI and the test kit on top. This check
  takes every import, ``TYPE_CHECKING`` ones included, since they show the layering
  too, with one exception: the receiver may name the client's types under
  ``TYPE_CHECKING`` (it takes a ``DokobitClient`` to confirm postbacks), never
  import it at runtime. The client never imports the receiver.
* (c) every module has at most 400 lines, but for the explicit allowance below.
* (d) nothing outside the CLI (``cli``, ``__main__``, ``_cli``) imports the CLI.
* (e) the emulator imports nothing of the library outside itself: it is a second,
  independent reading of the wire notes.

The package's ``__init__`` re-exports every layer, so it is exempt as an importer;
as a target it counts as the top layer (only the CLI and the test kit may use it).

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import attrs
import pytest

PACKAGE = "dokobit_async"
SOURCE = Path(__file__).resolve().parent.parent / PACKAGE
MAX_LINES = 400

# Module names are relative to the package ("" is its __init__); patterns use fnmatch.
CORE, CLIENT, RECEIVER, TOP = "pure core", "client", "receiver", "CLI and test kit"
RANK = {CORE: 0, CLIENT: 1, RECEIVER: 1, TOP: 2}
LAYERS: dict[str, tuple[str, ...]] = {
    CORE: (
        "exceptions",
        "models",
        "_models_*",
        "events",
        "_convert",
        "sansio",
        "_answers",
        "_request",
        "_bodies",
        "_redact",
        "_postback_keys",
        "_lazy",
        "_urls",
        "retry",
        "_telemetry",
    ),
    CLIENT: (
        "_actions",
        "_actions.*",
        "_binding",
        "_namespaces",
        "_payload",
        "_transport",
        "_retrying",
        "ratelimit",
        "_ratelimit_*",
        "_tracker",
        "_tracker_*",
        "client",
    ),
    RECEIVER: (
        "routing",
        "inbox",
        "_inbox_*",
        "_http",
        "_serve",
        "_backlog",
        "_outcomes",
        "_policy",
        "_pressure",
        "_confirm",
        "_dispatcher",
        "receiver",
    ),
    # redis and otel: the optional extras' faces, over their private modules
    TOP: (
        "",
        "cli",
        "__main__",
        "_cli",
        "_cli.*",
        "testing",
        "testing.*",
        "redis",
        "_redis_*",
        "otel",
        "_otel_*",
        "_console",
        "_console_*",
        "reconcile",
        "_reconcile_*",
    ),
}
CLI = ("cli", "__main__", "_cli", "_cli.*")
EMULATOR = ("testing._emulator", "testing._emulator.*")

# Modules allowed over MAX_LINES for a while, each with the reason and the split it is
# owed. Keep it empty: while this pass ran it held client (429 lines) and _actions
# (417), which the client-seam and signatures work brought under the limit.
LINES_ALLOWANCE: dict[str, str] = {}


@attrs.frozen
class Edge:
    """One import of a package module by another."""

    source: str
    target: str
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``
    lazy: bool  # inside a function


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}
    assert found, f"no modules under {SOURCE}"
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules that ``node`` (in ``module``) makes Python load or read."""
    if isinstance(node, ast.Import):
        dotted = [alias.name for alias in node.names]
        inside = [n for n in dotted if n == PACKAGE or n.startswith(PACKAGE + ".")]
        return [n.removeprefix(PACKAGE).lstrip(".") for n in inside]
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        parts = module.split(".") if module else []
        if not is_package:
            parts = parts[:-1]
        if node.level - 1 > len(parts):  # above the package: named as is, never found
            return [ast.unparse(node)]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *(node.module.split(".") if node.module else [])])
    elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
        base = (node.module or "").removeprefix(PACKAGE).lstrip(".")
    else:
        return []
    submodules = [f"{base}.{a.name}".lstrip(".") for a in node.names]
    found = [name for name in submodules if name in MODULES]
    # ``from pkg import submodule`` loads the submodule, and pkg's __init__ unless pkg
    # is a package the importer sits in (already being imported, nothing read from it)
    own_package = module == base or module.startswith(base + ".") or base == ""
    if len(found) < len(submodules) or not own_package:
        found.append(base)
    return found


def _edges(module: str) -> list[Edge]:
    """Every import of a package module in ``module``, whether the target exists or not."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    edges: list[Edge] = []

    def visit(node: ast.AST, typing_only: bool, lazy: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(module, node):
                if target != module:
                    edges.append(Edge(module, target, node.lineno, typing_only, lazy))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True, lazy)
            for child in node.orelse:
                visit(child, typing_only, lazy)
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for part in ast.iter_child_nodes(node):
            visit(part, typing_only, inner)

    visit(tree, False, False)
    return edges


ALL_EDGES = [edge for module in MODULES for edge in _edges(module)]
EDGES = [edge for edge in ALL_EDGES if edge.target in MODULES]


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(module, pattern) for pattern in patterns)


def _layer(module: str) -> str:
    layers = [name for name, patterns in LAYERS.items() if _matches(module, patterns)]
    assert len(layers) == 1, f"{module or '__init__'} is in layers {layers}: add it to LAYERS"
    return layers[0]


def _shown(module: str) -> str:
    return f"{PACKAGE}.{module}" if module else PACKAGE


def _lines(module: str) -> int:
    return len(MODULES[module].read_text(encoding="utf-8").splitlines())


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        # iterative depth-first search: ``path`` holds the modules on the stack, each
        # with an iterator over the imports not yet followed
        path = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            target = next(pending[-1], None)
            if target is None:
                done.add(path.pop())
                pending.pop()
            elif target in path:
                return [*path[path.index(target) :], target]
            elif target not in done:
                path.append(target)
                pending.append(iter(sorted(graph[target])))
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    """The check below can fail: a three-module loop is found, a diamond is not one."""
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(loop) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_relative_imports_resolve_to_the_modules_python_loads() -> None:
    """``from . import x`` of a submodule points at the submodule, not at the package
    the importer sits in; a name read from a package points at its ``__init__``."""
    found = {(e.source, e.target) for e in EDGES}
    assert ("cli", "_cli.api") in found
    assert ("cli", "_cli") in found  # _cli/__init__ runs first
    assert ("testing.pytest_plugin", "client") in found
    assert not [e for e in EDGES if e.target == "testing" and e.source.startswith("testing.")]


def test_every_import_of_the_package_names_one_of_its_modules() -> None:
    """A stale import left by a move shows here by name, before the checks below read
    the graph without it."""
    missing = [
        f"{_shown(e.source)}:{e.line} imports {_shown(e.target)}, which does not exist"
        for e in ALL_EDGES
        if e.target not in MODULES
    ]
    assert not missing


def test_no_import_cycle() -> None:
    """No chain of imports that run leads from a module back to itself."""
    runtime = [e for e in EDGES if not e.typing_only]
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in runtime:
        graph[edge.source].add(edge.target)
    pairs = {(e.source, e.target) for e in EDGES}
    back = sorted(
        f"{e.source} -> {e.target}"
        for e in EDGES
        if e.typing_only and (e.target, e.source) in pairs
    )
    print(
        f"\n{len(MODULES)} modules, {len(pairs)} import edges: "
        f"{len({(e.source, e.target) for e in runtime})} run "
        f"({len({(e.source, e.target) for e in runtime if e.lazy})} of them inside "
        f"functions), the rest under TYPE_CHECKING only"
    )
    print(f"typing-only back-references: {', '.join(back) or 'none'}")
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(_shown(m) for m in cycle)


def test_every_module_is_in_one_layer_and_no_module_imports_upward() -> None:
    """Pure core <- client / receiver <- CLI / test kit: nothing imports a higher
    layer; client and receiver do not import each other, but for the receiver naming
    client types under TYPE_CHECKING."""
    layer = {module: _layer(module) for module in MODULES}
    wrong = []
    for edge in EDGES:
        if edge.source == "":  # the package's re-exports
            continue
        source, target = layer[edge.source], layer[edge.target]
        upward = RANK[target] > RANK[source]
        sideways = source != target and RANK[source] == RANK[target]
        allowed = source == RECEIVER and target == CLIENT and edge.typing_only
        if upward or (sideways and not allowed):
            wrong.append(edge)
    counts = {name: sum(v == name for v in layer.values()) for name in LAYERS}
    print("\nmodules per layer: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert not [
        f"{_shown(e.source)}:{e.line} ({layer[e.source]}) imports {_shown(e.target)} "
        f"({layer[e.target]}){' under TYPE_CHECKING' if e.typing_only else ''}"
        for e in wrong
    ]


def test_every_module_is_at_most_400_lines() -> None:
    """Each module owns one concern and stays under about 400 lines."""
    sizes = sorted(((_lines(m), m) for m in MODULES), reverse=True)
    print("\nlargest modules: " + ", ".join(f"{_shown(m)} {n}" for n, m in sizes[:5]))
    fitting = [m for m in LINES_ALLOWANCE if m in MODULES and _lines(m) <= MAX_LINES]
    if fitting:
        print(f"no longer needed in LINES_ALLOWANCE: {', '.join(fitting)}")
    over = [
        f"{_shown(m)}: {n} lines" for n, m in sizes if n > MAX_LINES and m not in LINES_ALLOWANCE
    ]
    assert not over


def test_nothing_outside_the_cli_imports_it() -> None:
    """``cli.py`` is the command's face and ``_cli`` its private modules: the library
    and the test kit never depend on the command."""
    wrong = [
        f"{_shown(e.source)}:{e.line} imports {_shown(e.target)}"
        for e in EDGES
        if _matches(e.target, CLI) and not _matches(e.source, CLI)
    ]
    assert not wrong


def _private_reaches(module: str, source: str) -> list[str]:
    """Private names of *another* CLI module that ``module``'s ``source`` uses: imported
    (``from .api import _helper``) or read as an attribute (``api._helper``)."""
    tree = ast.parse(source)
    found: list[str] = []
    cli_names: set[str] = set()  # local names bound to another CLI module
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets = [t for t in _targets(module, node) if _matches(t, CLI) and t != module]
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            whole = [t for t in targets if t.endswith("." + alias.name) or t == alias.name]
            if whole:  # the name is a CLI module itself
                cli_names.add(local)
            elif targets and alias.name.startswith("_"):
                found.append(f"{node.lineno}: imports {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in cli_names
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.lineno}: reads {node.value.id}.{node.attr}")
    return found


def test_no_cli_module_reaches_into_another_ones_privates() -> None:
    """The CLI's modules use each other's public names only."""
    wrong = [
        f"{_shown(module)}:{reach}"
        for module in MODULES
        if _matches(module, CLI)
        for reach in _private_reaches(module, MODULES[module].read_text(encoding="utf-8"))
    ]
    assert not wrong


def test_the_privates_check_finds_an_import_and_an_attribute() -> None:
    source = "from .output import _helper, out\nfrom . import api\napi._build()\napi.run()\n"
    assert _private_reaches("_cli.demo", source) == ["1: imports _helper", "3: reads api._build"]


def test_the_emulator_imports_nothing_of_the_library() -> None:
    """The emulator is an independent reading of the wire notes: it shares no code
    with the client or the receiver it is there to test."""
    wrong = [
        f"{_shown(e.source)}:{e.line} imports {_shown(e.target)}"
        for e in EDGES
        if _matches(e.source, EMULATOR) and not _matches(e.target, EMULATOR)
    ]
    assert not wrong


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("_cli.api", "from .. import client", ["client"]),
        ("_cli.api", "from ..inbox import SQLiteInbox", ["inbox"]),
        ("_cli.api", "from .output import out", ["_cli.output"]),
        ("cli", "from . import __version__", [""]),
        ("cli", "from ._cli import api, demo", ["_cli.api", "_cli.demo", "_cli"]),
        ("testing", "from ._emulator.config import Faults", ["testing._emulator.config"]),
        ("testing._emulator.core", "from . import errors as codes", ["testing._emulator.errors"]),
        ("routing", "import dokobit_async.events", ["events"]),
        ("routing", "from dokobit_async import inbox", ["inbox"]),
        ("routing", "import os", []),
    ],
)
def test_import_lines_resolve_as_python_resolves_them(
    module: str, line: str, expected: list[str]
) -> None:
    """Which modules one import line in ``module`` loads or reads ("" is the
    package's ``__init__``)."""
    (node,) = ast.parse(line).body
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    assert _targets(module, node) == expected
