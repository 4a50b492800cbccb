"""Builders of the internal flow: no e-mail is sent; you send each participant to
their signing page yourself.

Each docstring is the docstring of the ``client.internal`` method bound to it (see
``_namespaces``): it is written for users, about what the call returns and raises
once sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._request import Request
from ..exceptions import InvalidArgumentError
from ..models import AnnotationPosition, InternalSigner, SigningFile, SigningMethod, SigningType
from . import checks


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
    """Create an internal signing: no e-mail is sent; you send each person to their
    signing page.

    The options left as ``None`` are not sent, so the API's defaults apply.

    Args:
        name: The signing's name, shown to the participants.
        type: The document or container type: ``"pdf"``, ``"asice"``, ``"bdoc"``,
            ``"edoc"``, ``"adoc"`` or ``"adoc.cedoc"`` (a ``SigningType`` or its
            value).
        files: The files to sign (``SigningFile.from_path``, ``from_bytes`` or
            ``from_stream``), sent inline with their SHA-256 digest. With
            ``type="pdf"`` each must be a PDF.
        redirect_uri: Where Dokobit sends each person back after signing.
        signers: The participants (``InternalSigner``). Default: none yet; add them
            with ``add_signers``.
        postback_url: Where Dokobit POSTs this signing's events, e.g.
            ``PostbackReceiver.postback_url(...)``. Default: no postbacks.
        require_qualified_signatures: Accept qualified electronic signatures only.
            API default: false.
        annotation_position: Where the visible signature annotation goes:
            ``first_top`` (the API's default), ``first_bottom``, ``last_top``,
            ``last_bottom`` or ``none``. PDF only.
        annotation_personal_code: Show the signer's personal code in the
            annotation. API default: false. PDF only.
        allow_video_identification: Let participants identify themselves by video.
            API default: false.
        flatten_pdf: Flatten the PDF (form fields become plain content) before
            signing. API default: false. PDF only.
        allowed_signing_methods: The signing methods offered (``SigningMethod``
            values: ``mobile``, ``smartid``, ``smartcard``, ...). Default: every
            method your account allows.

    Returns:
        CreatedSigning: The signing ``token`` (every later call takes it) and, per
        participant, their own ``token`` and ``signing_url``: the page to send them
        to (the wire's ``redirect_uri``).

    Raises:
        InvalidArgumentError: Before anything is sent: a blank ``name`` or
            ``redirect_uri``, an unknown ``type``, no files, a file that is not a
            PDF with ``type="pdf"``, a PDF-only option with another type.
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
        ``POST /api/signing-internal/create.json``.
    """
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
    return checks.create(
        "internal", name=name, type=type, files_=files, signers=signers, options=options
    )


def internal_add_signers(token: str, signers: Sequence[InternalSigner]) -> Request:
    """Add participants to an internal signing.

    Args:
        token: The signing token that ``create`` returned.
        signers: The participants to add (``InternalSigner``); a non-empty list.

    Returns:
        SignersAdded: Each added participant with their own ``token`` (and their
        signing page when the API returns one).

    Raises:
        InvalidArgumentError: ``token`` is blank, ``.`` or ``..``, or ``signers`` is
            empty or holds something else than ``InternalSigner``; nothing is sent.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        NotFoundError: No internal signing has this token.
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
        ``POST /api/signing-internal/{token}/signers/add.json``.
    """
    added = checks.people(InternalSigner, signers, "signers")
    return checks.add_signers("internal", token, added, {})


def internal_update(
    token: str,
    *,
    require_qualified_signatures: bool | None = None,
    allow_video_identification: bool | None = None,
    allowed_signing_methods: Iterable[SigningMethod | str] | None = None,
) -> Request:
    """Change options of an internal signing; only the options given are sent.

    Args:
        token: The signing token that ``create`` returned.
        require_qualified_signatures: Whether only qualified electronic signatures
            are accepted.
        allow_video_identification: Whether participants may identify themselves
            by video.
        allowed_signing_methods: The signing methods offered (``SigningMethod``
            values).

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: No option is given, or ``token`` is blank, ``.`` or
            ``..``; nothing is sent.
        ValidationError: Dokobit rejected a field; ``errors`` names each one.
        NotFoundError: No internal signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx after the
            retries).
        TransportError: No usable answer after the retries (``ConnectError``,
            ``RequestTimeoutError``).
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-internal/{token}/update.json``. Safe to repeat:
        timeouts, lost answers and 5xx answers are retried.
    """
    return checks.update(
        "internal",
        token,
        dict(
            require_qualified_signatures=require_qualified_signatures,
            allow_video_identification=allow_video_identification,
            allowed_signing_methods=allowed_signing_methods,
        ),
    )
