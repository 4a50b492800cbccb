"""Builders shared by both signing flows: they take the flow first.

The docstring of :func:`status`, :func:`remove_signers` and :func:`delete` is the
docstring of ``client.external.<name>`` and ``client.internal.<name>``, with
``{flow}`` replaced by the flow (see ``_namespaces``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._request import Request
from ..exceptions import InvalidArgumentError
from .checks import Flow, prefix, segment


def status(flow: Flow, token: str) -> Request:
    """Get the current state of a signing, its files and its participants.

    Args:
        token: The signing token that ``create`` returned.

    Returns:
        SigningStatus: The document ``status`` (``pending``, ``completed``, ...; a
        value this version does not know stays a plain string), the signing's
        ``name``, ``type`` and dates, its ``files`` (each ``url`` can be fetched with
        ``client.download_file``) and its ``signers`` with their own ``status``.

    Raises:
        InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; nothing is sent.
        NotFoundError: No {flow} signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx after the
            retries).
        TransportError: No usable answer after the retries (``ConnectError``,
            ``RequestTimeoutError``).
        DecodeError: The answer was not the API's JSON.

    Note:
        ``GET /api/signing-{flow}/{token}/status.json``. Safe to repeat: timeouts,
        lost answers and 5xx answers are retried.
    """
    return Request(
        operation=f"{flow}.status",
        method="GET",
        idempotent=True,
        path=f"{prefix(flow)}/{segment('token', token)}/status.json",
    )


def download(flow: Flow, token: str) -> Request:
    """``GET /api/signing-{flow}/{token}/download`` (raw bytes, no ``.json``)."""
    return Request(
        operation=f"{flow}.download",
        method="GET",
        idempotent=True,
        returns_file=True,
        path=f"{prefix(flow)}/{segment('token', token)}/download",
    )


def remove_signers(flow: Flow, token: str, signer_tokens: Sequence[str]) -> Request:
    """Remove participants who have not signed yet from a signing.

    Args:
        token: The signing token that ``create`` returned.
        signer_tokens: The participant tokens (``CreatedSigning.signers[i].token``
            or ``SignersAdded.signers[i].token``) of the people to remove; a
            non-empty list.

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: ``token`` or a participant token is blank, ``.`` or
            ``..``, or ``signer_tokens`` is empty or a bare string; nothing is sent.
        ValidationError: Dokobit refused (e.g. the person has already signed);
            ``errors`` names the fields.
        NotFoundError: No {flow} signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx; a write is not
            resent).
        OutcomeUnknownError: The request went out but its answer was lost, or a
            gateway answered 502/504: the people may or may not have been removed.
            It is not resent; check with ``status``.
        TransportError: No connection could be made, after the retries.
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-{flow}/{token}/signers/delete.json`` with
        ``signers[i][token]``.
    """
    if isinstance(signer_tokens, str) or not signer_tokens:
        raise InvalidArgumentError("signer_tokens must be a non-empty list of tokens")
    for item in signer_tokens:
        segment("signer token", item)
    return Request(
        operation=f"{flow}.remove_signers",
        method="POST",
        fields={"signers": [{"token": t} for t in signer_tokens]},
        path=f"{prefix(flow)}/{segment('token', token)}/signers/delete.json",
    )


def delete(flow: Flow, token: str) -> Request:
    """Delete a signing.

    Dokobit's sources differ on the effect: the signing leaves your account, and
    participants who have not signed may or may not keep access to it.

    Args:
        token: The signing token that ``create`` returned.

    Returns:
        Result: The answer (``{"status": "ok"}``), whole in ``raw``.

    Raises:
        InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; nothing is sent.
        NotFoundError: No {flow} signing has this token.
        AuthenticationError: The access token is wrong or not allowed this call.
        RateLimitedError: Still rate limited after the retries.
        RedirectError: The API answered with a redirect, which is never followed.
        APIError: Any other error answer (``ServerError`` for a 5xx after the
            retries).
        TransportError: No usable answer after the retries (``ConnectError``,
            ``RequestTimeoutError``).
        DecodeError: The answer was not the API's JSON.

    Note:
        ``POST /api/signing-{flow}/{token}/delete.json`` with an empty form body
        (``Content-Length: 0``), as Dokobit's PHP example sends it. Safe to repeat:
        timeouts, lost answers and 5xx answers are retried.
    """
    return Request(
        operation=f"{flow}.delete",
        method="POST",
        idempotent=True,
        path=f"{prefix(flow)}/{segment('token', token)}/delete.json",
    )
