"""Internal signing: your application sends each person to their signing page and
gets them back at ``redirect_uri``; no e-mail is sent.

Against the local emulator (the default), the script plays the person's browser: it
opens the signing page and presses Sign, then follows the redirect back. Against the
real API (``DOKOBIT_BASE_URL`` and ``DOKOBIT_ACCESS_TOKEN`` set), it prints the URL to
open and waits up to ``--wait`` seconds for the signature.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp
from _common import connect  # examples/ is on sys.path when a script runs

from dokobit_async import DocumentStatus, InternalSigner, SigningFile
from dokobit_async.testing import make_pdf

RETURN_URL = "https://example.com/signed"


async def press_sign(signing_url: str) -> str:
    """What the person's browser does on the emulator's signing page."""
    async with aiohttp.ClientSession() as browser:
        async with browser.get(signing_url) as page:
            page.raise_for_status()
        async with browser.post(
            signing_url, data={"action": "sign"}, allow_redirects=False
        ) as answer:
            return answer.headers.get("Location", "")


async def main(out: Path, wait: float) -> None:
    document = SigningFile.from_bytes(make_pdf(["Employment contract"]), name="contract.pdf")
    async with connect() as (client, emulator):
        created = await client.internal.create(
            name="Employment contract",
            type="pdf",
            files=[document],
            redirect_uri=RETURN_URL,
            signers=[InternalSigner(external_id="employee-7")],
        )
        person = created.signer("employee-7")
        assert person.signing_url is not None
        print(f"created internal signing {created.token[:8]}...")
        if emulator is not None:
            back_to = await press_sign(person.signing_url)
            print(f"the person signed and was sent back to {back_to}")
        else:
            print(f"open this URL in a browser to sign: {person.signing_url}")

        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        while True:
            status = await client.internal.status(created.token)
            print(f"status: {status.status}")
            if status.status == DocumentStatus.COMPLETED or loop.time() > give_up:
                break
            await asyncio.sleep(5)
        if status.status == DocumentStatus.COMPLETED:
            path = await client.internal.download(created.token, out)
            print(f"signed file saved to {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("signed-contract.pdf"))
    parser.add_argument("--wait", type=float, default=600.0)
    args = parser.parse_args()
    asyncio.run(main(args.out, args.wait))
