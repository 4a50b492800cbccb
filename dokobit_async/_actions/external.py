"""Builders of the external flow: Dokobit invites the participants by e-mail (or SMS).

Each docstring is the docstring of the ``client.external`` method bound to it (see
``_namespaces``): it is written for users, about what the call returns and raises
once sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from .._request import Request
from ..models import AnnotationPosition, ExternalSigner, SigningFile, SigningMethod, SigningType
from . import checks


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
    """Create an external signing: Dokobit invites each participant by e-mail (or SMS).

    The options left as ``None`` are not sent, so the API's defaults apply.

    Args:
        name: The signing's name, shown to the participants.
        type: The document or container type: ``"pdf"``, ``"asice"``, ``"bdoc"``,
            ``"edoc"``, ``"adoc"`` or ``"adoc.cedoc"`` (a ``SigningType`` or its
            value).
        files: The files to sign (``SigningFile.from_path``, ``from_bytes`` or
            ``from_stream``), sent inline with their SHA-256 digest. With
            ``type="pdf"`` each must be a PDF.
        signers: The participants (``ExternalSigner``; ``role="viewer"`` for those
            who only view). Default: none yet; add them with ``add_signers``.
        postback_url: Where Dokobit POSTs this signing's events, e.g.
            ``PostbackReceiver.postback_url(...)``. Default: no postbacks.
        deadline: When signing ends: a timezone-aware ``datetime``. Default: none.
        hard_deadline: Refuse signatures after ``deadline``. API default: false.
        require_qualified_signatures: Accept qualified electronic signatures only.
            API default: false.
        annotation_position: Where the visible signature annotation goes:
            ``first_top`` (the API's default), ``first_bottom``, ``last_top``,
            ``last_bottom`` or ``none``. PDF only.
        annotation_personal_code: Show the signer's personal code in the
            annotation. API default: false. PDF only.
        comment: A message for the participants, shown in the invitation e-mail.
        allow_video_identification: Let participants identify themselves by video.
            API default: false.
        allow_document_saving: Let participants save the document to their Dokobit
            portal. API default: true.
        flatten_pdf: Flatten the PDF (form fields become plain content) before
            signing. API default: false. PDF only.
        allowed_signing_methods: The signing methods offered (``SigningMethod``
            values: ``mobile``, ``smartid``, ``smartcard``, ...). Default: every
            method your account allows.

    Returns:
        CreatedSigning: The signing ``token`` (every later call takes it) and, per
        participant, their own ``token`` (for ``remind`` and ``remove_signers``);
        ``signer(external_id)`` finds one.

    Raises:
        InvalidArgumentError: Before anything is sent: a blank ``name``, an unknown
            ``type``, no files, a file that is not a PDF with ``type="pdf"``, a
            PDF-only option with another type, a naive ``deadline``.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed
            (the files are never sent to another host).
        APIError: Any other error answer (``ServerError`` for a 5xx; a create is
            never resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the signing may exist. It is not resent, as
            that could create a second signing.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-external/create.json``.
    """
    options = dict(
        postback_url=postback_url,
        deadline=checks.aware("deadline", deadline),
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
    return checks.create(
        "external", name=name, type=type, files_=files, signers=signers, options=options
    )


def external_add_signers(
    token: str, signers: Sequence[ExternalSigner], *, comment: str | None = None
) -> Request:
    """Invite more participants to an external signing.

    Args:
        token: The signing token that ``create`` returned.
        signers: The participants to add (``ExternalSigner``); a non-empty list.
        comment: A message for the new participants, shown in their invitation.

    Returns:
        SignersAdded: Each added participant with their own ``token``.

    Raises:
        InvalidArgumentError: ``token`` is blank, ``.`` or ``..``, or ``signers`` is
            empty or holds something else than ``ExternalSigner``; nothing is sent.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        NotFoundError: No external signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx; a write is not
            resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the people may have been added. It is not
            resent; check with ``status``.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-external/{token}/signers/add.json``.
    """
    added = checks.people(ExternalSigner, signers, "signers")
    return checks.add_signers("external", token, added, {"comment": comment})


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
    """Change options of an external signing; only the options given are sent.

    Args:
        token: The signing token that ``create`` returned.
        deadline: A new deadline: a timezone-aware ``datetime``.
        hard_deadline: Whether signatures are refused after the deadline.
        require_qualified_signatures: Whether only qualified electronic signatures
            are accepted.
        allow_video_identification: Whether participants may identify themselves
            by video.
        allow_document_saving: Whether participants may save the document to their
            Dokobit portal.
        allowed_signing_methods: The signing methods offered (``SigningMethod``
            values).

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: No option is given, ``deadline`` is naive, or
            ``token`` is blank, ``.`` or ``..``; nothing is sent.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        NotFoundError: No external signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx after the
            retries).
        TransportError: No usable answer after the retries (``ConnectError``,
            ``RequestTimeoutError``).
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-external/{token}/update.json``. Safe to repeat:
        timeouts, lost answers and 5xx answers are retried.
    """
    return checks.update(
        "external",
        token,
        dict(
            deadline=checks.aware("deadline", deadline),
            hard_deadline=hard_deadline,
            require_qualified_signatures=require_qualified_signatures,
            allow_video_identification=allow_video_identification,
            allow_document_saving=allow_document_saving,
            allowed_signing_methods=allowed_signing_methods,
        ),
    )


def remind(token: str, signer_token: str, *, message: str | None = None) -> Request:
    """Send a participant who has not signed yet a reminder (external signings only).

    Args:
        token: The signing token that ``create`` returned.
        signer_token: The participant's own token (``CreatedSigning.signers[i].token``
            or ``SignersAdded.signers[i].token``), sent as ``signer``.
        message: A message to include in the reminder. Default: Dokobit's own text.

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: ``token`` or ``signer_token`` is blank, ``.`` or
            ``..``; nothing is sent.
        ValidationError: Dokobit refused (e.g. the person has already signed);
            ``errors`` names the fields.
        NotFoundError: No external signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx; a write is not
            resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the reminder may have been sent. It is not
            resent, so nobody gets it twice.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-external/{token}/remind.json``.
    """
    checks.segment("signer_token", signer_token)
    return Request(
        operation="external.remind",
        method="POST",
        fields={"signer": signer_token, "message": message},
        path=f"{checks.prefix('external')}/{checks.segment('token', token)}/remind.json",
    )
