"""``dokobit-async demo``: one whole signing, with its postbacks, in a few seconds.

With no arguments it needs no account and no network: it starts the emulator and a
postback receiver on 127.0.0.1, creates an external signing of a generated PDF with
the real :class:`~dokobit_async.client.DokobitClient`, signs as each signer on the
emulator, shows each postback as a handler gets it, and downloads the signed file.

With ``--base-url`` (and the access token, ``--public-url`` and ``--email``) the same
flow runs against the real API: the people sign from Dokobit's e-mail, and the demo
waits up to ``--wait`` seconds for the ``signing_completed`` postback.
``DOKOBIT_BASE_URL`` alone does not switch the demo to the real API, so that
``dokobit-async demo`` always runs offline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from pathlib import Path

import attrs
from aiohttp import web

from .._redact import shown_token
from ..client import DokobitClient
from ..events import Event, SigningCompleted
from ..inbox import SQLiteInbox
from ..models import ExternalSigner, SigningFile
from ..ratelimit import RateLimit
from ..receiver import DispatchPolicy, PostbackReceiver, RedactingAccessLogger
from ..routing import Router
from .arguments import Command
from .listen import local_url, public_url
from .output import CliError, cannot_listen, human_size, out

__all__ = ["add_parser", "demo"]

EMULATED_SIGNERS = ("jonas@example.com", "ona@example.com")
EMULATED_WAIT = 10.0  # seconds; the emulator completes in well under one
_POLICY = DispatchPolicy(max_attempts=5, base_delay=0.2, max_delay=2.0)


def add_parser(command: Command) -> None:
    """Add ``demo`` through ``cli.build_parser``'s ``command`` helper."""
    p = command(
        "demo",
        "run one signing with its postbacks end to end (on the emulator by default; "
        "on the real API with --base-url)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("signed-demo.pdf"),
        help="where to save the signed file (default: %(default)s)",
    )
    p.add_argument(
        "--email",
        action="append",
        metavar="ADDRESS",
        help="a signer's e-mail (repeat for more; needed with --base-url)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="with --base-url: the address Dokobit reaches this machine's receiver at",
    )
    p.add_argument("--host", default="127.0.0.1", help="receiver address (default: %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="receiver port (default: 8080 with --base-url, else free)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="with --base-url: seconds to wait for the people to sign (default: %(default)s)",
    )


class _Handlers:
    """The demo's router: one handler shows every postback, one notes completion."""

    def __init__(self) -> None:
        self.router = Router()
        self.handled: list[Event] = []
        self.completed = asyncio.Event()
        self.file_url: str | None = None
        self._changed = asyncio.Event()
        self.router.on_any(self.show)
        self.router.on(SigningCompleted)(self.note_completion)

    async def show(self, event: Event) -> None:
        """Every event: one line."""
        self.handled.append(event)
        self._changed.set()
        out(f"  postback handled: {event.action:<18} token {shown_token(event.token)}")

    async def seen(self, action: str, count: int, timeout: float) -> None:
        """Wait until ``count`` events of ``action`` were handled."""

        async def enough() -> None:
            while sum(e.action == action for e in self.handled) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(enough(), timeout)
        except asyncio.TimeoutError:
            raise CliError(f"no {action} postback handled within {timeout:.0f} s") from None

    async def note_completion(self, event: SigningCompleted) -> None:
        """The signed file's URL, for the download."""
        self.file_url = event.file
        self.completed.set()


