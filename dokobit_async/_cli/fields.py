"""A call's arguments as the command line and a ``--from-json`` file give them.

Both spell the API's own field names (docs/wire-notes.md#endpoints): a JSON file is
the request body minus ``files`` (and minus the signing token, which is an
argument); the command line's options override its fields, and ``--signer`` (or
``--recipient``) options come after its list. Which fields a call takes is read from
the client method's own signature, so that it is written once, in ``_actions``.

Every problem here is bad input: a :class:`~.output.CliError` with exit status 2,
raised before anything is sent.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..exceptions import InvalidArgumentError
from ..models import Annotation, AnnotationPosition, SigningFile, SigningMethod
from .arguments import ANNOTATION_KEYS, aware_datetime
from .output import EXIT_USAGE, CliError, Progress, shown_path

__all__ = [
    "JSON_LIMIT",
    "OPTIONS",
    "Uploads",
    "add_options",
    "build_people",
    "call_fields",
    "given_options",
    "load_json",
    "model_of",
]

T = TypeVar("T")
JSON_LIMIT = 16 * 1024 * 1024
"""Largest ``--from-json`` file read, in bytes (the files travel separately)."""
_INT_KEYS = frozenset({"sequence", "page", "top", "left"})
_FLAG = argparse.BooleanOptionalAction
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "postback_url": ("--postback-url", {"metavar": "URL", "help": "where Dokobit posts events"}),
    "redirect_uri": (
        "--redirect-uri",
        {"metavar": "URL", "help": "return address after signing (internal; required there)"},
    ),
    "deadline": (
        "--deadline",
        {"type": aware_datetime, "metavar": "ISO-8601", "help": "e.g. 2030-01-31T17:00+02:00"},
    ),
    "hard_deadline": ("--hard-deadline", {"action": _FLAG, "help": "refuse late signatures"}),
    "require_qualified_signatures": (
        "--require-qualified",
        {"action": _FLAG, "help": "accept qualified signatures only"},
    ),
    "annotation_position": (
        "--annotation-position",
        {"choices": [p.value for p in AnnotationPosition], "help": "where the annotation goes"},
    ),
    "annotation_personal_code": (
        "--annotation-personal-code",
        {"action": _FLAG, "help": "show the personal code in the annotation"},
    ),
    "comment": ("--comment", {"metavar": "TEXT", "help": "a message for the participants"}),
    "allow_video_identification": (
        "--video-identification",
        {"action": _FLAG, "help": "let participants identify by video"},
    ),
    "allow_document_saving": (
        "--document-saving",
        {"action": _FLAG, "help": "let participants save the document (external)"},
    ),
    "flatten_pdf": ("--flatten-pdf", {"action": _FLAG, "help": "flatten the PDF's forms first"}),
    "allowed_signing_methods": (
        "--signing-method",
        {
            "action": "append",
            "choices": [m.value for m in SigningMethod],
            "metavar": "METHOD",
            "help": "a method offered (repeat for more; default: all the account allows)",
        },
    ),
}
"""The options of ``create`` and ``update``: the API field -> its flag and argparse
keywords."""


def add_options(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add the :data:`OPTIONS` named by ``names`` (API fields) to ``parser``."""
    for name in names:
        flag, keywords = OPTIONS[name]
        parser.add_argument(flag, dest=name, default=None, **keywords)


def given_options(
    args: argparse.Namespace, accepted: Collection[str], what: str
) -> dict[str, Any]:
    """The :data:`OPTIONS` given in ``args``; one that ``accepted`` lacks is a usage
    error that says it does not apply to ``what``."""
    found: dict[str, Any] = {}
    for name, (flag, _) in OPTIONS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in accepted:
            raise CliError(f"{flag} does not apply to {what}", EXIT_USAGE)
        found[name] = value
    return found


