"""Emulator routes beyond signings: e-seal, e-delivery and validation
(``docs/wire-notes.md#seal``, ``#e-delivery``, ``#validation``)."""

from __future__ import annotations

import hashlib

from aiohttp import web

from . import errors as codes
from .core import CORE, Core
from .documents import Mark, validation_report
from .handlers import Handler, body_of, file_response, ok
from .records import OutboxMessage
from .state import EmulatedDelivery, EmulatedRecipient, new_token, utcnow
from .state import Validation as ValidationRecord
from .validate import DELIVERY_COUNTRIES, LANGUAGES, VALIDATION_EXTENSIONS, Checker

__all__ = ["REPORTS", "delivery_create", "report", "seal", "validation_upload"]

REPORTS = ("report-pdf", "detailed-report-pdf", "report-xml", "diagnostic-data-xml")


async def seal(request: web.Request) -> web.StreamResponse:
    """``signing/{token}/seal.json``: apply the organisation's e-seal."""
    core = request.app[CORE]
    signing = core.signing(request.match_info["token"])
    body = await body_of(request)
    check = Checker()
    reason = check.text(body, "custom_reason")
    annotation = check.mapping(body, "annotation")
    if annotation is not None:
        for key in ("page", "top", "left"):
            check.integer(annotation, key, ("annotation",), minimum=1 if key == "page" else 0)
    check.done()
    signing.apply(Mark(kind="seal", who="seal", time=utcnow(), reason=reason))
    return ok()


async def delivery_create(request: web.Request) -> web.StreamResponse:
    """``e-delivery/create.json``: send a PDF to recipients who confirm receipt."""
    core = request.app[CORE]
    body = await body_of(request)
    check = Checker()
    check.text(body, "type", required=True, choices=("pdf",))
    name = check.text(body, "name", required=True)
    files = check.files(body, pdf_only=True, require_digest=core.config.require_digest)
    postback_url = check.url(body, "postback_url")
    comment = check.text(body, "comment")
    recipients = []
    for path, item in check.items(body, "recipients", required=True):
        before = len(check.errors)
        external_id = check.text(item, "external_id", path)
        email, phone = check.text(item, "email", path), check.text(item, "phone", path)
        code = check.text(item, "code", path, required=True)
        country = check.text(
            item, "country_code", path, required=True, choices=DELIVERY_COUNTRIES, lower=True
        )
        language = check.text(item, "notifications_language", path, choices=LANGUAGES)
        if email is None and phone is None and not item.get("email"):
            check.fail(
                (*path, "email"), "Either email or phone is required.", codes.DEPENDENT_REQUIRED
            )
        if len(check.errors) == before:
            recipients.append(
                EmulatedRecipient(
                    token=new_token(),
                    external_id=external_id,
                    code=code,
                    country_code=country,
                    email=email,
                    phone=phone,
                    language=language,
                )
            )
    check.done()
    assert name is not None
    delivery = EmulatedDelivery(
        token=new_token(),
        name=name,
        files=files,
        created=utcnow(),
        postback_url=postback_url,
        comment=comment,
        recipients={r.token: r for r in recipients},
    )
    core.deliveries[delivery.token] = delivery
    for r in recipients:
        core.outbox.append(_delivery_message(core, delivery, r))
    return ok(
        token=delivery.token,
        recipients=[
            {
                "external_id": r.external_id,
                "token": r.token,
                "code": r.code,
                "country": r.country_code,
                "email": r.email,
            }
            for r in recipients
        ],
    )


def _delivery_message(
    core: Core, delivery: EmulatedDelivery, r: EmulatedRecipient
) -> OutboxMessage:
    return OutboxMessage(
        kind="delivery",
        email=r.email,
        phone=None if r.email else r.phone,
        signing_token=delivery.token,
        signer_token=r.token,
        url=core.url(f"/delivery/{delivery.token}/{r.token}"),
        message=delivery.comment,
        time=utcnow(),
    )


async def validation_upload(request: web.Request) -> web.StreamResponse:
    """``validation/upload.json``: one ``file{name, content}`` object."""
    core = request.app[CORE]
    body = await body_of(request)
    check = Checker()
    item = check.mapping(body, "file", required=True)
    spec = None
    if item is not None:
        spec = check.file(
            item, ("file",), pdf_only=False, require_digest=core.config.require_digest
        )
        if spec is not None and spec.name.rsplit(".", 1)[-1].lower() not in VALIDATION_EXTENSIONS:
            check.fail(("file", "name"), "File type is not supported for validation.")
    check.done()
    assert spec is not None
    record = ValidationRecord(token=new_token(), file=spec, created=utcnow())
    core.validations[record.token] = record
    return ok(token=record.token)


def report(kind: str) -> Handler:
    async def report(request: web.Request) -> web.StreamResponse:
        record = request.app[CORE].validation(request.match_info["token"])
        data, mime = validation_report(kind, record.file.name, record.file.data)
        digest = hashlib.sha256(data).hexdigest()[:12]
        return file_response(data, f"{kind}-{digest}.{kind.rsplit('-', 1)[-1]}", mime)

    return report
