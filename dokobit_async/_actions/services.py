"""Builders of the calls outside the two signing flows: e-seal, e-delivery and
validation.

The docstrings of :func:`seal` and :func:`e_delivery_create` are the docstrings of
``client.seal`` and ``client.e_delivery.create`` (see ``_namespaces``). The
validation methods are written out in ``_namespaces`` (they take a path too, and
write files), so these two builders keep short notes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .._bodies import FilePart
from .._request import Request
from ..exceptions import InvalidArgumentError
from ..models import Annotation, Recipient, ReportKind, SigningFile, SigningType
from . import checks


def seal(
    token: str, *, custom_reason: str | None = None, annotation: Annotation | None = None
) -> Request:
    """E-seal a signing's document with your organisation's qualified e-seal.

    The certificate must first be arranged with Dokobit.

    Args:
        token: The signing token that ``create`` returned.
        custom_reason: The reason recorded in the seal. Default: none.
        annotation: Where the visible seal goes on the PDF (``Annotation``: page,
            top, left). Default: the API's placement.

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: ``token`` is blank, ``.`` or ``..``, or
            ``annotation`` is not an ``Annotation``; nothing is sent.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        NotFoundError: No signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call
            (e.g. no e-seal is arranged).
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx; a write is not
            resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the document may have been sealed. It is not
            resent; check with ``status``.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing/{token}/seal.json``: the ``signing/`` prefix, for
        signings of either flow.
    """
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
        path=f"/api/signing/{checks.segment('token', token)}/seal.json",
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
    """Deliver a PDF to recipients, who confirm that they received it.

    Args:
        name: The delivery's name, shown to the recipients.
        files: The PDF files to deliver (``SigningFile``), sent inline.
        recipients: Who receives them (``Recipient``: ``external_id``, ``code``,
            ``country_code``, and ``email`` or ``phone``); a non-empty list.
        postback_url: Where Dokobit POSTs ``document_received`` when a recipient
            confirms. Default: no postbacks.
        comment: A message for the recipients.
        type: The document type; e-delivery takes ``"pdf"`` only, the default.

    Returns:
        EDeliveryCreated: The delivery ``token`` and each recipient with their own
        ``token``.

    Raises:
        InvalidArgumentError: Before anything is sent: a blank ``name``, a ``type``
            other than ``"pdf"``, no files, a file that is not a PDF, no recipients.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed
            (the files are never sent to another host).
        APIError: Any other error answer (``ServerError`` for a 5xx; a create is
            never resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the delivery may exist. It is not resent, as
            that could deliver the document twice.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/e-delivery/create.json``.
    """
    if checks.signing_type(type) is not SigningType.PDF:
        raise InvalidArgumentError("e-delivery takes type='pdf' only")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name must be a non-empty string")
    people = checks.people(Recipient, recipients, "recipients")
    if not people:
        raise InvalidArgumentError("recipients must not be empty")
    fields = {
        "type": "pdf",
        "name": name,
        "postback_url": postback_url,
        "comment": comment,
        # docs/wire-notes.md#e-delivery: files are only {name, content}, no digest
        "files": checks.files(files, with_digest=False),
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
        path=f"/api/validation/{checks.segment('token', token)}/download/{report.value}",
    )
