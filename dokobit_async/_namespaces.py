"""The client's namespaces: ``client.external``, ``.internal``, ``.e_delivery``,
``.validation``.

A JSON action is a pure builder from ``_actions`` bound with :func:`json_action`
(``_binding``): the builder owns the parameters, the checks and the docstring, so the
argument list of an action is written once. File transfers are written out here:
their ``dest`` argument, their overloads and their answers are not the builder's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO, ClassVar, Protocol, TypeVar, overload

from . import _actions
from ._actions import Flow
from ._binding import json_action
from ._request import Request
from ._transport import Download
from .models import (
    CreatedSigning,
    EDeliveryCreated,
    ReportKind,
    Result,
    SignersAdded,
    SigningFile,
    SigningStatus,
    TokenResult,
)

__all__ = [
    "EDelivery",
    "ExternalSignings",
    "InternalSignings",
    "Validation",
]

T = TypeVar("T")


class _Client(Protocol):
    """What a namespace needs of ``DokobitClient``: its three ways to send."""

    def _json(self, request: Request, model: type[T]) -> Awaitable[T]: ...
    async def _download(
        self, request: Request, dest: str | os.PathLike[str] | IO[bytes] | None
    ) -> bytes | Path | None: ...
    def _open(self, request: Request) -> AbstractAsyncContextManager[Download]: ...


class _Namespace:
    def __init__(self, client: _Client):
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    def _json(self, request: Request, model: type[T]) -> Awaitable[T]:
        # hands over the client's awaitable: no coroutine of its own on the call path
        return self._client._json(request, model)


class _Signings(_Namespace):
    flow: ClassVar[Flow]

    def __init__(self, client: _Client, flow: Flow | None = None):
        if flow is not None and flow != self.flow:
            raise ValueError(f"{type(self).__name__} is the {self.flow} flow, not {flow!r}")
        super().__init__(client)


class ExternalSignings(_Signings):
    """``client.external``: signings whose participants Dokobit invites by e-mail."""

    flow: ClassVar[Flow] = "external"

    create = json_action(_actions.external_create, CreatedSigning)
    status = json_action(_actions.status, SigningStatus, flow="external")
    add_signers = json_action(_actions.external_add_signers, SignersAdded)
    remove_signers = json_action(_actions.remove_signers, Result, flow="external")
    update = json_action(_actions.external_update, Result)
    delete = json_action(_actions.delete, Result, flow="external")
    remind = json_action(_actions.remind, Result)

    @overload
    async def download(self, token: str, dest: None = None) -> bytes: ...
    @overload
    async def download(self, token: str, dest: str | os.PathLike[str]) -> Path: ...
    @overload
    async def download(self, token: str, dest: IO[bytes]) -> None: ...
    async def download(
        self, token: str, dest: str | os.PathLike[str] | IO[bytes] | None = None
    ) -> bytes | Path | None:
        """Download an external signing's signed file: the raw bytes, not JSON.

        Args:
            token: The signing token that ``create`` returned.
            dest: Where the file goes: a path (written to a temporary file beside
                it, then renamed into place, so a failure leaves nothing), a binary
                file object (its ``write`` may be a coroutine; it is not closed), or
                ``None``, the default, to get the bytes.

        Returns:
            bytes | Path | None: The bytes when ``dest`` is ``None``, the path
            written when it is a path, ``None`` for a file object.

        Raises:
            InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; nothing is
                sent.
            NotFoundError: No external signing has this token (an error answer in
                place of the file: nothing is written).
            RedirectError: A redirect off the API's own origin, or a fourth one.
            APIError: Any other error answer (``AuthenticationError``,
                ``RateLimitedError`` or ``ServerError`` after the retries).
            TransportError: No usable answer after the retries, or the connection
                broke after the first bytes (not retried; a path ``dest`` is left
                untouched).

        Note:
            ``GET /api/signing-external/{token}/download`` (no ``.json``). Retried up
            to the first bytes; follows up to three redirects on the API's origin.
        """
        return await self._client._download(_actions.download(self.flow, token), dest)

    def open_download(self, token: str) -> AbstractAsyncContextManager[Download]:
        """Stream an external signing's signed file.

        ``async with client.external.open_download(token) as download:`` then
        ``async for chunk in download: ...``; the connection is released on exit.

        Args:
            token: The signing token that ``create`` returned.

        Returns:
            AbstractAsyncContextManager[Download]: Entering it sends the request
            and yields the ``Download`` (``content_type``, ``content_length``,
            ``filename``; iterate it for the bytes).

        Raises:
            InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; raised by
                this call itself, before anything is sent.
            NotFoundError: On entering: no external signing has this token.
            RedirectError: On entering: a redirect off the API's own origin, or a
                fourth one.
            APIError: On entering: any other error answer.
            TransportError: On entering, no usable answer after the retries; while
                iterating, the connection broke (not retried).

        Note:
            ``GET /api/signing-external/{token}/download`` (no ``.json``).
        """
        return self._client._open(_actions.download(self.flow, token))


class InternalSignings(_Signings):
    """``client.internal``: signings whose participants you send to their signing
    page yourself."""

    flow: ClassVar[Flow] = "internal"

    create = json_action(_actions.internal_create, CreatedSigning)
    status = json_action(_actions.status, SigningStatus, flow="internal")
    add_signers = json_action(_actions.internal_add_signers, SignersAdded)
    remove_signers = json_action(_actions.remove_signers, Result, flow="internal")
    update = json_action(_actions.internal_update, Result)
    delete = json_action(_actions.delete, Result, flow="internal")

    @overload
    async def download(self, token: str, dest: None = None) -> bytes: ...
    @overload
    async def download(self, token: str, dest: str | os.PathLike[str]) -> Path: ...
    @overload
    async def download(self, token: str, dest: IO[bytes]) -> None: ...
    async def download(
        self, token: str, dest: str | os.PathLike[str] | IO[bytes] | None = None
    ) -> bytes | Path | None:
        """Download an internal signing's signed file: the raw bytes, not JSON.

        Args:
            token: The signing token that ``create`` returned.
            dest: Where the file goes: a path (written to a temporary file beside
                it, then renamed into place, so a failure leaves nothing), a binary
                file object (its ``write`` may be a coroutine; it is not closed), or
                ``None``, the default, to get the bytes.

        Returns:
            bytes | Path | None: The bytes when ``dest`` is ``None``, the path
            written when it is a path, ``None`` for a file object.

        Raises:
            InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; nothing is
                sent.
            NotFoundError: No internal signing has this token (an error answer in
                place of the file: nothing is written).
            RedirectError: A redirect off the API's own origin, or a fourth one.
            APIError: Any other error answer (``AuthenticationError``,
                ``RateLimitedError`` or ``ServerError`` after the retries).
            TransportError: No usable answer after the retries, or the connection
                broke after the first bytes (not retried; a path ``dest`` is left
                untouched).

        Note:
            ``GET /api/signing-internal/{token}/download`` (no ``.json``). Retried up
            to the first bytes; follows up to three redirects on the API's origin.
        """
        return await self._client._download(_actions.download(self.flow, token), dest)

    def open_download(self, token: str) -> AbstractAsyncContextManager[Download]:
        """Stream an internal signing's signed file.

        ``async with client.internal.open_download(token) as download:`` then
        ``async for chunk in download: ...``; the connection is released on exit.

        Args:
            token: The signing token that ``create`` returned.

        Returns:
            AbstractAsyncContextManager[Download]: Entering it sends the request
            and yields the ``Download`` (``content_type``, ``content_length``,
            ``filename``; iterate it for the bytes).

        Raises:
            InvalidArgumentError: ``token`` is blank, ``.`` or ``..``; raised by
                this call itself, before anything is sent.
            NotFoundError: On entering: no internal signing has this token.
            RedirectError: On entering: a redirect off the API's own origin, or a
                fourth one.
            APIError: On entering: any other error answer.
            TransportError: On entering, no usable answer after the retries; while
                iterating, the connection broke (not retried).

        Note:
            ``GET /api/signing-internal/{token}/download`` (no ``.json``).
        """
        return self._client._open(_actions.download(self.flow, token))


class EDelivery(_Namespace):
    """``client.e_delivery``: deliver a PDF to recipients who confirm receipt."""

    create = json_action(_actions.e_delivery_create, EDeliveryCreated)


class Validation(_Namespace):
    """``client.validation``: validate signed files and fetch the reports."""

    async def upload(self, file: SigningFile | str | os.PathLike[str]) -> str:
        """Upload a signed file or container to have its signatures validated.

        Args:
            file: A ``SigningFile``, or the path of the file. Dokobit validates
                ``asice``, ``asics``, ``sce``, ``bdoc``, ``edoc``, ``pdf``, ``p7s``
                and ``xml`` files.

        Returns:
            str: The validation token, for ``report`` and ``open_report``.

        Raises:
            InvalidArgumentError: ``file`` is neither a ``SigningFile`` nor the path
                of a readable file; nothing is sent.
            ValidationError: Dokobit rejected the file; ``errors`` says why.
            AuthenticationError: The access token is wrong or not allowed this call.
            RateLimitedError: Still rate limited after the retries.
            RedirectError: The API answered with a redirect, which is never
                followed (the file is never sent to another host).
            APIError: Any other error answer (``ServerError`` for a 5xx; an upload
                is not resent).
            OutcomeUnknownError: The request went out but its answer was lost, or a
                gateway answered 502/504; it is not resent.
            TransportError: No connection could be made, after the retries.
            DecodeError: The answer was not the API's JSON.

        Note:
            ``POST /api/validation/upload.json`` with a single ``file`` object.
        """
        if not isinstance(file, SigningFile):
            file = SigningFile.from_path(file)
        return (await self._json(_actions.validation_upload(file), TokenResult)).token

    @overload
    async def report(self, token: str, kind: ReportKind | str, dest: None = None) -> bytes: ...
    @overload
    async def report(
        self, token: str, kind: ReportKind | str, dest: str | os.PathLike[str]
    ) -> Path: ...
    @overload
    async def report(self, token: str, kind: ReportKind | str, dest: IO[bytes]) -> None: ...
    async def report(
        self,
        token: str,
        kind: ReportKind | str,
        dest: str | os.PathLike[str] | IO[bytes] | None = None,
    ) -> bytes | Path | None:
        """Download one of the four validation reports.

        Args:
            token: The validation token that ``upload`` returned.
            kind: Which report (a ``ReportKind`` or its value): ``report-pdf``,
                ``detailed-report-pdf``, ``report-xml`` or ``diagnostic-data-xml``.
            dest: Where the report goes: a path (written atomically), a binary file
                object, or ``None``, the default, to get the bytes.

        Returns:
            bytes | Path | None: The bytes when ``dest`` is ``None``, the path
            written when it is a path, ``None`` for a file object.

        Raises:
            InvalidArgumentError: An unknown ``kind``, or ``token`` is blank, ``.``
                or ``..``; nothing is sent.
            NotFoundError: No validation has this token (nothing is written).
            RedirectError: A redirect off the API's own origin, or a fourth one.
            APIError: Any other error answer, after the retries.
            TransportError: No usable answer after the retries, or the connection
                broke after the first bytes (a path ``dest`` is left untouched).

        Note:
            ``GET /api/validation/{token}/download/{kind}`` (no ``.json``).
        """
        return await self._client._download(_actions.validation_report(token, kind), dest)

    def open_report(
        self, token: str, kind: ReportKind | str
    ) -> AbstractAsyncContextManager[Download]:
        """Stream one of the four validation reports.

        ``async with client.validation.open_report(token, kind) as download:`` then
        ``async for chunk in download: ...``.

        Args:
            token: The validation token that ``upload`` returned.
            kind: Which report (a ``ReportKind`` or its value): ``report-pdf``,
                ``detailed-report-pdf``, ``report-xml`` or ``diagnostic-data-xml``.

        Returns:
            AbstractAsyncContextManager[Download]: Entering it sends the request
            and yields the ``Download``; iterate it for the bytes.

        Raises:
            InvalidArgumentError: An unknown ``kind``, or ``token`` is blank, ``.``
                or ``..``; raised by this call itself, before anything is sent.
            NotFoundError: On entering: no validation has this token.
            RedirectError: On entering: a redirect off the API's own origin, or a
                fourth one.
            APIError: On entering: any other error answer.
            TransportError: On entering, no usable answer after the retries; while
                iterating, the connection broke (not retried).

        Note:
            ``GET /api/validation/{token}/download/{kind}`` (no ``.json``).
        """
        return self._client._open(_actions.validation_report(token, kind))
