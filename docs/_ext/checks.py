"""MkDocs hooks: what the strict build checks beyond broken links and references.

* Every public name has its entry in the API reference: each name in the
  ``__all__`` of ``dokobit_async`` and of ``dokobit_async.testing`` must be rendered
  somewhere (an element with the id ``dokobit_async.NAME``), so that a new public
  name without a reference entry fails the build.
* Every citation of these docs in the code (``docs/wire-notes.md#status-codes``, in
  the package, the tests, the examples, the benchmarks or the README) names a page
  that exists and an anchor that the page has.
* With ``extra: {stale_citations: true}`` in ``mkdocs.yml``, a citation of a document
  the repository does not have ("wire notes §2", ``shared/...``, "spec section 5",
  "the issue") is an error too.

Each problem is one warning, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("dokobit_checks")

_ID = re.compile(r"""\bid=["']([^"']+)["']""")
_CITATION = re.compile(r"\bdocs/([\w./-]+\.md)#([\w-]+)")
_STALE = re.compile(
    r"wire notes (?:section|\d)|shared/|dokobit-universal-api\.md|spec section|\bspec \d|§"
    r"|\bthe issue\b|hardening issue",
    re.IGNORECASE,
)
_SCANNED = ("dokobit_async", "tests", "examples", "benchmarks")
_PUBLIC_PACKAGES = {
    "dokobit_async": "dokobit_async/__init__.py",
    "dokobit_async.testing": "dokobit_async/testing/__init__.py",
    "dokobit_async.sansio": "dokobit_async/sansio.py",
    "dokobit_async.redis": "dokobit_async/redis.py",
    "dokobit_async.otel": "dokobit_async/otel.py",
}

_ids: dict[str, set[str]] = {}


def on_pre_build(config: Any) -> None:
    """Forget the ids of a previous build (``mkdocs serve`` rebuilds in-process)."""
    _ids.clear()


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Remember the ids of each page, by its source path under ``docs/``."""
    _ids[page.file.src_uri] = set(_ID.findall(html))
    return html


def on_post_build(config: Any) -> None:
    """Run the checks once every page is rendered."""
    root = Path(config.config_file_path).resolve().parent
    docs = Path(config.docs_dir).resolve()
    _check_public_names(root)
    _check_citations(root, docs, stale=bool(config.extra.get("stale_citations", False)))


def _exported(init: Path) -> list[str]:
    """The names in a module's ``__all__`` (read, not imported)."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return [str(value) for value in ast.literal_eval(node.value)]
    return []


def _check_public_names(root: Path) -> None:
    rendered = set().union(*_ids.values()) if _ids else set()
    for package, init in _PUBLIC_PACKAGES.items():
        for name in _exported(root / init):
            if name.startswith("__"):
                continue
            if f"{package}.{name}" not in rendered:
                log.warning(
                    "%s.%s is public (in __all__) but has no entry in the API reference: "
                    "add it to a page under docs/reference/",
                    package,
                    name,
                )


def _scanned_files(root: Path) -> list[Path]:
    found = [root / "README.md"]
    for folder in _SCANNED:
        found.extend(sorted((root / folder).rglob("*.py")))
    return [path for path in found if path.is_file()]


def _check_citations(root: Path, docs: Path, *, stale: bool) -> None:
    for path in _scanned_files(root):
        shown = path.relative_to(root)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for page, anchor in _CITATION.findall(line):
                if page not in _ids:
                    exists = (docs / page).is_file()
                    why = "is not in the site" if exists else "does not exist"
                    log.warning("%s:%d cites docs/%s, which %s", shown, number, page, why)
                elif anchor not in _ids[page]:
                    log.warning(
                        "%s:%d cites docs/%s#%s: the page has no such anchor",
                        shown,
                        number,
                        page,
                        anchor,
                    )
            if stale and _STALE.search(line):
                log.warning(
                    "%s:%d cites a document the repository does not have: %s",
                    shown,
                    number,
                    line.strip(),
                )
