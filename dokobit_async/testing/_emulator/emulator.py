"""The Dokobit Universal API emulator: a real aiohttp server on loopback.

::

    async with Emulator(config=EmulatorConfig(time_scale=0.0001)) as emu:
        client = DokobitClient(base_url=emu.base_url, access_token=emu.access_token)
        ...
        await emu.sign(signing_token, signer_token)
        await emu.wait_postbacks_idle()

It keeps the signing state machine, serves signing pages, sends postbacks with the
documented retry schedule, and records every request, postback attempt and
invitation "e-mail" for tests to inspect. The app is also available as an
``aiohttp.web.Application`` (:meth:`Emulator.make_app`) for aiohttp's test utilities.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from types import TracebackType

from aiohttp import web

from .config import EmulatorConfig
from .core import CORE, Core, origin_middleware
from .pages import add_page_routes
from .records import OutboxMessage, PostbackAttempt, RequestRecord
from .routes import add_api_routes
from .state import EmulatedDelivery, Signing, Validation

__all__ = ["Emulator"]


class Emulator:
    """An emulated Universal API server; use ``async with`` or :meth:`start`/:meth:`close`."""

    def __init__(
        self,
        *,
        access_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
    ) -> None:
        self.access_token: str = access_token or f"emu_{secrets.token_hex(20)}"
        """The API token requests must carry (``?access_token=``)."""
        self.config: EmulatorConfig = config or EmulatorConfig()
        """The behaviour switches in force."""
        self._host = host
        self._port = port
        self._core = Core(self.config, self.access_token)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<Emulator base_url={self._core.base_url!r}>"

    # -- serving ------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """A new ``web.Application`` serving this emulator's state.

        Its cleanup closes the postback session and cancels pending deliveries.
        """
        app = web.Application(middlewares=[origin_middleware, self._core.guard.middleware])
        app[CORE] = self._core
        add_api_routes(app, self._core)
        add_page_routes(app)
        app.cleanup_ctx.append(self._postback_session)
        return app

    @property
    def app(self) -> web.Application:
        """The application served by :meth:`start` (made on first use)."""
        if self._app is None:
            self._app = self.make_app()
        return self._app

    async def _postback_session(self, _: web.Application) -> AsyncIterator[None]:
        await self._core.postbacks.open()
        yield
        await self._core.postbacks.close()

    async def start(self) -> None:
        """Bind ``host:port`` (a free port when 0) and start serving."""
        if self._runner is not None:
            raise RuntimeError("Emulator is already started")
        runner = web.AppRunner(self.app, access_log=None)  # URLs carry the access token
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._core.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving, cancel pending postbacks, close the postback session."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._core.postbacks.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: where the emulator serves."""
        if self._core.base_url is None:
            raise RuntimeError("Emulator is not started")
        return self._core.base_url

    # -- inspection -----------------------------------------------------------------------

    @property
    def signings(self) -> dict[str, Signing]:
        """Live signings by signing token (deleted ones are gone)."""
        return self._core.signings

    @property
    def deliveries(self) -> dict[str, EmulatedDelivery]:
        """E-deliveries by token."""
        return self._core.deliveries

    @property
    def validations(self) -> dict[str, Validation]:
        """Validation uploads by token."""
        return self._core.validations

    @property
    def outbox(self) -> list[OutboxMessage]:
        """Invitations, reminders and delivery notices "sent" so far."""
        return self._core.outbox

    @property
    def postbacks(self) -> list[PostbackAttempt]:
        """Every postback delivery attempt, in the order made."""
        return self._core.postbacks.attempts

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request received (paths only: the access token is never kept)."""
        return self._core.guard.requests

    def signing_page_url(self, signing_token: str, signer_token: str) -> str:
        """The signing page of one participant."""
        signing = self._core.signing(signing_token)
        return self._core.page_url(signing, signing.participant(signer_token))

    # -- participant actions ----------------------------------------------------------------

    async def sign(
        self, signing_token: str, signer_token: str, *, method: str = "smartid"
    ) -> None:
        """The participant signs, as on the signing page (postbacks included).

        Raises :class:`StateError` when refused (already signed, viewer, past a hard
        deadline) and :class:`EmulatedApiError` for an unknown signing token.
        """
        self._core.sign(signing_token, signer_token, method)

    async def decline(self, signing_token: str, signer_token: str) -> None:
        """The participant declines (``signer_declined`` postback)."""
        self._core.decline(signing_token, signer_token)

    async def receive_delivery(self, token: str, recipient_token: str) -> bool:
        """An e-delivery recipient confirms receipt; False if already confirmed."""
        return self._core.receive_delivery(token, recipient_token)

    async def wait_postbacks_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no postback delivery (or retry) is pending."""
        await self._core.postbacks.wait_idle(timeout)
