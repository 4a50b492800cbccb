"""The client's API methods as the API describes them, and the checks that
``test_signatures`` runs on them.

``OPERATIONS`` is written from docs/wire-notes.md#endpoints, not from the code: each
method's parameters in order (a comment gives the API field where the names differ),
its real return type and its wire path. The checks are plain functions returning a
list of problems, so that a script can also run them against an older tree
(``PYTHONPATH=old-tree python -c "import _operations ..."``).
"""

from __future__ import annotations

import inspect
import pydoc
import re
import types
import typing
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import dokobit_async.testing as testing_kit
from dokobit_async import (
    DokobitClient,
    ExternalSigner,
    InternalSigner,
    PostbackReceiver,
    Recipient,
    Router,
    SigningFile,
)
from dokobit_async.client import Download
from dokobit_async.models import (
    CreatedSigning,
    EDeliveryCreated,
    Result,
    SignersAdded,
    SigningStatus,
)
from dokobit_async.sansio import Request

BASE = "https://api.example.test"
SIGNING = "SIGNING"  # the sample signing (or validation) token: ``{token}`` in paths
FILE_RESULT = bytes | Path | None
STREAM = AbstractAsyncContextManager[Download]
PDF = SigningFile.from_bytes(b"%PDF-1.4\n%%EOF\n", name="a.pdf")
EXT, INT = "/api/signing-external", "/api/signing-internal"
# help()'s text without bold: pydoc's own renderer, which typeshed's stub leaves out
PLAINTEXT: pydoc.TextDoc = pydoc.plaintext  # type: ignore[attr-defined]

# the API's fields as parameters: docs/wire-notes.md#create-an-external-signing,
# docs/wire-notes.md#create-an-internal-signing and docs/wire-notes.md#update
PDF_OPTIONS = "annotation_position annotation_personal_code"
EXTERNAL_CREATE = (
    f"name type files signers postback_url deadline hard_deadline "
    f"require_qualified_signatures {PDF_OPTIONS} comment allow_video_identification "
    f"allow_document_saving flatten_pdf allowed_signing_methods"
)
INTERNAL_CREATE = (
    f"name type files redirect_uri signers postback_url require_qualified_signatures "
    f"{PDF_OPTIONS} allow_video_identification flatten_pdf allowed_signing_methods"
)
UPDATE = "require_qualified_signatures allow_video_identification"
EXTERNAL_UPDATE = f"token deadline hard_deadline {UPDATE} allow_document_saving"
INTERNAL_UPDATE = f"token {UPDATE}"


class Op(NamedTuple):
    """One API operation as the client offers it, and a valid call of it."""

    path: str  # attribute path from the client: "external.create", "seal"
    params: str  # what the API takes, in order, space-separated
    returns: Any  # the real return type
    wire: str  # "METHOD /path" as the docstring's Note states it
    args: tuple[Any, ...] = (SIGNING,)
    kwargs: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        """The parameter names."""
        return self.params.split()


def _create(**extra: Any) -> dict[str, Any]:
    return {"name": "Agreement", "type": "pdf", "files": [PDF], **extra}


def _flow_ops(flow: str, base: str) -> list[Op]:
    token = f"{base}/{{token}}"
    return [
        Op(f"{flow}.status", "token", SigningStatus, f"GET {token}/status.json"),
        Op(
            f"{flow}.remove_signers",
            "token signer_tokens",  # signers[i][token]
            Result,
            f"POST {token}/signers/delete.json",
            (SIGNING, ["SIGNER"]),
        ),
        Op(f"{flow}.delete", "token", Result, f"POST {token}/delete.json"),
        Op(f"{flow}.download", "token dest", FILE_RESULT, f"GET {token}/download"),
        Op(f"{flow}.open_download", "token", STREAM, f"GET {token}/download"),
    ]