def load_json(path: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``-`` is stdin) for ``--from-json``."""
    where = "stdin" if path == "-" else shown_path(path)
    try:
        if path == "-":
            text = sys.stdin.read(JSON_LIMIT + 1)
        else:
            with Path(path).open(encoding="utf-8") as file:
                text = file.read(JSON_LIMIT + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CliError(f"cannot read --from-json {where}: {reason or exc}", EXIT_USAGE) from None
    if len(text) > JSON_LIMIT:
        raise CliError(f"--from-json {where} is larger than {JSON_LIMIT} characters", EXIT_USAGE)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--from-json {where} is not JSON: {exc.msg} at line {exc.lineno}", EXIT_USAGE
        ) from None
    if not isinstance(body, dict):
        raise CliError(f"--from-json {where} must hold a JSON object", EXIT_USAGE)
    return body


def call_fields(
    method: Callable[..., Any], body: Mapping[str, Any], *, what: str, lists: Collection[str]
) -> dict[str, Any]:
    """A ``--from-json`` body as keyword arguments of ``method``: its fields must be
    ``method``'s parameters (``files`` and ``token`` excepted: they are arguments);
    ``deadline`` is parsed; the people in ``lists`` are left as given, for
    :func:`build_people`."""
    accepted = set(inspect.signature(method).parameters) - {"files", "token", "dest"}
    wrong = sorted(set(body) - accepted)
    if wrong:
        raise CliError(
            f"--from-json: {', '.join(map(repr, wrong))} not accepted for {what}; "
            f"use: {', '.join(sorted(accepted))} (files are the FILE arguments)",
            EXIT_USAGE,
        )
    fields = dict(body)
    for name in lists:
        if not isinstance(fields.get(name, []), list):
            raise CliError(f"--from-json: {name!r} must be a list of objects", EXIT_USAGE)
    if isinstance(fields.get("deadline"), str):
        try:
            fields["deadline"] = aware_datetime(fields["deadline"])
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"--from-json: deadline: {exc}", EXIT_USAGE) from None
    return {k: v for k, v in fields.items() if v is not None}


def model_of(
    kind: type[T], values: object, label: str, allowed: Collection[str], where: str = ""
) -> T:
    """A request model ``kind`` from one ``k=v`` option or JSON object; ``label``
    names it in a usage error (``--signer #2``), and a key that ``allowed`` lacks is
    refused as not accepted ``where`` (``for internal signings``)."""
    if not isinstance(values, Mapping):
        raise CliError(f"{label}: expected an object of fields", EXIT_USAGE)
    wrong = sorted(set(values) - set(allowed))
    if wrong:
        raise CliError(
            f"{label}: {', '.join(map(str, wrong))} not accepted{' ' if where else ''}{where}; "
            f"use: {', '.join(sorted(allowed))}",
            EXIT_USAGE,
        )
    fields: dict[str, Any] = {k: v for k, v in values.items() if v not in ("", None)}
    for key in _INT_KEYS & set(fields):
        if isinstance(fields[key], str):
            try:
                fields[key] = int(fields[key])
            except ValueError:
                raise CliError(f"{label}: {key} must be a whole number", EXIT_USAGE) from None
    if "annotation" in fields and not isinstance(fields["annotation"], Annotation):
        fields["annotation"] = model_of(
            Annotation, fields["annotation"], f"{label} annotation", ANNOTATION_KEYS
        )
    try:
        return kind(**fields)
    except (InvalidArgumentError, TypeError) as exc:
        raise CliError(f"{label}: {exc}", EXIT_USAGE) from None


def build_people(
    specs: Sequence[object],
    kind: type[T],
    *,
    allowed: Collection[str],
    label: str,
    where: str,
    start: int = 1,
) -> list[T]:
    """Models ``kind`` (signers, recipients) from parsed options or JSON objects;
    ``external_id`` defaults to ``signer1``, ``signer2``... (``label`` without its
    dashes, numbered from ``start``); an unknown key is refused as not accepted
    ``where`` (``for internal signings``)."""
    people: list[T] = []
    stem = label.rsplit(maxsplit=1)[-1].lstrip("-")
    for number, spec in enumerate(specs, start):
        if isinstance(spec, Mapping):
            spec = {k: v for k, v in spec.items() if v not in ("", None)}
            spec.setdefault("external_id", f"{stem}{number}")
        people.append(model_of(kind, spec, f"{label} #{number}", allowed, where))
    return people


class Uploads:
    """One progress bar over several files sent one after the other (forced on a
    stderr that is no terminal with ``progress``)."""

    def __init__(self, paths: Sequence[str], *, progress: bool = False):
        label = f"uploading {Path(paths[0]).name}" if len(paths) == 1 else "uploading"
        if len(paths) > 1:
            label += f" {len(paths)} files"
        self.progress = Progress(label, force=progress)
        self._sizes = [_size_of(p) for p in paths]
        self._sent = [0] * len(paths)
        try:
            self.files = [
                SigningFile.from_path(p, on_progress=self._callback(i))
                for i, p in enumerate(paths)
            ]
        except InvalidArgumentError as exc:
            raise CliError(str(exc), code=EXIT_USAGE) from None

    def _callback(self, index: int) -> Callable[[int, int], None]:
        def on_progress(sent: int, total: int) -> None:
            self._sizes[index] = total
            self._sent[index] = sent
            self.progress.update(sum(self._sent), sum(self._sizes))

        return on_progress


def _size_of(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
