"""Browser pages of the emulator: each participant's signing page and the e-delivery
confirmation page. No access token, no faults, no rate limit: a person uses these.

What an app's flow depends on behaves as follows. Only the first point is confirmed
(``docs/wire-notes.md#create-an-internal-signing``: ``redirect_uri`` is where the
person returns after signing); the others are this emulator's reading, inferred, as no
public source describes Dokobit's signing page:

- **Sign**, internal flow: 303 to the signing's ``redirect_uri``, unchanged (no query
  added). External flow: a "Thank you" page.
- **Decline**, internal flow: 303 to ``redirect_uri`` as well (inferred: the person
  leaves the signing page either way, and the app learns which from the
  ``signer_declined`` postback or the status).
- **Already signed**: the page says so and has no Sign or Decline button; a second
  POST (a stale tab, a double submit) gets a 400 page saying so, never a 500, and
  changes nothing (no postback).
- **Already declined**: the page says so and offers only Sign (inferred from the
  portal's "Sign anyway"; the state machine allows it); a second Decline gets a 400
  page.
- **A viewer**: the page has no buttons; a POST gets a 400 page.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from .core import CORE
from .errors import NOT_FOUND, EmulatedApiError
from .state import INTERNAL

__all__ = ["add_page_routes"]

_ALREADY = {
    "signed": "You have already signed this document.",
    "declined": "You have declined this document. You can still sign it.",
}

_STYLE = "body{font-family:sans-serif;max-width:40em;margin:2em auto}button{margin-right:1em}"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _refusal(exc: EmulatedApiError) -> web.Response:
    reasons = "".join(f"<li>{escape(e.message)}</li>" for e in exc.errors) or escape(exc.message)
    missing = exc.http_status == 404 or any(e.error_code == NOT_FOUND for e in exc.errors)
    status = 404 if missing else 400
    return _page("Cannot continue", f"<ul>{reasons}</ul>", status)


async def signing_page(request: web.Request) -> web.StreamResponse:
    """GET: the signing, the participant, and Sign / Decline buttons."""
    core = request.app[CORE]
    try:
        signing = core.signing(request.match_info["signing"])
        participant = signing.participant(request.match_info["signer"])
    except EmulatedApiError as exc:
        return _refusal(exc)
    spec = participant.spec
    who = " ".join(x for x in (spec.name, spec.surname) if x) or spec.external_id
    files = "".join(f"<li>{escape(f.name)}</li>" for f in signing.files)
    body = (
        f"<p>Signing: <strong id='signing-name'>{escape(signing.name)}</strong></p>"
        f"<p>Participant: <strong id='signer'>{escape(who)}</strong> ({escape(participant.role)})"
        f"</p><p>Status: <span id='signer-status'>{escape(participant.status)}</span></p>"
        f"<ul>{files}</ul>"
    )
    if participant.role != "signer":
        body += "<p id='result'>You can view this document; there is nothing to sign.</p>"
    elif participant.status == "signed":
        body += f"<p id='result'>{_ALREADY['signed']}</p>"
    else:
        buttons = "<button type='submit' name='action' value='sign'>Sign</button>"
        if participant.status == "declined":  # the portal's "Sign anyway" (inferred)
            body += f"<p id='result'>{_ALREADY['declined']}</p>"
        else:
            buttons += "<button type='submit' name='action' value='decline'>Decline</button>"
        body += f"<form method='post'>{buttons}</form>"
    return _page("Dokobit emulator: sign document", body)


async def signing_action(request: web.Request) -> web.StreamResponse:
    """POST: ``action=sign|decline``; internal flow redirects (303) to ``redirect_uri``."""
    core = request.app[CORE]
    try:
        form = await request.post()
    except Exception:  # a malformed browser form is a 400, never a 500
        return _page("Cannot continue", "<p>Malformed form.</p>", 400)
    action = form.get("action")
    signing_token, signer_token = request.match_info["signing"], request.match_info["signer"]
    try:
        signing = core.signing(signing_token)
        status = signing.participant(signer_token).status
        if status == "signed" or (status == "declined" and action == "decline"):
            # a stale tab or a double submit: refused with a page, and nothing changes
            return _page(f"Already {status}", f"<p id='result'>{_ALREADY[status]}</p>", 400)
        if action == "sign":
            core.sign(signing_token, signer_token)
        elif action == "decline":
            core.decline(signing_token, signer_token)
        else:
            return _page("Cannot continue", "<p>Choose Sign or Decline.</p>", 400)
    except EmulatedApiError as exc:
        return _refusal(exc)
    if signing.flow == INTERNAL and signing.redirect_uri:
        raise web.HTTPSeeOther(signing.redirect_uri)
    done = "signed" if action == "sign" else "declined"
    return _page("Thank you", f"<p id='result'>You have {done} “{escape(signing.name)}”.</p>")


async def delivery_page(request: web.Request) -> web.StreamResponse:
    """GET: the delivered document and a Confirm receipt button."""
    core = request.app[CORE]
    try:
        delivery = core.delivery(request.match_info["delivery"])
    except EmulatedApiError as exc:
        return _refusal(exc)
    recipient = delivery.recipients.get(request.match_info["recipient"])
    if recipient is None:
        return _page("Cannot continue", "<p>Recipient not found.</p>", 404)
    files = "".join(f"<li>{escape(f.name)}</li>" for f in delivery.files)
    body = f"<p>Document: <strong>{escape(delivery.name)}</strong></p><ul>{files}</ul>"
    if recipient.received_at is None:
        body += "<form method='post'><button type='submit'>Confirm receipt</button></form>"
    else:
        body += "<p id='result'>Receipt confirmed.</p>"
    return _page("Dokobit emulator: document delivery", body)


async def delivery_confirm(request: web.Request) -> web.StreamResponse:
    """POST: the recipient confirms receipt (``document_received`` postback)."""
    core = request.app[CORE]
    try:
        core.receive_delivery(request.match_info["delivery"], request.match_info["recipient"])
    except EmulatedApiError as exc:
        return _refusal(exc)
    return _page("Thank you", "<p id='result'>Receipt confirmed.</p>")


def add_page_routes(app: web.Application) -> None:
    """Register the browser pages on ``app``."""
    app.router.add_get("/sign/{signing}/{signer}", signing_page)
    app.router.add_post("/sign/{signing}/{signer}", signing_action)
    app.router.add_get("/delivery/{delivery}/{recipient}", delivery_page)
    app.router.add_post("/delivery/{delivery}/{recipient}", delivery_confirm)
