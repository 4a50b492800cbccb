"""External signing: upload a PDF, invite two people by e-mail, follow the signing,
download the signed file.

Run it as it is (against the local emulator, where the "people" sign at once), or
with ``DOKOBIT_BASE_URL`` and ``DOKOBIT_ACCESS_TOKEN`` set (against the real API,
where the invited people sign from their e-mail; the script waits up to
``--wait`` seconds). ``--pdf`` names your own file; by default a small PDF is made.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import connect  # examples/ is on sys.path when a script runs

from dokobit_async import DocumentStatus, ExternalSigner, Role, SigningFile
from dokobit_async.testing import make_pdf


async def main(pdf: Path | None, out: Path, wait: float) -> None:
    if pdf is not None:
        document = SigningFile.from_path(pdf)
    else:
        document = SigningFile.from_bytes(
            make_pdf(["Service agreement", "No. 42"]), name="agreement.pdf"
        )
    async with connect() as (client, emulator):
        created = await client.external.create(
            name="Service agreement No. 42",
            type="pdf",
            files=[document],
            signers=[
                ExternalSigner(
                    external_id="buyer-1",
                    name="Jonas",
                    surname="Jonaitis",
                    email="jonas@example.com",
                ),
                ExternalSigner(
                    external_id="seller-1", name="Ona", surname="Onaite", email="ona@example.com"
                ),
                ExternalSigner(
                    external_id="lawyer-1", email="lawyer@example.com", role=Role.VIEWER
                ),
            ],
            deadline=datetime.now(timezone.utc) + timedelta(days=7),
            comment="Please sign the service agreement.",
        )
        print(f"created signing {created.token[:8]}... with {len(created.signers)} people")

        if emulator is not None:  # the people sign, as they would from the e-mail link
            for signer in created.signers:
                if signer.external_id != "lawyer-1":
                    await emulator.sign(created.token, signer.token)
                    print(f"  {signer.external_id} signed")

        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        while True:
            status = await client.external.status(created.token)
            people = ", ".join(f"{s.email}: {s.status}" for s in status.signers)
            print(f"status: {status.status} ({people})")
            if status.status == DocumentStatus.COMPLETED or loop.time() > give_up:
                break
            await asyncio.sleep(10)
        if status.status != DocumentStatus.COMPLETED:
            print("not completed yet; download it later with `dokobit-async download`")
            return
        path = await client.external.download(created.token, out)
        print(f"signed file saved to {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, help="the PDF to sign (default: a sample)")
    parser.add_argument("--out", type=Path, default=Path("signed-agreement.pdf"))
    parser.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds to wait for the people to sign (real API)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.pdf, args.out, args.wait))
