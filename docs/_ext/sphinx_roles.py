"""Griffe extension: the docstrings' Sphinx markup, read as mkdocstrings Markdown.

The docstrings cite other objects with Sphinx roles (``:class:`Emulator```,
``:meth:`~Inbox.add```). Markdown has no roles: left alone, they would render as
text and nothing would check them. This extension rewrites each role into an
autorefs cross-reference to the target's canonical path
(``[`add`][dokobit_async._inbox_base.Inbox.add]``): the name is looked up like a
Python name, from the documented object outwards, and the canonical path is the one
identifier that mkdocstrings registers for every rendered object, wherever it is
rendered (a class re-exported as ``dokobit_async.Inbox`` registers its members only
under that name and their canonical one). A target that does not exist, or that no
page renders, fails the strict build. It also turns reST's literal-block marker
(``text::`` and a line of ``::`` alone) into what Sphinx shows (``text:``), the
indented block after it being a code block in Markdown already.

One Google-style liberty is read as Napoleon reads it: an ``Args:`` entry that names
several parameters (``url, secret: As for ...``) becomes one entry per name, each of
which must then be in the signature.

Loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``); it changes only the
rendered text, never the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence, Set
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):"
    r"`(?:(?P<title>[^`<]+?)\s*<(?P<titled>[^`>]+)>|(?P<tilde>~?)(?P<target>[^`<>]+?))`"
)
_PARAM_SECTION = re.compile(
    r"^(?P<indent>[ \t]*)(?:Args|Arguments|Parameters|Params|Keyword Args|"
    r"Keyword Arguments|Other Parameters):[ \t]*$"
)
_GROUPED = re.compile(
    r"^(?P<names>[\w*]+(?:[ \t]*,[ \t]*[\w*]+)+)(?P<rest>(?:[ \t]*\([^)]*\))?:.*)$"
)
_MARKER_ALONE = re.compile(r"^[ \t]*::[ \t]*$\n?", re.MULTILINE)
_MARKER_AFTER_TEXT = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def canonical(scope: griffe.Object, target: str) -> str:
    """The canonical path of ``target`` as named in ``scope``'s docstring; ``target``
    itself (so that autorefs reports it) when it cannot be found."""
    first, _, rest = target.partition(".")
    try:
        base = scope.resolve(first)
        path = f"{base}.{rest}" if rest else base
    except griffe.NameResolutionError:
        path = target  # absolute (``dokobit_async.inbox.Inbox``), or unknown
    try:
        return str(scope.modules_collection[path].canonical_path)
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_grouped_params(text: str) -> str:
    """``text`` with each parameter entry that names several parameters (``a, b:
    text``) repeated once per name."""
    lines = text.splitlines()
    out: list[str] = []
    section: int | None = None  # the indent of the current "Args:" line
    item: int | None = None  # the indent of its entries
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.strip() and section is not None and _indent(line) <= section:
            section = item = None
        header = _PARAM_SECTION.match(line)
        if header:
            section, item = len(header["indent"]), None
            out.append(line)
            continue
        if section is None or not line.strip():
            out.append(line)
            continue
        if item is None:
            item = _indent(line)
        grouped = _GROUPED.match(line.strip()) if _indent(line) == item else None
        if grouped is None:
            out.append(line)
            continue
        body = []
        while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > item):
            body.append(lines[index])
            index += 1
        for name in grouped["names"].split(","):
            out.append(f"{' ' * item}{name.strip()}{grouped['rest']}")
            out.extend(body)
    return "\n".join(out)


def markdown_of(text: str, scope: griffe.Object, unlinked: Set[str] = frozenset()) -> str:
    """``text`` with its Sphinx roles and literal-block markers made Markdown; a role
    whose target is in ``unlinked`` becomes plain code."""

    def crossref(match: re.Match[str]) -> str:
        if match["titled"] is not None:
            shown, target = match["title"], match["titled"].strip()
        else:
            target = match["target"].strip()
            shown = "`{}`".format(target.rsplit(".", 1)[-1] if match["tilde"] else target)
        path = canonical(scope, target)
        return shown if path in unlinked else f"[{shown}][{path}]"

    text = split_grouped_params(_ROLE.sub(crossref, text))
    text = _MARKER_ALONE.sub("", text)
    return _MARKER_AFTER_TEXT.sub(":", text)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a package with :func:`markdown_of`.

    Args:
        unlinked: Targets (as resolved: a canonical path, or the name as written when
            it does not resolve) to show as code instead of a link. Each is a known
            docstring problem, listed in ``mkdocs.yml`` until the docstring is fixed.
    """

    def __init__(self, unlinked: Sequence[str] = ()) -> None:
        super().__init__()
        self.unlinked = frozenset(unlinked)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe once the whole package is loaded (names resolve)."""
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = markdown_of(obj.docstring.value, obj, self.unlinked)