_SIGNER = ExternalSigner(external_id="e1", email="e1@example.com")
_RECIPIENT = Recipient(external_id="r1", code="1", country_code="lt", email="r@example.com")
_FILE_URL = f"{BASE}/api/signing-external/{SIGNING}/download"
OPERATIONS = [
    Op(
        "external.create",
        EXTERNAL_CREATE,
        CreatedSigning,
        f"POST {EXT}/create.json",
        (),
        _create(),
    ),
    Op(
        "external.add_signers",
        "token signers comment",
        SignersAdded,
        f"POST {EXT}/{{token}}/signers/add.json",
        (SIGNING, [_SIGNER]),
    ),
    Op(
        "external.update",
        f"{EXTERNAL_UPDATE} allowed_signing_methods",
        Result,
        f"POST {EXT}/{{token}}/update.json",
        kwargs={"hard_deadline": True},
    ),
    Op(
        "external.remind",
        "token signer_token message",  # signer_token: the API's ``signer``
        Result,
        f"POST {EXT}/{{token}}/remind.json",
        (SIGNING, "SIGNER"),
    ),
    *_flow_ops("external", EXT),
    Op(
        "internal.create",
        INTERNAL_CREATE,
        CreatedSigning,
        f"POST {INT}/create.json",
        (),
        _create(redirect_uri="https://app.example.test/back"),
    ),
    Op(
        "internal.add_signers",
        "token signers",
        SignersAdded,
        f"POST {INT}/{{token}}/signers/add.json",
        (SIGNING, [InternalSigner(external_id="i1")]),
    ),
    Op(
        "internal.update",
        f"{INTERNAL_UPDATE} allowed_signing_methods",
        Result,
        f"POST {INT}/{{token}}/update.json",
        kwargs={"allow_video_identification": False},
    ),
    *_flow_ops("internal", INT),
    Op("seal", "token custom_reason annotation", Result, "POST /api/signing/{token}/seal.json"),
    Op("download_file", "url dest", FILE_RESULT, "GET {url}", (_FILE_URL,)),
    Op("open_file", "url", STREAM, "GET {url}", (_FILE_URL,)),
    Op(
        "e_delivery.create",
        "name files recipients postback_url comment type",
        EDeliveryCreated,
        "POST /api/e-delivery/create.json",
        (),
        {"name": "Notice", "files": [PDF], "recipients": [_RECIPIENT]},
    ),
    Op("validation.upload", "file", str, "POST /api/validation/upload.json", (PDF,)),
    Op(
        "validation.report",
        "token kind dest",
        FILE_RESULT,
        "GET /api/validation/{token}/download/{kind}",
        (SIGNING, "report-pdf"),
    ),
    Op(
        "validation.open_report",
        "token kind",
        STREAM,
        "GET /api/validation/{token}/download/{kind}",
        (SIGNING, "report-pdf"),
    ),
]
OPERATION_IDS = [op.path for op in OPERATIONS]


# ------------------------------------------------------------------ the checks
# Plain functions, so that a throwaway script can run them against an older tree.


def new_client() -> DokobitClient:
    """A client that is never used for I/O (no session is made before a call)."""
    return DokobitClient("test-access-token", base_url=BASE)


def method_of(client: DokobitClient, op: Op) -> Any:
    """The bound method, as the user reaches it: ``client.external.create``."""
    target: Any = client
    for part in op.path.split("."):
        target = getattr(target, part)
    return target


def shown(annotation: Any) -> str:
    """A type or its string form without module prefixes: ``bytes | Path | None``."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)


def signature_problems(client: DokobitClient, op: Op) -> list[str]:
    """What is untrue about the operation's signature, name and return type."""
    method = method_of(client, op)
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError) as exc:
        return [f"inspect.signature raises {exc!r}"]
    problems = []
    names = list(signature.parameters)
    if names != op.names:
        problems.append(f"parameters {names} != {op.names}")
    if shown(signature.return_annotation) != shown(op.returns):
        problems.append(f"signature returns {signature.return_annotation!r}")
    try:
        hinted = typing.get_type_hints(method).get("return")
    except Exception as exc:  # any failure to resolve is the finding
        problems.append(f"get_type_hints raises {exc!r}")
    else:
        if hinted != op.returns:
            problems.append(f"get_type_hints returns {hinted!r}")
    owner = type(method.__self__).__qualname__
    name = op.path.rsplit(".", 1)[-1]
    if (method.__name__, method.__qualname__) != (name, f"{owner}.{name}"):
        problems.append(f"named {method.__name__!r}, qualname {method.__qualname__!r}")
    return problems


