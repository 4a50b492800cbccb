"""Pure builders of every Universal API call, with argument checks.

Each function returns a :class:`~dokobit_async.sansio.Request` or raises
:class:`~dokobit_async.exceptions.InvalidArgumentError` before anything is sent. Paths
and fields follow ``shared/dokobit-universal-api.md`` section 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import attrs

from .events import is_valid_token
from .exceptions import InvalidArgumentError
from .models import (
    Annotation,
    AnnotationPosition,
    ExternalSigner,
    InternalSigner,
    Recipient,
    ReportKind,
    SigningFile,
    SigningMethod,
    SigningType,
)
from .sansio import FilePart, Request

Flow = Literal["external", "internal"]

_PDF_ONLY = ("annotation_position", "annotation_personal_code", "flatten_pdf")


def _prefix(flow: Flow) -> str:
    return f"/api/signing-{flow}"


def _segment(name: str, token: str) -> str:
    if not is_valid_token(token):
        raise InvalidArgumentError(f"{name} must be a non-empty string other than . or ..")
    return quote(token, safe="")


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{name} must be timezone-aware (a naive datetime is ambiguous)"
        )
    return value


def _signing_type(value: SigningType | str) -> SigningType:
    try:
        return SigningType(value)
    except ValueError:
        known = ", ".join(t.value for t in SigningType)
        raise InvalidArgumentError(f"unknown signing type {value!r}; one of: {known}") from None


def _files(files: Sequence[SigningFile], *, with_digest: bool) -> list[FilePart]:
    if isinstance(files, SigningFile) or not files:
        raise InvalidArgumentError("files must be a non-empty list of SigningFile")
    for file in files:
        if not isinstance(file, SigningFile):
            raise InvalidArgumentError(f"files must hold SigningFile objects, not {file!r}")
    if len({id(f) for f in files}) != len(files):
        raise InvalidArgumentError("the same SigningFile object is listed twice")
    return [FilePart(file=f, with_digest=with_digest) for f in files]


def _people(kind: type[Any], items: Iterable[Any], label: str) -> list[dict[str, Any]]:
    people = list(items)
    for item in people:
        if not isinstance(item, kind):
            raise InvalidArgumentError(f"{label} must be {kind.__name__} objects, not {item!r}")
    return [attrs.asdict(p, recurse=True) for p in people]


def _methods(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise InvalidArgumentError("allowed_signing_methods must be a list, not a string")
    return list(values)


def _create(
    flow: Flow,
    *,
    name: str,
    type: SigningType | str,
    files: Sequence[SigningFile],
    signers: Iterable[ExternalSigner | InternalSigner],
    options: dict[str, Any],
) -> Request:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name must be a non-empty string")
    kind = _signing_type(type)
    if kind is not SigningType.PDF:
        given = [f for f in _PDF_ONLY if options.get(f) is not None]
        if given:
            raise InvalidArgumentError(f"{', '.join(given)} apply to type='pdf' only")
    signer_kind = ExternalSigner if flow == "external" else InternalSigner
    fields: dict[str, Any] = {
        "type": kind.value,
        "name": name,
        "files": _files(files, with_digest=True),
        "signers": _people(signer_kind, signers, "signers") or None,
        **options,
        "allowed_signing_methods": _methods(options.get("allowed_signing_methods")),
    }
    return Request(
        operation=f"{flow}.create",
        method="POST",
        path=f"{_prefix(flow)}/create.json",
        fields=fields,
    )


def external_create(
    *,
    name: str,
    type: SigningType | str,
    files: Sequence[SigningFile],
    signers: Sequence[ExternalSigner] = (),
    postback_url: str | None = None,
    deadline: datetime | None = None,
    hard_deadline: bool | None = None,
    require_qualified_signatures: bool | None = None,
    annotation_position: AnnotationPosition | str | None = None,
    annotation_personal_code: bool | None = None,
    comment: str | None = None,
    allow_video_identification: bool | None = None,
    allow_document_saving: bool | None = None,
    flatten_pdf: bool | None = None,
    allowed_signing_methods: Iterable[SigningMethod | str] | None = None,
) -> Request:
    """Create an external signing: participants are invited by e-mail.

    ``type`` is the document or container type; ``files`` are uploaded inline; the
    booleans left as ``None`` take the API's defaults; ``deadline`` must be an aware
    datetime. ``annotation_*`` and ``flatten_pdf`` apply to ``type="pdf"`` only.
    """
    options = dict(
        postback_url=postback_url,
        deadline=_aware("deadline", deadline),
        hard_deadline=hard_deadline,
        require_qualified_signatures=require_qualified_signatures,
        annotation_position=annotation_position,
        annotation_personal_code=annotation_personal_code,
        comment=comment,
        allow_video_identification=allow_video_identification,
        allow_document_saving=allow_document_saving,
        flatten_pdf=flatten_pdf,
        allowed_signing_methods=allowed_signing_methods,
    )
    return _create("external", name=name, type=type, files=files, signers=signers, options=options)


def internal_create(
    *,
    name: str,
    type: SigningType | str,
    files: Sequence[SigningFile],
    redirect_uri: str,
    signers: Sequence[InternalSigner] = (),
    postback_url: str | None = None,
    require_qualified_signatures: bool | None = None,
    annotation_position: AnnotationPosition | str | None = None,
    annotation_personal_code: bool | None = None,
    allow_video_identification: bool | None = None,
    flatten_pdf: bool | None = None,
    allowed_signing_methods: Iterable[SigningMethod | str] | None = None,
) -> Request:
    """Create an internal signing: no e-mail is sent; send each person to the
    ``signing_url`` of their entry in the answer. ``redirect_uri`` is where Dokobit
    returns them afterwards."""
    if not isinstance(redirect_uri, str) or not redirect_uri.strip():
        raise InvalidArgumentError("internal signings need redirect_uri")
    options = dict(
        redirect_uri=redirect_uri,
        postback_url=postback_url,
        require_qualified_signatures=require_qualified_signatures,
        annotation_position=annotation_position,
        annotation_personal_code=annotation_personal_code,
        allow_video_identification=allow_video_identification,
        flatten_pdf=flatten_pdf,
        allowed_signing_methods=allowed_signing_methods,
    )
    return _create("internal", name=name, type=type, files=files, signers=signers, options=options)


def status(flow: Flow, token: str) -> Request:
    """``GET /api/signing-{flow}/{token}/status.json``."""
    return Request(
        operation=f"{flow}.status",
        method="GET",
        idempotent=True,
        path=f"{_prefix(flow)}/{_segment('token', token)}/status.json",
    )


def download(flow: Flow, token: str) -> Request:
    """``GET /api/signing-{flow}/{token}/download`` (raw bytes, no ``.json``)."""
    return Request(
        operation=f"{flow}.download",
        method="GET",
        idempotent=True,
        returns_file=True,
        path=f"{_prefix(flow)}/{_segment('token', token)}/download",
    )


def _add_signers(
    flow: Flow, token: str, people: list[dict[str, Any]], fields: dict[str, Any]
) -> Request:
    if not people:
        raise InvalidArgumentError("signers must not be empty")
    return Request(
        operation=f"{flow}.add_signers",
        method="POST",
        fields={"signers": people, **fields},
        path=f"{_prefix(flow)}/{_segment('token', token)}/signers/add.json",
    )


def external_add_signers(
    token: str, signers: Sequence[ExternalSigner], *, comment: str | None = None
) -> Request:
    """Add participants to an external signing; ``comment`` is the message they get."""
    people = _people(ExternalSigner, signers, "signers")
    return _add_signers("external", token, people, {"comment": comment})


def internal_add_signers(token: str, signers: Sequence[InternalSigner]) -> Request:
    """Add participants to an internal signing."""
    return _add_signers("internal", token, _people(InternalSigner, signers, "signers"), {})


def remove_signers(flow: Flow, token: str, signer_tokens: Sequence[str]) -> Request:
    """``POST /api/signing-{flow}/{token}/signers/delete.json``."""
    if isinstance(signer_tokens, str) or not signer_tokens:
        raise InvalidArgumentError("signer_tokens must be a non-empty list of tokens")
    for item in signer_tokens:
        _segment("signer token", item)
    return Request(
        operation=f"{flow}.remove_signers",
        method="POST",
        fields={"signers": [{"token": t} for t in signer_tokens]},
        path=f"{_prefix(flow)}/{_segment('token', token)}/signers/delete.json",
    )


def _update(flow: Flow, token: str, fields: dict[str, Any]) -> Request:
    if "allowed_signing_methods" in fields:
        fields["allowed_signing_methods"] = _methods(fields["allowed_signing_methods"])
    if all(v is None for v in fields.values()):
        raise InvalidArgumentError("update needs at least one option to change")
    return Request(
        operation=f"{flow}.update",
        method="POST",
        fields=fields,
        idempotent=True,
        path=f"{_prefix(flow)}/{_segment('token', token)}/update.json",
    )


def external_update(
    token: str,
    *,
    deadline: datetime | None = None,
    hard_deadline: bool | None = None,
    require_qualified_signatures: bool | None = None,
    allow_video_identification: bool | None = None,
    allow_document_saving: bool | None = None,
    allowed_signing_methods: Iterable[SigningMethod | str] | None = None,
) -> Request:
    """Change options of an external signing; only the options given are sent."""
    return _update(
        "external",
        token,
        dict(
            deadline=_aware("deadline", deadline),
            hard_deadline=hard_deadline,
            require_qualified_signatures=require_qualified_signatures,
            allow_video_identification=allow_video_identification,
            allow_document_saving=allow_document_saving,
            allowed_signing_methods=allowed_signing_methods,
        ),
    )


def internal_update(
    token: str,
    *,
    require_qualified_signatures: bool | None = None,
    allow_video_identification: bool | None = None,
    allowed_signing_methods: Iterable[SigningMethod | str] | None = None,
) -> Request:
    """Change options of an internal signing; only the options given are sent."""
    return _update(
        "internal",
        token,
        dict(
            require_qualified_signatures=require_qualified_signatures,
            allow_video_identification=allow_video_identification,
            allowed_signing_methods=allowed_signing_methods,
        ),
    )


def delete(flow: Flow, token: str) -> Request:
    """``POST /api/signing-{flow}/{token}/delete.json`` (no body; idempotent)."""
    return Request(
        operation=f"{flow}.delete",
        method="POST",
        idempotent=True,
        path=f"{_prefix(flow)}/{_segment('token', token)}/delete.json",
    )


def remind(token: str, signer_token: str, *, message: str | None = None) -> Request:
    """``POST /api/signing-external/{token}/remind.json`` (external signings only)."""
    _segment("signer_token", signer_token)
    return Request(
        operation="external.remind",
        method="POST",
        fields={"signer": signer_token, "message": message},
        path=f"{_prefix('external')}/{_segment('token', token)}/remind.json",
    )


def seal(
    token: str, *, custom_reason: str | None = None, annotation: Annotation | None = None
) -> Request:
    """``POST /api/signing/{token}/seal.json`` (the ``signing/`` prefix, by the spec)."""
    if annotation is not None and not isinstance(annotation, Annotation):
        raise InvalidArgumentError("annotation must be an Annotation")
    fields = {
        "custom_reason": custom_reason,
        "annotation": None if annotation is None else attrs.asdict(annotation),
    }
    return Request(
        operation="seal",
        method="POST",
        fields=fields,
        path=f"/api/signing/{_segment('token', token)}/seal.json",
    )


def e_delivery_create(
    *,
    name: str,
    files: Sequence[SigningFile],
    recipients: Sequence[Recipient],
    postback_url: str | None = None,
    comment: str | None = None,
    type: SigningType | str = SigningType.PDF,
) -> Request:
    """``POST /api/e-delivery/create.json``; e-delivery takes ``type="pdf"`` only."""
    if _signing_type(type) is not SigningType.PDF:
        raise InvalidArgumentError("e-delivery takes type='pdf' only")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name must be a non-empty string")
    people = _people(Recipient, recipients, "recipients")
    if not people:
        raise InvalidArgumentError("recipients must not be empty")
    fields = {
        "type": "pdf",
        "name": name,
        "postback_url": postback_url,
        "comment": comment,
        # the spec lists only {name, content} for e-delivery files: no digest here
        "files": _files(files, with_digest=False),
        "recipients": people,
    }
    return Request(
        operation="e_delivery.create",
        method="POST",
        fields=fields,
        path="/api/e-delivery/create.json",
    )


def validation_upload(file: SigningFile) -> Request:
    """``POST /api/validation/upload.json`` with a single ``file`` object."""
    if not isinstance(file, SigningFile):
        raise InvalidArgumentError("file must be a SigningFile or a path")
    return Request(
        operation="validation.upload",
        method="POST",
        fields={"file": FilePart(file=file, with_digest=False)},
        path="/api/validation/upload.json",
    )


def validation_report(token: str, kind: ReportKind | str) -> Request:
    """``GET /api/validation/{token}/download/{kind}``."""
    try:
        report = ReportKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in ReportKind)
        raise InvalidArgumentError(f"unknown report kind {kind!r}; one of: {known}") from None
    return Request(
        operation="validation.report",
        method="GET",
        idempotent=True,
        returns_file=True,
        path=f"/api/validation/{_segment('token', token)}/download/{report.value}",
    )
