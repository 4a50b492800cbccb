"""The emulator's core: state, outbox, postbacks, and the actions shared by routes,
signing pages and the :class:`~dokobit_async.testing.Emulator` test hooks."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import errors as codes
from .config import EmulatorConfig
from .errors import EmulatedApiError, EmulatedFieldError, ValidationFailed
from .guard import Guard
from .postbacks import PostbackDispatcher
from .records import OutboxMessage
from .state import EXTERNAL, EmulatedDelivery, Participant, Signing, Validation, utcnow

__all__ = ["CORE", "Core"]


def _unknown(what: str, status: int) -> EmulatedApiError:
    error = EmulatedFieldError(
        field="[token]", message=f"{what} with such token not found.", error_code=codes.NOT_FOUND
    )
    if status == 404:
        return EmulatedApiError(404, f"{what} with such token not found.", errors=[error])
    return ValidationFailed([error])


class Core:
    """Everything one emulator knows and does, independent of how it is served."""

    def __init__(self, config: EmulatorConfig, access_token: str) -> None:
        self.config = config
        self.guard = Guard(config, access_token)
        self.postbacks = PostbackDispatcher(config)
        self.signings: dict[str, Signing] = {}
        self.deliveries: dict[str, EmulatedDelivery] = {}
        self.validations: dict[str, Validation] = {}
        self.outbox: list[OutboxMessage] = []
        self.base_url: str | None = None

    # -- lookups and URLs -------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this emulator."""
        return f"{self.base_url or 'http://127.0.0.1'}{path}"

    def signing(self, token: str, flow: str | None = None) -> Signing:
        """The live signing with ``token`` (of ``flow`` unless tokens are shared)."""
        found = self.signings.get(token)
        if found is None or (
            flow is not None and found.flow != flow and not self.config.shared_token_space
        ):
            raise _unknown("Signing", self.config.unknown_token_status)
        return found

    def delivery(self, token: str) -> EmulatedDelivery:
        """The e-delivery with ``token``."""
        found = self.deliveries.get(token)
        if found is None:
            raise _unknown("Delivery", self.config.unknown_token_status)
        return found

    def validation(self, token: str) -> Validation:
        """The validation with ``token``."""
        found = self.validations.get(token)
        if found is None:
            raise _unknown("Validation", self.config.unknown_token_status)
        return found

    def page_url(self, signing: Signing, participant: Participant) -> str:
        """The participant's signing page."""
        return self.url(f"/sign/{signing.token}/{participant.token}")

    def download_url(self, signing: Signing) -> str:
        """The signing's download route (append ``?access_token=`` to fetch it)."""
        return self.url(f"/api/{signing.flow}/{signing.token}/download")

    def file_url(self, signing: Signing, index: int) -> str:
        """Download route of one file of the signing."""
        return self.url(f"/api/{signing.flow}/{signing.token}/files/{index}/download")

    # -- outbox and postbacks -----------------------------------------------------------

    def invite(
        self, signing: Signing, participants: list[Participant], message: str | None, kind: str
    ) -> None:
        """Put an invitation (or reminder) into the outbox for each external participant."""
        if signing.flow != EXTERNAL:
            return
        for participant in participants:
            self.outbox.append(
                OutboxMessage(
                    kind=kind,
                    email=participant.spec.email,
                    phone=None if participant.spec.email else participant.spec.phone,
                    signing_token=signing.token,
                    signer_token=participant.token,
                    url=self.page_url(signing, participant),
                    message=message,
                    time=utcnow(),
                )
            )

    def emit(self, signing: Signing, actions: list[str], participant: Participant | None) -> None:
        """Send a postback for each action, if the signing has a ``postback_url``."""
        if not signing.postback_url:
            return
        for action in actions:
            payload: dict[str, Any] = {"status": "ok", "token": signing.token, "action": action}
            if participant is not None and action.startswith("signer_"):
                payload["signer"] = participant.token
                payload["signer_info"] = _signer_info(participant)
            if action == "signing_completed":
                data, _, _ = signing.document()
                payload["file"] = self.download_url(signing)
                payload["file_digest"] = hashlib.sha256(data).hexdigest()
            self.postbacks.send(signing.postback_url, payload, signing.token)

    # -- participant actions --------------------------------------------------------------

    def sign(self, signing_token: str, signer_token: str, method: str = "smartid") -> None:
        """A participant signs (raises :class:`StateError` when refused)."""
        signing = self.signing(signing_token)
        actions = signing.sign(
            signer_token, utcnow(), method, declined_status=self.config.declined_status
        )
        self.emit(signing, actions, signing.participants[signer_token])

    def decline(self, signing_token: str, signer_token: str) -> None:
        """A participant declines (raises :class:`StateError` when refused)."""
        signing = self.signing(signing_token)
        actions = signing.decline(
            signer_token, utcnow(), declined_status=self.config.declined_status
        )
        self.emit(signing, actions, signing.participants[signer_token])

    def receive_delivery(self, token: str, recipient_token: str) -> bool:
        """A recipient confirms receipt; False if already confirmed (no second postback)."""
        delivery = self.delivery(token)
        recipient = delivery.recipients.get(recipient_token)
        if recipient is None:
            raise ValidationFailed(
                [
                    EmulatedFieldError(
                        field="[recipient]",
                        message="Recipient not found.",
                        error_code=codes.NOT_FOUND,
                    )
                ]
            )
        if recipient.received_at is not None:
            return False
        recipient.received_at = utcnow()
        if delivery.postback_url:
            payload = {
                "status": "ok",
                "token": delivery.token,
                "action": "document_received",
                "signer": recipient.token,
                "signer_info": {
                    k: v
                    for k, v in {
                        "code": recipient.code,
                        "country_code": recipient.country_code,
                        "phone": recipient.phone,
                    }.items()
                    if v is not None
                },
            }
            self.postbacks.send(delivery.postback_url, payload, delivery.token)
        return True


def _signer_info(participant: Participant) -> dict[str, Any]:
    spec = participant.spec
    info: dict[str, Any] = {
        "code": spec.code,
        "country_code": spec.country_code,
        "phone": spec.phone,
    }
    if participant.status == "signed":
        info["signing_option"] = participant.signing_option
        info["signing_time"] = participant.signed_at.isoformat() if participant.signed_at else None
        info["type"] = "qes"
    return {k: v for k, v in info.items() if v is not None}


CORE = web.AppKey("dokobit_emulator_core", Core)
"""The app key under which the emulator's :class:`Core` is stored."""


@web.middleware
async def origin_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Learn the emulator's base URL from the first request when it was not set."""
    core = request.app[CORE]
    if core.base_url is None:
        core.base_url = str(request.url.origin())
    return await handler(request)
