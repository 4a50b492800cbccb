"""A web app with the internal signing flow: the shape of what you build.

``/`` shows an agreement and a "Sign the agreement" button. Pressing it creates an
internal signing and sends the browser to the person's signing page at Dokobit. After
signing (or declining), Dokobit sends the browser back to this app's return page,
which says "waiting" until the postback has reached the app's handler, then "signed"
with a link to the signed file (the handler downloaded it), or "declined". The
postback receiver is mounted in the same aiohttp application as the pages.

With no account, against the emulator (started in this process on 127.0.0.1)::

    python internal_signing_app.py --emulate

Against the real API: Dokobit must reach the app at ``--public-url`` (a reverse proxy
or a tunnel to ``--port``), both for the person's return and for the postbacks::

    export DOKOBIT_BASE_URL=https://beta.dokobit.com DOKOBIT_ACCESS_TOKEN=...
    python internal_signing_app.py --public-url https://sign.example.com --port 8080

It prints the URL it serves, then serves until Ctrl-C or SIGTERM. Postbacks wait in
the SQLite inbox (``--inbox``) until their handler has succeeded, so none that was
acknowledged is lost across a crash or a restart. Set ``DOKOBIT_POSTBACK_SECRET``
(16+ characters) so that the postback URLs of signings created before a restart
keep working.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
from html import escape
from pathlib import Path

from aiohttp import web

from dokobit_async import DokobitClient, DokobitError, InternalSigner, RateLimit, SigningFile
from dokobit_async.events import SignerDeclined, SigningCompleted
from dokobit_async.inbox import SQLiteInbox
from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator, EmulatorConfig, make_pdf

AGREEMENT = make_pdf(["Service agreement", "The Customer accepts the Provider's terms."])
LONG_POLL = 20.0  # seconds a waiting return page is held open for news


class Agreements:
    """What the app knows about the signings it started.

    In memory here, to keep the example short: a real app keeps the reference of each
    signing in its database. The signed files are on disk, written by the handler.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tokens: dict[str, str] = {}  # our reference -> Dokobit's signing token
        self.signed: dict[str, Path] = {}  # signing token -> the signed file
        self.declined: set[str] = set()  # signing tokens
        self._news = asyncio.Event()

    def state(self, ref: str) -> str | None:
        """``"signed"``, ``"declined"``, ``"waiting"``, or ``None`` for no such reference."""
        token = self.tokens.get(ref)
        if token is None:
            return None
        if token in self.signed:
            return "signed"
        return "declined" if token in self.declined else "waiting"

    def file_for(self, token: str) -> Path:
        # the token comes from a request: keep only safe characters for a file name
        return self.folder / (re.sub(r"[^A-Za-z0-9_-]", "_", token)[:80] + ".pdf")

    def changed(self) -> None:
        """Wake every return page that waits for news."""
        self._news.set()
        self._news = asyncio.Event()

    async def wait_for_news(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout)


def make_router(client: DokobitClient, agreements: Agreements) -> Router:
    """The postback handlers. If one raises, the receiver runs it again later: the
    postback stays in the inbox until its handlers have succeeded."""
    router = Router()

    @router.on(SigningCompleted)
    async def keep_signed_file(event: SigningCompleted) -> None:
        if event.token is None or event.file is None:
            return
        # download_file adds the access token, and only for the API's own host; the
        # file appears under its name only once complete (a temporary file, renamed)
        path = await client.download_file(event.file, agreements.file_for(event.token))
        agreements.signed[event.token] = path
        agreements.changed()

    @router.on(SignerDeclined)
    async def note_decline(event: SignerDeclined) -> None:
        if event.token is not None:
            agreements.declined.add(event.token)
            agreements.changed()

    return router


# A waiting page asks the app for news (a request the app holds until something
# happens) and reloads when it answers; without JavaScript it reloads every 2 s.
RELOAD_ON_NEWS = """<noscript><meta http-equiv='refresh' content='2'></noscript><script>
fetch(location.pathname + "?wait=1").then(() => location.reload(),
  () => setTimeout(() => location.reload(), 2000));
</script>"""


def page(title: str, body: str, *, status: int = 200, head: str = "") -> web.Response:
    """An HTML page; ``body`` is markup, so everything put into it is escaped first."""
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'>{head}<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}</style>"
        f"</head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)


