"""The client's namespaces: ``client.external``, ``.internal``, ``.e_delivery``,
``.validation``.

Each method is a pure builder from ``_actions`` (which owns the signature, the checks
and the docstring) bound to the client's transport, so the argument list of an action
is written once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from . import _actions
from ._actions import Flow
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
from .sansio import Request

if TYPE_CHECKING:
    from ._payload import Dest
    from .client import DokobitClient, Download

P = ParamSpec("P")
T = TypeVar("T")


class _Sends(Protocol):
    async def _json(self, request: Request, model: type[T]) -> T: ...


def json_action(
    builder: Callable[P, Request], model: type[T]
) -> Callable[Concatenate[_Sends, P], Coroutine[Any, Any, T]]:
    """A method that builds a request with ``builder`` and decodes into ``model``."""

    @functools.wraps(builder)
    async def method(self: _Sends, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._json(builder(*args, **kwargs), model)

    return method


def flow_action(
    builder: Callable[Concatenate[Flow, P], Request], model: type[T]
) -> Callable[Concatenate[_Signings, P], Coroutine[Any, Any, T]]:
    """Like :func:`json_action` for builders that take the flow first."""

    @functools.wraps(builder)
    async def method(self: _Signings, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._json(builder(self.flow, *args, **kwargs), model)

    return method


class _Namespace:
    def __init__(self, client: DokobitClient):
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    async def _json(self, request: Request, model: type[T]) -> T:
        return await self._client._json(request, model)


class _Signings(_Namespace):
    """Actions shared by both signing flows."""

    def __init__(self, client: DokobitClient, flow: Flow):
        super().__init__(client)
        self.flow: Flow = flow

    status = flow_action(_actions.status, SigningStatus)
    remove_signers = flow_action(_actions.remove_signers, Result)
    delete = flow_action(_actions.delete, Result)

    @overload
    async def download(self, token: str, dest: None = None) -> bytes: ...
    @overload
    async def download(self, token: str, dest: str | os.PathLike[str]) -> Path: ...
    @overload
    async def download(self, token: str, dest: IO[bytes]) -> None: ...
    async def download(self, token: str, dest: Dest = None) -> bytes | Path | None:
        """Download the signed file (raw bytes, not JSON).

        ``dest`` is a path (written atomically: a temporary file, then a rename), a
        binary file object, or ``None`` to get the bytes. An error envelope in place
        of the file raises the matching error and writes nothing.
        """
        return await self._client._download(_actions.download(self.flow, token), dest)

    def open_download(self, token: str) -> AbstractAsyncContextManager[Download]:
        """Stream the signed file: ``async with ns.open_download(token) as dl:
        async for chunk in dl: ...``."""
        return self._client._open(_actions.download(self.flow, token))


class ExternalSignings(_Signings):
    """``client.external``: signings whose participants are invited by e-mail."""

    create = json_action(_actions.external_create, CreatedSigning)
    add_signers = json_action(_actions.external_add_signers, SignersAdded)
    update = json_action(_actions.external_update, Result)
    remind = json_action(_actions.remind, Result)


class InternalSignings(_Signings):
    """``client.internal``: signings whose participants you redirect yourself."""

    create = json_action(_actions.internal_create, CreatedSigning)
    add_signers = json_action(_actions.internal_add_signers, SignersAdded)
    update = json_action(_actions.internal_update, Result)


class EDelivery(_Namespace):
    """``client.e_delivery``: deliver a PDF to recipients who confirm receipt."""

    create = json_action(_actions.e_delivery_create, EDeliveryCreated)


class Validation(_Namespace):
    """``client.validation``: validate signed files and fetch the reports."""

    async def upload(self, file: SigningFile | str | os.PathLike[str]) -> str:
        """Upload a signed file (a :class:`SigningFile` or a path); returns the
        validation token for :meth:`report`."""
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
        self, token: str, kind: ReportKind | str, dest: Dest = None
    ) -> bytes | Path | None:
        """Download one of the four reports (``report-pdf``, ``detailed-report-pdf``,
        ``report-xml``, ``diagnostic-data-xml``); ``dest`` as for ``download``."""
        return await self._client._download(_actions.validation_report(token, kind), dest)

    def open_report(
        self, token: str, kind: ReportKind | str
    ) -> AbstractAsyncContextManager[Download]:
        """Stream a report, like ``open_download``."""
        return self._client._open(_actions.validation_report(token, kind))