async def demo(args: argparse.Namespace, client: DokobitClient | None) -> int:
    """Run the demo; ``client`` is the real API's, or ``None`` for the emulator."""
    started = time.monotonic()
    emails = list(args.email or ())
    if client is None:
        if args.public_url:
            raise CliError("--public-url applies with --base-url (the real API) only", code=2)
    elif not args.public_url or not emails:
        raise CliError("with --base-url the demo needs --public-url URL and --email ADDRESS", 2)
    public = public_url(args.public_url) if args.public_url else None
    _check_out(args.out)
    async with contextlib.AsyncExitStack() as stack:
        emulator = None
        if client is None:
            from ..testing import Emulator, EmulatorConfig

            emulator = Emulator(config=EmulatorConfig(time_scale=0.0001))
            await emulator.start()
            stack.push_async_callback(emulator.close)
            client = DokobitClient(
                emulator.access_token,
                base_url=emulator.base_url,
                rate_limit=RateLimit(calls=1000, period=1),
            )
            stack.push_async_callback(client.aclose)
            out(f"emulator running at {emulator.base_url} (no account needed)")
        handlers = _Handlers()
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dokobit-demo-")))
        receiver = PostbackReceiver(
            handlers.router,
            inbox=SQLiteInbox(folder / "postbacks.db"),
            secret=secrets.token_bytes(32),
            client=client,  # each event is confirmed against the API first
            policy=attrs.evolve(_POLICY, confirm_delay=0.2 if emulator else 2.0),
        )
        runner = web.AppRunner(receiver.app(), access_log_class=RedactingAccessLogger)
        stack.push_async_callback(runner.cleanup)
        await runner.setup()
        port = args.port if args.port is not None else (0 if emulator else 8080)
        try:
            await web.TCPSite(runner, args.host, port).start()
        except OSError as exc:
            raise cannot_listen(args.host, port, exc) from None
        local = local_url(runner)
        out(f"receiver listening at {local}{receiver.path}")

        signers = [
            ExternalSigner(external_id=f"signer{n}", email=email)
            for n, email in enumerate(emails or EMULATED_SIGNERS, 1)
        ]
        pdf = SigningFile.from_bytes(_sample_pdf(), name="demo-agreement.pdf")
        created = await client.external.create(
            name="dokobit-async demo agreement",
            type="pdf",
            files=[pdf],
            signers=signers,
            postback_url=receiver.postback_url(public or local),
        )
        out(f"created signing {shown_token(created.token)} with {len(signers)} signers")
        if emulator is not None:
            # one step at a time, so that each postback shows under what caused it
            await handlers.seen("signing_created", 1, EMULATED_WAIT)
            for number, signer in enumerate(created.signers, 1):
                await emulator.sign(created.token, signer.token)
                out(f"{signer.email or signer.external_id} signed on the emulator")
                await handlers.seen("signer_signed", number, EMULATED_WAIT)
            wait = EMULATED_WAIT
        else:
            out(f"Dokobit e-mailed {', '.join(emails)}; waiting up to {args.wait:.0f} s")
            wait = args.wait
        try:
            await asyncio.wait_for(handlers.completed.wait(), timeout=wait)
        except asyncio.TimeoutError:
            status = await client.external.status(created.token)
            raise CliError(
                f"the signing is {status.status} after {wait:.0f} s; download it later with "
                f"'dokobit-async download {created.token}'"
            ) from None
        if handlers.file_url:
            saved = await client.download_file(handlers.file_url, args.out)
        else:  # a postback without the file's URL: ask for the file by token
            saved = await client.external.download(created.token, args.out)
        size = saved.stat().st_size
        out(f"saved the signed file to {saved} ({human_size(size)})")
        out(
            f"done: {len(signers)} signers, {len(handlers.handled)} postbacks handled, "
            f"{human_size(size)} signed file, {time.monotonic() - started:.1f} s"
        )
    return 0


def _check_out(out: Path) -> None:
    # before the signing is made, not after it completed
    if out.is_dir():
        raise CliError(f"--out {out} is a directory; give a file name", code=2)
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: no directory {out.parent}", code=2)


def _sample_pdf() -> bytes:
    from ..testing import make_pdf

    return make_pdf(
        [
            "Demo agreement",
            "Signed with dokobit-async",
            time.strftime("%Y-%m-%d %H:%M"),
        ]
    )