class SigningApp:
    """The pages: the agreement, the button, the return page, the signed file."""

    def __init__(
        self,
        client: DokobitClient,
        agreements: Agreements,
        receiver: PostbackReceiver,
        public_url: str | None,
    ) -> None:
        self.client = client
        self.agreements = agreements
        self.receiver = receiver
        self.public_url = public_url.rstrip("/") if public_url else None

    def base(self, request: web.Request) -> str:
        """Where Dokobit reaches this app: ``--public-url``, else where the browser did."""
        return self.public_url or str(request.url.origin())

    async def index(self, request: web.Request) -> web.Response:
        return page(
            "Service agreement",
            "<p>Please read the <a href='/agreement.pdf'>agreement (PDF)</a> and sign it.</p>"
            "<form method='post' action='/sign'>"
            "<button type='submit' id='sign'>Sign the agreement</button></form>",
        )

    async def agreement(self, request: web.Request) -> web.Response:
        return web.Response(body=AGREEMENT, content_type="application/pdf")

    async def start_signing(self, request: web.Request) -> web.Response:
        ref = secrets.token_urlsafe(16)  # names this signing in our URLs
        try:
            created = await self.client.internal.create(
                name="Service agreement",
                type="pdf",
                files=[SigningFile.from_bytes(AGREEMENT, name="service-agreement.pdf")],
                signers=[InternalSigner(external_id="customer")],
                redirect_uri=f"{self.base(request)}/return/{ref}",
                postback_url=self.receiver.postback_url(self.base(request)),
            )
        except DokobitError as exc:  # its message never carries the access token
            return page("Cannot start the signing", f"<p>{escape(str(exc))}</p>", status=502)
        self.agreements.tokens[ref] = created.token
        signing_url = created.signer("customer").signing_url
        assert signing_url is not None  # an internal signing gives each signer one
        raise web.HTTPSeeOther(signing_url)

    async def returned(self, request: web.Request) -> web.Response:
        """Where Dokobit sends the person back. While the postback has not reached our
        handler, the page says so and waits for news: its request with ``?wait=1`` is
        held here until a handler has run, so "signed" shows as soon as it is true."""
        ref = request.match_info["ref"]
        if self.agreements.state(ref) == "waiting" and "wait" in request.query:
            await self.agreements.wait_for_news(LONG_POLL)
        state = self.agreements.state(ref)
        if state is None:
            return page("Unknown signing", "<p>There is no such signing here.</p>", status=404)
        if state == "waiting":
            text = "<p id='state'>waiting</p><p>Waiting for Dokobit to confirm the signature…</p>"
            return page("Agreement", text, head=RELOAD_ON_NEWS)
        if state == "declined":
            return page("Agreement", "<p id='state'>declined</p><p>You declined it.</p>")
        return page(
            "Agreement",
            "<p id='state'>signed</p>"
            f"<p><a id='download' href='/signed/{escape(ref)}'>Download the signed agreement</a>"
            "</p>",
        )

    async def signed_file(self, request: web.Request) -> web.StreamResponse:
        token = self.agreements.tokens.get(request.match_info["ref"], "")
        path = self.agreements.signed.get(token)
        if path is None:
            return page("Not signed", "<p>No signed file for this signing.</p>", status=404)
        disposition = "attachment; filename=signed-agreement.pdf"
        return web.FileResponse(path, headers={"Content-Disposition": disposition})


def make_app(site: SigningApp) -> web.Application:
    """The application: the pages, and the postback receiver mounted beside them."""
    app = web.Application()
    app.router.add_get("/", site.index)
    app.router.add_get("/agreement.pdf", site.agreement)
    app.router.add_post("/sign", site.start_signing)
    app.router.add_get("/return/{ref}", site.returned)
    app.router.add_get("/signed/{ref}", site.signed_file)
    # routes, and the inbox and the dispatcher as a cleanup_ctx of this app
    site.receiver.setup(app, path="/dokobit/postback")

    async def wake_waiting_pages(_: web.Application) -> None:
        site.agreements.changed()  # so that shutdown does not wait for held pages

    app.on_shutdown.append(wake_waiting_pages)
    return app


async def main(args: argparse.Namespace) -> None:
    # from the start, so that a SIGTERM that comes early still ends the app cleanly
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if args.emulate:
            # Dokobit retries a postback that failed after 5 min, 1 h and 24 h; the
            # emulator does it a thousand times sooner, so that a restart shows soon
            emulator = await stack.enter_async_context(
                Emulator(config=EmulatorConfig(time_scale=0.001))
            )
            base_url, token = emulator.base_url, emulator.access_token
        else:
            base_url, token = os.environ["DOKOBIT_BASE_URL"], os.environ["DOKOBIT_ACCESS_TOKEN"]
        # the client's default rate limit is for the real API; the emulator has none
        limit = None if args.emulate else RateLimit()
        client = await stack.enter_async_context(
            DokobitClient(token, base_url=base_url, rate_limit=limit)
        )
        inbox = args.inbox or Path(tempfile.mkdtemp(prefix="signing-app-")) / "postbacks.db"
        inbox.parent.mkdir(parents=True, exist_ok=True)
        folder = inbox.parent / "signed"
        folder.mkdir(exist_ok=True)
        agreements = Agreements(folder)
        receiver = PostbackReceiver(
            make_router(client, agreements),
            inbox=SQLiteInbox(inbox),
            # a random secret is fine for one run; URLs minted with it die with it
            secret=os.environ.get("DOKOBIT_POSTBACK_SECRET") or secrets.token_hex(32),
            client=client,  # each postback is confirmed against the API first
        )
        app = make_app(SigningApp(client, agreements, receiver, args.public_url))
        # this access log masks the secret part of the postback URL
        runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)  # first out: handlers finish, inbox closes
        await web.TCPSite(runner, args.host, args.port).start()
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving http://{host}:{runner.addresses[0][1]}/", flush=True)
        await stop.wait()
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulate", action="store_true", help="use the local emulator")
    parser.add_argument("--public-url", help="where Dokobit reaches this app (real API)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument(
        "--inbox", type=Path, help="the SQLite inbox (default: in a new temporary folder)"
    )
    args = parser.parse_args()
    if not args.emulate:
        if not (os.environ.get("DOKOBIT_BASE_URL") and os.environ.get("DOKOBIT_ACCESS_TOKEN")):
            parser.error("give --emulate, or set DOKOBIT_BASE_URL and DOKOBIT_ACCESS_TOKEN")
        if not args.public_url:
            parser.error("against the real API, give --public-url (where Dokobit reaches you)")
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(parse_args()))
