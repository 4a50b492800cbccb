"""The Universal API routes of the emulator (``docs/wire-notes.md#endpoints``).

JSON actions end in ``.json``; downloads do not and answer raw bytes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import errors as codes
from .core import CORE, Core
from .handlers import Handler, body_of, file_response, ok
from .services import REPORTS, delivery_create, report, seal, validation_upload
from .state import (
    EXTERNAL,
    INTERNAL,
    Participant,
    Signing,
    StateError,
    new_token,
    utcnow,
)
from .validate import (
    ANNOTATION_POSITIONS,
    SIGNING_METHODS,
    SIGNING_TYPES,
    Checker,
)

__all__ = ["add_api_routes"]

_BOOLS = (
    "hard_deadline",
    "require_qualified_signatures",
    "annotation_personal_code",
    "allow_video_identification",
    "allow_document_saving",
    "flatten_pdf",
)
_INTERNAL_CREATE_SKIP = ("hard_deadline", "allow_document_saving")
_INTERNAL_UPDATE = ("require_qualified_signatures", "allow_video_identification")
_EXTERNAL_UPDATE = (*_INTERNAL_UPDATE, "hard_deadline", "allow_document_saving")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _created_signer(core: Core, signing: Signing, p: Participant) -> dict[str, Any]:
    if signing.flow == INTERNAL:
        return {
            "external_id": p.spec.external_id,
            "token": p.token,
            "redirect_uri": core.page_url(signing, p),
        }
    spec = p.spec
    return {
        "external_id": spec.external_id,
        "token": p.token,
        "first_name": spec.name,
        "last_name": spec.surname,
        "code": spec.code,
        "country": spec.country_code,
        "email": spec.email,
    }


def _added_signer(core: Core, signing: Signing, p: Participant) -> dict[str, Any]:
    spec = p.spec
    item: dict[str, Any] = {
        "external_id": spec.external_id,
        "token": p.token,
        "name": spec.name,
        "surname": spec.surname,
        "email": spec.email,
        "code": spec.code,
        "country_code": spec.country_code,
        "role": spec.role,
        "company": spec.company,
        "position": spec.position,
        "phone": spec.phone,
        "notifications_language": spec.language,
    }
    if signing.flow == INTERNAL and core.config.internal_add_redirect_uri:
        item["redirect_uri"] = core.page_url(signing, p)
    return item


def _status_signer(p: Participant) -> dict[str, Any]:
    spec = p.spec
    return {
        "token": p.token,
        "external_id": spec.external_id,
        "first_name": spec.name,
        "last_name": spec.surname,
        "code": spec.code,
        "country": spec.country_code,
        "email": spec.email,
        "phone": spec.phone,
        "type": spec.role,
        "status": p.status,
    }


def _options(check: Checker, body: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in keys:
        value = check.boolean(body, key)
        if value is not None:
            options[key] = value
    methods = check.strings(body, "allowed_signing_methods", SIGNING_METHODS)
    if methods is not None:
        options["allowed_signing_methods"] = methods
    return options


def _create(flow: str) -> Handler:
    internal = flow == INTERNAL

    async def create(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        body = await body_of(request)
        check = Checker()
        type_ = check.text(body, "type", required=True, choices=SIGNING_TYPES)
        name = check.text(body, "name", required=True)
        files = check.files(
            body, pdf_only=type_ == "pdf", require_digest=core.config.require_digest
        )
        if core.config.single_pdf and type_ == "pdf" and len(files) > 1:
            check.fail(("files",), "Only one file is supported for type pdf.", codes.TOO_MANY)
        postback_url = check.url(body, "postback_url")
        redirect_uri = check.url(body, "redirect_uri", required=internal)
        deadline = None if internal else check.deadline(body)
        keys = tuple(k for k in _BOOLS if not (internal and k in _INTERNAL_CREATE_SKIP))
        options = _options(check, body, keys)
        position = check.text(body, "annotation_position", choices=ANNOTATION_POSITIONS)
        if position is not None:
            options["annotation_position"] = position
        if not internal:
            options["comment"] = check.text(body, "comment")
        signers = check.signers(body, internal=internal)
        check.done()
        assert type_ is not None
        assert name is not None
        signing = Signing(
            token=new_token(),
            flow=flow,
            type=type_,
            name=name,
            files=files,
            created=utcnow(),
            postback_url=postback_url,
            redirect_uri=redirect_uri,
            deadline=deadline,
            options=options,
            current=[f.data for f in files],
        )
        participants = signing.add(signers)
        core.signings[signing.token] = signing
        core.emit(signing, ["signing_created"], None)
        core.invite(signing, participants, options.get("comment"), "invitation")
        return ok(
            token=signing.token, signers=[_created_signer(core, signing, p) for p in participants]
        )

    return create


def _status(flow: str) -> Handler:
    async def status(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        signing = core.signing(request.match_info["token"], flow)
        _, filename, _ = signing.document()
        files = [
            {"name": f.name, "url": core.file_url(signing, i), "mime_type": signing.file(i)[2]}
            for i, f in enumerate(signing.files)
        ]
        return web.json_response(
            {
                "status": signing.status,
                "name": signing.name,
                "type": signing.type,
                "date_created": _iso(signing.created),
                "deadline": _iso(signing.deadline),
                "filename": filename,
                "files": files,
                "signers": [_status_signer(p) for p in signing.participants.values()],
            }
        )

    return status


def _download(flow: str) -> Handler:
    async def download(request: web.Request) -> web.StreamResponse:
        signing = request.app[CORE].signing(request.match_info["token"], flow)
        data, filename, mime = signing.document()
        return file_response(data, filename, mime)

    return download


def _download_file(flow: str) -> Handler:
    async def download_file(request: web.Request) -> web.StreamResponse:
        signing = request.app[CORE].signing(request.match_info["token"], flow)
        index = request.match_info["index"]
        if not index.isdigit() or int(index) >= len(signing.files):
            raise web.HTTPNotFound()
        return file_response(*signing.file(int(index)))

    return download_file


def _add_signers(flow: str) -> Handler:
    async def add_signers(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        signing = core.signing(request.match_info["token"], flow)
        body = await body_of(request)
        check = Checker()
        specs = check.signers(body, internal=flow == INTERNAL, required=True)
        comment = check.text(body, "comment") if flow == EXTERNAL else None
        check.done()
        added = signing.add(specs)
        core.invite(signing, added, comment, "invitation")
        return ok(signers=[_added_signer(core, signing, p) for p in added])

    return add_signers


def _delete_signers(flow: str) -> Handler:
    async def delete_signers(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        signing = core.signing(request.match_info["token"], flow)
        body = await body_of(request)
        check = Checker()
        tokens = [
            check.text(item, "token", path, required=True)
            for path, item in check.items(body, "signers", required=True)
        ]
        check.done()
        actions = signing.remove(
            [t for t in tokens if t], declined_status=core.config.declined_status
        )
        core.emit(signing, actions, None)
        return ok()

    return delete_signers


async def remind(request: web.Request) -> web.StreamResponse:
    """``signing-external/{token}/remind.json``: a reminder to one participant."""
    core = request.app[CORE]
    signing = core.signing(request.match_info["token"], EXTERNAL)
    body = await body_of(request)
    check = Checker()
    token = check.text(body, "signer", required=True)
    message = check.text(body, "message")
    check.done()
    assert token is not None
    participant = signing.participant(token)
    if participant.status == "signed":
        raise StateError("[signer]", "Signer has already signed.")
    core.invite(signing, [participant], message, "reminder")
    return ok()


def _update(flow: str) -> Handler:
    async def update(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        signing = core.signing(request.match_info["token"], flow)
        body = await body_of(request)
        check = Checker()
        options = _options(check, body, _INTERNAL_UPDATE if flow == INTERNAL else _EXTERNAL_UPDATE)
        deadline = check.deadline(body) if flow == EXTERNAL else None
        check.done()
        signing.options.update(options)
        if deadline is not None:
            signing.deadline = deadline
        return ok()

    return update


def _delete(flow: str) -> Handler:
    async def delete(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        signing = core.signing(request.match_info["token"], flow)
        await body_of(request)
        del core.signings[signing.token]
        return ok()

    return delete


def add_api_routes(app: web.Application, core: Core) -> None:
    """Register every API route on ``app``, naming each route's operation for the log."""

    def route(method: str, path: str, handler: Handler, operation: str) -> None:
        registered = app.router.add_route(method, f"/api/{path}", handler)
        core.guard.operations[registered] = operation

    for flow in (EXTERNAL, INTERNAL):
        route("POST", f"{flow}/create.json", _create(flow), f"{flow}/create")
        route("GET", f"{flow}/{{token}}/status.json", _status(flow), f"{flow}/status")
        route("GET", f"{flow}/{{token}}/download", _download(flow), f"{flow}/download")
        route(
            "GET",
            f"{flow}/{{token}}/files/{{index}}/download",
            _download_file(flow),
            f"{flow}/download",
        )
        route(
            "POST", f"{flow}/{{token}}/signers/add.json", _add_signers(flow), f"{flow}/signers/add"
        )
        route(
            "POST",
            f"{flow}/{{token}}/signers/delete.json",
            _delete_signers(flow),
            f"{flow}/signers/delete",
        )
        route("POST", f"{flow}/{{token}}/update.json", _update(flow), f"{flow}/update")
        route("POST", f"{flow}/{{token}}/delete.json", _delete(flow), f"{flow}/delete")
    route("POST", f"{EXTERNAL}/{{token}}/remind.json", remind, f"{EXTERNAL}/remind")
    route("POST", "signing/{token}/seal.json", seal, "signing/seal")
    route("POST", "e-delivery/create.json", delivery_create, "e-delivery/create")
    route("POST", "validation/upload.json", validation_upload, "validation/upload")
    for kind in REPORTS:
        route(
            "GET",
            f"validation/{{token}}/download/{kind}",
            report(kind),
            f"validation/download/{kind}",
        )
