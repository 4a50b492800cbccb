"""Webhook listener: receive Dokobit's postbacks and save every signed document.

Run it as it is: it starts the local emulator, listens on 127.0.0.1, creates one
signing whose postbacks come here, signs it as its two people, and exits once the
handler has saved the signed PDF in ``signed-documents/``.

Against the real API, set ``DOKOBIT_BASE_URL`` and ``DOKOBIT_ACCESS_TOKEN`` and give
the address at which Dokobit reaches this machine (a reverse proxy or a tunnel to
``--port``)::

    python webhook_listener.py --public-url https://hooks.example.com --port 8080

It prints the ``postback_url`` to pass when you create signings and listens until
Ctrl-C. Set ``DOKOBIT_POSTBACK_SECRET`` (16+ characters) so that the URLs you hand
out keep working after a restart. Postbacks wait in ``postbacks.db`` until handled:
``dokobit-async inbox list --inbox postbacks.db`` shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
from pathlib import Path

from _common import connect  # examples/ is on sys.path when a script runs
from aiohttp import web

from dokobit_async import DokobitClient, ExternalSigner, SigningFile
from dokobit_async.events import Event, SigningCompleted
from dokobit_async.inbox import SQLiteInbox
from dokobit_async.receiver import PostbackReceiver, RedactingAccessLogger
from dokobit_async.routing import Router
from dokobit_async.testing import Emulator, make_pdf


def make_router(client: DokobitClient, folder: Path, saved: asyncio.Queue[Path]) -> Router:
    """The handlers: a line for every postback, and the signed file of each completed
    signing saved in ``folder`` (its path is also put on ``saved``)."""
    router = Router()

    @router.on_any
    async def log(event: Event) -> None:
        print(f"postback: {event.action} (signing {(event.token or '-')[:8]}...)")

    @router.on(SigningCompleted)
    async def save_signed_file(event: SigningCompleted) -> None:
        if event.file is None:
            return
        # download_file adds the access token, and only for the API's own host. If it
        # raises, the receiver retries this handler later (the postback is stored).
        # the token comes from the request: keep only safe characters for a file name
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", event.token or "unknown")[:80]
        path = await client.download_file(event.file, folder / f"{safe}.pdf")
        print(f"saved {path} ({path.stat().st_size} bytes)")
        await saved.put(path)

    return router


async def sign_one_document(client: DokobitClient, emulator: Emulator, postback_url: str) -> None:
    """The self-demonstration: a signing whose postbacks come to this listener."""
    created = await client.external.create(
        name="Webhook demo",
        type="pdf",
        files=[SigningFile.from_bytes(make_pdf(["Webhook demo"]), name="webhook-demo.pdf")],
        signers=[
            ExternalSigner(external_id="buyer", email="jonas@example.com"),
            ExternalSigner(external_id="seller", email="ona@example.com"),
        ],
        postback_url=postback_url,
    )
    print(f"created signing {created.token[:8]}...; the people sign on the emulator")
    for signer in created.signers:
        await emulator.sign(created.token, signer.token)


async def main(args: argparse.Namespace) -> None:
    folder = args.out
    folder.mkdir(exist_ok=True)
    async with connect() as (client, emulator):
        saved: asyncio.Queue[Path] = asyncio.Queue()
        receiver = PostbackReceiver(
            make_router(client, folder, saved),
            inbox=SQLiteInbox(args.inbox),
            # a random secret is fine for one run; URLs minted with it die with it
            secret=os.environ.get("DOKOBIT_POSTBACK_SECRET") or secrets.token_hex(32),
            client=client,  # each postback is confirmed against the API first
        )
        # the access log of this runner masks the secret part of the postback URL
        runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger)
        await runner.setup()
        try:
            port = args.port if args.port is not None else (0 if emulator else 8080)
            await web.TCPSite(runner, args.host, port).start()
            local = f"http://{args.host}:{runner.addresses[0][1]}"
            print(f"listening on {local}{receiver.path}")
            if emulator is None:
                print(f"postback_url for your signings: {receiver.postback_url(args.public_url)}")
                print("press Ctrl-C to stop")
                await asyncio.Event().wait()  # until Ctrl-C
            else:
                await sign_one_document(client, emulator, receiver.postback_url(local))
                path = await asyncio.wait_for(saved.get(), timeout=30)
                print(f"done: the listener saved {path}")
        finally:
            await runner.cleanup()  # lets running handlers finish, closes the inbox


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--public-url", help="where Dokobit reaches this listener (real API)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, help="port (default: 8080; any free one on the emulator)"
    )
    parser.add_argument("--inbox", type=Path, default=Path("postbacks.db"))
    parser.add_argument("--out", type=Path, default=Path("signed-documents"))
    args = parser.parse_args()
    if os.environ.get("DOKOBIT_BASE_URL") and not args.public_url:
        parser.error("with DOKOBIT_BASE_URL set, give --public-url (where Dokobit reaches you)")
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        print("stopped")