def sections(doc: str) -> dict[str, list[str]]:
    """A Google-style docstring's sections: header -> its indented lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in inspect.cleandoc(doc).splitlines():
        if re.fullmatch(r"[A-Z]\w*( \w+)?:", line):
            current = found.setdefault(line[:-1], [])
        elif line and not line.startswith(" "):
            current = None
        elif current is not None and line:
            current.append(line[4:])
    return found


def doc_problems(client: DokobitClient, op: Op) -> list[str]:
    """What ``help()`` lacks: the wire path, the sections, an entry per argument."""
    method = method_of(client, op)
    problems = []
    if op.wire not in pydoc.render_doc(method, renderer=PLAINTEXT):
        problems.append(f"help() does not show {op.wire!r}")
    parts = sections(inspect.getdoc(method) or "")
    for header in ("Args", "Returns", "Raises", "Note"):
        if header not in parts:
            problems.append(f"no {header}: section")
    described = [m[1] for ln in parts.get("Args", []) if (m := re.match(r"(\w+)( \(.*\))?:", ln))]
    if described != op.names:
        problems.append(f"Args: describes {described}, not {op.names}")
    returns = " ".join(parts.get("Returns", []))
    if not returns.startswith(f"{shown(op.returns)}:"):
        problems.append(f"Returns: does not start with {shown(op.returns)}:")
    raised = " ".join(parts.get("Raises", []))
    # ForeignURLError is download_file's InvalidArgumentError
    for errors in ("InvalidArgumentError ForeignURLError", "RedirectError", "APIError"):
        if not any(f"{error}:" in raised for error in errors.split()):
            problems.append(f"Raises: lacks {errors}")
    if "TransportError:" not in raised:
        problems.append("Raises: lacks TransportError")
    return problems


class _Captured(Exception):
    def __init__(self, request: Request):
        super().__init__(request.operation)
        self.request = request


def sent_request(op: Op) -> Request:
    """The request the operation hands to the client's transport (nothing is sent)."""
    client = new_client()

    async def json(request: Request, model: type[Any]) -> Any:
        raise _Captured(request)

    async def download(request: Request, dest: Any) -> Any:
        raise _Captured(request)

    def open_(request: Request) -> Any:
        raise _Captured(request)

    vars(client).update(_json=json, _download=download, _open=open_)
    try:
        result = method_of(client, op)(*op.args, **(op.kwargs or {}))
        if inspect.iscoroutine(result):
            result.send(None)  # runs up to the transport, which raises
    except _Captured as captured:
        return captured.request
    raise AssertionError(f"{op.path} reached no transport")


def wire_problems(client: DokobitClient, op: Op) -> list[str]:
    """Whether the Note's wire path is what is sent, and the write warning is there."""
    request = sent_request(op)
    expected = op.wire.format(token=SIGNING, kind="report-pdf")
    problems = []
    if f"{request.method} {request.path}" != expected:
        problems.append(f"sends {request.method} {request.path}, docs say {op.wire}")
    raised = " ".join(sections(inspect.getdoc(method_of(client, op)) or "").get("Raises", []))
    if ("OutcomeUnknownError:" in raised) == request.idempotent:
        problems.append(f"OutcomeUnknownError listed: {not request.idempotent} expected")
    return problems


# ------------------------------------------------------------------ every callable


def _own_members(cls: type) -> dict[str, Any]:
    """Public attributes that the package's own classes in ``cls``'s MRO define."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] == "dokobit_async":
            members.update((k, v) for k, v in vars(klass).items() if not k.startswith("_"))
    return members


def public_callables(label: str, obj: Any) -> Iterator[tuple[str, Any]]:
    """``obj`` (a function, or a class: its constructor) and each public method,
    property getter, class and static method, in the form a caller gets it."""
    if not isinstance(obj, type):
        if callable(obj):
            yield label, obj
        return
    yield label, obj
    stand_in = object()  # a bound method's signature drops its first parameter
    for name, raw in sorted(_own_members(obj).items()):
        where = f"{label}.{name}"
        if isinstance(raw, property):
            if raw.fget is not None:
                yield where, types.MethodType(raw.fget, stand_in)
        elif isinstance(raw, cached_property):
            yield where, types.MethodType(raw.func, stand_in)
        elif isinstance(raw, (staticmethod, classmethod)):
            yield where, getattr(obj, name)
        elif isinstance(raw, type):
            yield from public_callables(where, raw)
        elif inspect.isfunction(raw):
            yield where, types.MethodType(raw, stand_in)
        elif callable(raw) and not isinstance(raw, (str, int, float)):
            yield where, raw


def every_public_callable(client: DokobitClient) -> list[tuple[str, Any]]:
    """The client (bound, as users reach it), its namespaces, the receiver, the
    router and the public names of the test kit."""
    found: list[tuple[str, Any]] = list(public_callables("DokobitClient", DokobitClient))
    for name in ("external", "internal", "e_delivery", "validation"):
        namespace = getattr(client, name)
        found += public_callables(type(namespace).__name__, type(namespace))
        found += [
            (f"client.{name}.{attr}", getattr(namespace, attr))
            for attr in dir(namespace)
            if not attr.startswith("_") and callable(getattr(namespace, attr))
        ]
    found += [(f"client.{attr}", getattr(client, attr)) for attr in ("seal", "download_file")]
    found += public_callables("PostbackReceiver", PostbackReceiver)
    found += public_callables("Router", Router)
    for name in testing_kit.__all__:
        found += public_callables(f"testing.{name}", getattr(testing_kit, name))
    return found


def unresolved_hints(found: list[tuple[str, Any]]) -> list[str]:
    """Callables whose annotations ``typing.get_type_hints`` cannot resolve."""
    failures = []
    for label, item in found:
        target = item.__init__ if inspect.isclass(item) else item
        try:
            typing.get_type_hints(target)
        except Exception as exc:  # any failure to resolve is the finding
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
    return failures
