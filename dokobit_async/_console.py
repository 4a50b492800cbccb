"""The dead-letter console: a small local web app over an inbox (``dokobit-async
console``), to look at events, retry dead ones and replay done ones.

Guarantees, and why (``docs/architecture.md#the-dead-letter-console``):

* **Nothing without the key.** A random access key (:func:`new_key`) is printed at
  start as a URL (``/?key=...``). Opening it sets a session cookie (HttpOnly,
  SameSite=Strict, named after a hash of the key so that two consoles on one host do
  not overwrite each other's; 12 hours at most, :data:`SESSION_AGE`) and redirects to
  the same page without the key, so the key stays out of the address bar and the
  history; to a page of the console only (any other path goes to ``/``), never to a
  path a browser would read as another host (``//evil.example``). Every other request needs that
  cookie or the key in the query: without either it gets a 401, with a wrong one a
  403, and nothing is read from the inbox. The key and the cookie are checked with
  :func:`hmac.compare_digest` (constant time); the cookie is ``SID.MAC``, the MAC
  being an HMAC of the session id under the key, so no session table is kept and a
  forged cookie fails the same way a wrong key does. The key is never logged: the
  access log masks it (:func:`access_logger`).
* **No write without a form of ours.** Retry and Replay are POSTs that need the
  session cookie, a per-session CSRF token (an HMAC of the session id, in a hidden
  field, compared in constant time), and an ``Origin`` (or, without one, a
  ``Referer``) that is the console's own origin: a page on another port of the same
  host is "same-site" for the cookie, so the origin check is what refuses it. For
  the browser to send its origin on our own forms the pages use
  ``Referrer-Policy: same-origin``, not ``no-referrer``: under ``no-referrer`` Chromium
  sends ``Origin: null`` on a same-origin POST, which a hostile page can send too.
  ``same-origin`` still sends nothing to any other origin.
* **Security headers on every answer** (:data:`SECURITY_HEADERS`), refusals included:
  a CSP that allows no script, no frame and no form target but the console
  (``default-src 'none'``, the one inline style by its hash), ``X-Frame-Options:
  DENY``, ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``.
* **Sender-supplied text is escaped and secrets are masked** (:mod:`._console_pages`).
* **Bounded work per page.** The inbox filters by state; action, signing and time
  are filtered here over at most :data:`SCAN_LIMIT` rows of the state, read a page at
  a time, and the page says so.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import hmac
import logging
import secrets as secrets_module
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, cast

import attrs
from aiohttp import hdrs, web
from yarl import URL

from ._console_pages import STYLE_HASH, Filters, Pages
from ._http import RedactingAccessLogger, answer
from ._inbox_base import STATES, Inbox, InboxState, StoredEvent
from ._redact import redact

__all__ = [
    "PAGE_SIZE",
    "SCAN_LIMIT",
    "SECURITY_HEADERS",
    "SESSION_AGE",
    "SHOWN_LIMIT",
    "Console",
    "access_logger",
    "new_key",
]

logger = logging.getLogger("dokobit_async.console")

SCAN_LIMIT = 10_000
"""Rows of one state the list looks at, at most, to filter by action, signing, time."""
PAGE_SIZE = 1000
"""Rows read from the inbox at a time."""
SHOWN_LIMIT = 200
"""Events on one list page (the newest that match)."""
SESSION_AGE = 12 * 3600
"""Seconds the session cookie lasts (``Max-Age``): cookies are not scoped by port, so
it must not stay in the browser for whatever serves this host later."""
_PAGES = ("/", "/event")  # where the key's redirect may go

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
"""Set on every answer of the console (see the module's docstring for the referrer)."""

_FILTERS = tuple(attrs.fields_dict(Filters))


def new_key() -> str:
    """A fresh access key: 32 random bytes, URL-safe."""
    return secrets_module.token_urlsafe(32)


def _mac(key: str, purpose: str, session: str) -> str:
    digest = hmac.new(key.encode(), f"{purpose}:{session}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class _KeyRedactingLogger(RedactingAccessLogger):
    """The receiver's access logger, with the console's key masked too."""

    secrets: ClassVar[tuple[str, ...]] = ()

    def _format_line(self, request: Any, response: Any, time: float) -> Any:
        return [
            (key, redact(value, self.secrets) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


def access_logger(key: str) -> type[RedactingAccessLogger]:
    """An ``access_log_class`` that masks ``key`` (in every encoding) in each line."""
    return type("ConsoleAccessLogger", (_KeyRedactingLogger,), {"secrets": (key,)})


class Console:
    """The console's application over ``inbox`` (opened and closed by the caller).

    ``secrets`` are masked on every page besides the key; the list looks at no more
    than ``scan_limit`` rows, ``page_size`` at a time, and shows ``shown_limit``.
    """

    def __init__(
        self,
        inbox: Inbox,
        key: str,
        *,
        secrets: Sequence[str] = (),
        scan_limit: int = SCAN_LIMIT,
        page_size: int = PAGE_SIZE,
        shown_limit: int = SHOWN_LIMIT,
    ):
        self.inbox = inbox
        self.key = key
        self.scan_limit, self.page_size, self.shown_limit = scan_limit, page_size, shown_limit
        self.pages = Pages(secrets=(*secrets, key))
        self.cookie = "dokobit_console_" + hashlib.sha256(key.encode()).hexdigest()[:12]

    def app(self) -> web.Application:
        """The aiohttp application: pages, forms, the access check, the headers."""
        app = web.Application(middlewares=[self._access])
        app.on_response_prepare.append(_secure)
        app.router.add_get("/", self._overview)
        app.router.add_get("/event", self._event)
        app.router.add_post("/event/retry", self._retry)
        app.router.add_post("/event/replay", self._replay)
        return app

    # ---------------------------------------------------------------- access

    def _session(self, request: web.Request) -> str | None:
        """The session of a valid cookie, or None."""
        sid, dot, mac = request.cookies.get(self.cookie, "").partition(".")
        if not dot or not sid:
            return None
        return sid if hmac.compare_digest(mac, _mac(self.key, "session", sid)) else None

    @web.middleware
    async def _access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.query.get("key")
        if given is not None:
            if not hmac.compare_digest(given.encode(), self.key.encode()):
                return answer(403, "wrong access key")
            if request.method != "GET":
                return answer(403, "a write needs the console's session and form")
            # the key opens a session: a cookie, and the same page without the key
            new = secrets_module.token_urlsafe(16)
            rest = [(name, value) for name, value in request.query.items() if name != "key"]
            # to a page of ours only: a path that a browser reads as a host ("//evil",
            # "/\\evil") would take the user off-site
            page = request.path if request.path in _PAGES else "/"
            where = str(URL.build(path=page, query=rest))
            response = web.Response(status=303, headers={hdrs.LOCATION: where})
            response.set_cookie(
                self.cookie,
                f"{new}.{_mac(self.key, 'session', new)}",
                httponly=True,
                samesite="Strict",
                path="/",
                max_age=SESSION_AGE,
            )
            return response
        if self.cookie not in request.cookies:
            return answer(401, "open the URL the console printed at start (it holds the key)")
        sid = self._session(request)
        if sid is None:
            return answer(403, "this session is not the console's: open its URL again")
        if request.method == "POST":
            refused = await self._check_form(request, sid)
            if refused is not None:
                return refused
        result: web.StreamResponse = await handler(request)
        return result

    async def _check_form(self, request: web.Request, sid: str) -> web.Response | None:
        """A refusal unless the POST comes from the console's own page and form."""
        own = f"{request.scheme}://{request.host}"
        origin: str | None = request.headers.get(hdrs.ORIGIN)
        referer: str | None = request.headers.get(hdrs.REFERER)
        if origin is None and referer is not None:
            with contextlib.suppress(ValueError):  # not an absolute URL: refused below
                origin = str(URL(referer).origin())
        if origin != own:
            logger.warning("console: a write from another origin refused")
            return answer(403, "a write must come from the console's own page")
        form = await request.post()
        token = form.get("csrf")
        expected = _mac(self.key, "csrf", sid)
        if not isinstance(token, str) or not hmac.compare_digest(token, expected):
            logger.warning("console: a write without the form's token refused")
            return answer(403, "the form's token is missing or wrong: reload the page")
        return None

    # ---------------------------------------------------------------- pages

    async def _overview(self, request: web.Request) -> web.Response:
        filters = Filters(**{k: request.query.get(k, "").strip() for k in _FILTERS})
        state = cast("InboxState", filters.state) if filters.state in STATES else None
        try:
            since, until = _time(filters.since), _time(filters.until)
        except (ValueError, OverflowError, OSError):  # not a date, or out of range
            return _html(self.pages.page("Bad filter", "<p>A time is not a date.</p>"), 400)
        counts = await self.inbox.counts()
        matched: collections.deque[StoredEvent] = collections.deque(maxlen=self.shown_limit)
        looked = found = 0
        after = 0
        while looked < self.scan_limit:
            size = min(self.page_size, self.scan_limit - looked)
            page = await self.inbox.list(state=state, limit=size, after_seq=after)
            for event in page:
                if _matches(event, filters, since, until):
                    matched.append(event)
                    found += 1
            looked += len(page)
            if len(page) < size:
                break
            after = page[-1].seq
        html = self.pages.overview(
            counts,
            attrs.evolve(filters, state=state or ""),
            list(reversed(matched)),
            looked_at=looked,
            scan_limit=self.scan_limit,
            shown_limit=self.shown_limit,
            matched=found,
        )
        return _html(html)

    async def _event(self, request: web.Request) -> web.Response:
        event = await self.inbox.get(request.query.get("id", ""))
        if event is None:
            return _html(self.pages.missing(), 404)
        csrf = _mac(self.key, "csrf", self._session(request) or "")  # (checked already)
        return _html(self.pages.event(event, csrf, request.query.get("did")))

    async def _retry(self, request: web.Request) -> web.StreamResponse:
        return await self._write(request, "retried", ("dead", "unconfirmed"))

    async def _replay(self, request: web.Request) -> web.StreamResponse:
        return await self._write(request, "replayed", ("done",))

    async def _write(
        self, request: web.Request, did: str, states: tuple[InboxState, ...]
    ) -> web.StreamResponse:
        form = await request.post()
        event_id = form.get("id")
        event = await self.inbox.get(event_id) if isinstance(event_id, str) else None
        if event is None:
            return _html(self.pages.missing(), 404)
        moved = 0
        if event.state in states:
            if did == "retried":
                moved = await self.inbox.retry(event.id)
            else:
                moved = await self.inbox.replay(ids=[event.id])
        logger.info("console: event %s %s (%d moved)", event.id[:12], did, moved)
        where = URL("/event").with_query(id=event.id, did=did if moved else "unchanged")
        raise web.HTTPSeeOther(str(where))


def _time(text: str) -> float | None:
    """A filter's time: unix seconds, or an ISO 8601 date (local time without offset)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def _matches(event: StoredEvent, f: Filters, since: float | None, until: float | None) -> bool:
    return (
        (not f.action or f.action.lower() in event.action.lower())
        and (not f.token or event.signing_token.startswith(f.token))
        and (since is None or event.received_at >= since)
        and (until is None or event.received_at < until)
    )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer gets the security headers, refusals and errors included."""
    response.headers.update(SECURITY_HEADERS)
