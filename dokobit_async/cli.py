"""The ``dokobit-async`` command (also ``python -m dokobit_async``).

::

    dokobit-async emulate [--host 127.0.0.1] [--port 8080] [--time-scale 1.0]
    dokobit-async sign FILE [FILE...] --name NAME [--type pdf] --signer "k=v,..." ...
    dokobit-async status TOKEN [--internal] [--json]
    dokobit-async download TOKEN [-o FILE|-] [--internal]
    dokobit-async validate FILE [--report report-pdf] [-o FILE|-]
    dokobit-async listen --router MODULE:ATTR [--port 8080] [--inbox postbacks.db]
                         [--public-url URL] [--secret-env VAR] [--no-confirm]
    dokobit-async work --inbox redis://HOST[:PORT][/DB] --router MODULE:ATTR [--no-confirm]
    dokobit-async inbox list|show ID|retry [ID]|purge [--inbox postbacks.db|URL]
    dokobit-async demo [--out signed-demo.pdf]

The access token comes from ``DOKOBIT_ACCESS_TOKEN`` (or ``--token``), the API's
address from ``DOKOBIT_BASE_URL`` (or ``--base-url``; default the production URL).
Errors are one line on stderr, with the token masked; the exit status is 2 for a
usage error, 1 for an API or transport error and 130 after Ctrl-C (``emulate`` and
``listen`` and ``work`` stop on Ctrl-C or SIGTERM with 0).

This module is the command's face: its parser and ``main``. The commands themselves
live in :mod:`dokobit_async._cli`, one module per group: ``api`` (the API's commands
and ``emulate``), ``listen``, ``work``, ``inbox`` and ``demo``, on top of
``arguments``, ``inboxes``, ``output``, ``logs`` and ``signals``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._bodies import JSON
from ._cli import api, demo, inbox, listen, work
from ._cli.arguments import non_negative, parse_signer, port_number
from ._cli.logs import LINE_LIMIT, log_to_stderr
from ._cli.output import PROG, CliError
from ._redact import printable, redact
from .client import PRODUCTION_URL, DokobitClient
from .exceptions import AuthenticationError, DokobitError, InvalidArgumentError
from .models import ReportKind, SigningType

__all__ = ["build_parser", "main"]

TOKEN_ENV = "DOKOBIT_ACCESS_TOKEN"  # noqa: S105 - the variable's name
BASE_URL_ENV = "DOKOBIT_BASE_URL"
_TOKENISH = re.compile(r"^--?(access[-_]?)?tok", re.IGNORECASE)


class _UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _version() -> str:
    from . import __version__

    return str(__version__)


def _common_options(*, for_api: bool) -> _Parser:
    # SUPPRESS defaults: an option given before the command is not reset after it
    common = _Parser(add_help=False, allow_abbrev=False)
    if for_api:
        common.add_argument(
            "--token",
            default=argparse.SUPPRESS,
            help=f"access token (default: ${TOKEN_ENV}; prefer the variable, "
            "arguments are visible to other users of the machine)",
        )
        common.add_argument(
            "--base-url",
            default=argparse.SUPPRESS,
            help=f"API address (default: ${BASE_URL_ENV} or {PRODUCTION_URL})",
        )
        common.add_argument(
            "--json-body",
            action="store_true",
            default=argparse.SUPPRESS,
            help="send JSON request bodies instead of form encoding",
        )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log each request (token masked) on stderr",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dokobit-async``.

    Returns:
        A parser whose errors raise instead of exiting, so that ``main`` reports them
        as one line (exit 2).
    """
    api_options = _common_options(for_api=True)
    parser = _Parser(
        prog=PROG,
        parents=[api_options],
        allow_abbrev=False,
        description="Command line of the Dokobit Universal API client and its emulator.",
        epilog=f"Set {TOKEN_ENV} (and {BASE_URL_ENV}) before calling the API commands.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, helptext: str, *, uses_api: bool = True) -> argparse.ArgumentParser:
        parent = api_options if uses_api else _common_options(for_api=False)
        return sub.add_parser(
            name, parents=[parent], help=helptext, description=helptext, allow_abbrev=False
        )

    p = command("emulate", "run the Universal API emulator until Ctrl-C", uses_api=False)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port",
        type=port_number,
        default=8080,
        help="0 picks a free port (default: 8080)",
    )
    p.add_argument(
        "--time-scale",
        type=non_negative,
        default=1.0,
        help="factor on postback retry delays, e.g. 0.001 (default: %(default)s)",
    )

    p = command("status", "print a signing's status")
    p.add_argument("signing_token", metavar="TOKEN", help="the signing token")
    p.add_argument("--internal", action="store_true", help="an internal signing")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")

    p = command("download", "download the signed file")
    p.add_argument("signing_token", metavar="TOKEN", help="the signing token")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write ('-' for stdout; default: the server's file name, never overwriting)",
    )
    p.add_argument("--internal", action="store_true", help="an internal signing")

    p = command("validate", "validate a signed file and save a report")
    p.add_argument("file", metavar="FILE", help="the signed file")
    p.add_argument(
        "--report",
        choices=[k.value for k in ReportKind],
        default=ReportKind.REPORT_PDF.value,
        help="which report (default: %(default)s)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="where to write ('-' for stdout)")

    p = command("sign", "create a signing and print its tokens")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to sign")
    p.add_argument("--name", required=True, help="the document's name")
    p.add_argument(
        "--type",
        choices=[t.value for t in SigningType],
        default="pdf",
        help="document or container type (default: %(default)s)",
    )
    p.add_argument(
        "--signer",
        action="append",
        type=parse_signer,
        metavar="K=V,...",
        help="a participant, e.g. 'external_id=u1,email=a@b.lt,name=Jonas,"
        "surname=Jonaitis,code=...,country_code=lt,role=viewer' (repeat for more; "
        "'\\,' is a literal comma)",
    )
    p.add_argument("--postback-url", metavar="URL", help="where Dokobit posts events")
    p.add_argument("--internal", action="store_true", help="an internal signing (no e-mails)")
    p.add_argument("--redirect-uri", metavar="URL", help="return address (internal only)")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")

    listen.add_parser(command)
    work.add_parser(command)
    inbox.add_parser(command)
    demo.add_parser(command)
    return parser


# ------------------------------------------------------------------ secrets


def _secrets(argv: Sequence[str]) -> list[str]:
    """Every token value that may show up: the variable and any ``--token`` given."""
    found = [os.environ.get(TOKEN_ENV, "")]
    for index, arg in enumerate(argv):
        # also typos such as --tok or --access-token, which argparse would echo back
        name, eq, value = arg.partition("=")
        if not _TOKENISH.search(name):
            continue
        if eq:
            found.append(value)
        elif index + 1 < len(argv):
            found.append(argv[index + 1])
    return sorted({v for s in found for v in (s, s.strip()) if v.strip()})


# ------------------------------------------------------------------ running


def _client(args: argparse.Namespace, *, required: bool) -> DokobitClient | None:
    """The client of the token and address in ``args`` or the environment; ``None``
    when there is no token and it is not ``required``."""
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        if not required:
            return None
        raise CliError(f"no access token: set {TOKEN_ENV} or pass --token", code=2)
    base_url = getattr(args, "base_url", None) or os.environ.get(BASE_URL_ENV) or PRODUCTION_URL
    encoding = JSON if getattr(args, "json_body", False) else "form"
    try:
        return DokobitClient(token.strip(), base_url=base_url, body_encoding=encoding)
    except InvalidArgumentError as exc:
        raise CliError(str(exc), code=2) from None


async def _run(args: argparse.Namespace) -> int:
    if args.command == "emulate":
        return await api.emulate(args)
    if args.command == "inbox":
        return await inbox.inbox(args)
    if args.command == "work":  # the client confirms the events, its token is masked
        return await work.work(args, _client(args, required=False))
    if args.command in ("listen", "demo"):
        if args.command == "listen":
            optional = _client(args, required=False) if args.confirm else None
        elif getattr(args, "base_url", None) is not None:  # only an explicit --base-url
            optional = _client(args, required=True)
        else:
            if getattr(args, "token", None) is not None:
                raise CliError("--token applies with --base-url (the real API) only", code=2)
            optional = None
        async with contextlib.AsyncExitStack() as stack:
            if optional is not None:
                await stack.enter_async_context(optional)
            if args.command == "listen":
                return await listen.listen(args, optional)
            return await demo.demo(args, optional)
    client = _client(args, required=True)
    assert client is not None
    run = {
        "status": api.status,
        "download": api.download,
        "validate": api.validate,
        "sign": api.sign,
    }[args.command]
    async with client:
        return await run(args, client)


def _fail(message: str, secrets: Sequence[str], code: int) -> int:
    line = printable(" ".join(redact(message, secrets).split()), LINE_LIMIT, backslashes=False)
    with contextlib.suppress(OSError, ValueError):
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run ``dokobit-async``.

    Args:
        argv: the arguments, without the program's name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 for API and transport errors, 2 for usage
        errors, 130 after Ctrl-C. Errors are reported as one line on stderr, never
        raised.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(args_list)
    command = None
    verbose = False
    try:
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as done:  # --help, --version
            return done.code if isinstance(done.code, int) else 0
        command = args.command
        verbose = bool(getattr(args, "verbose", False))
        with log_to_stderr(verbose, secrets, serving=command in ("listen", "work")):
            return asyncio.run(_run(args))
    except _UsageError as exc:
        return _fail(str(exc), secrets, 2)
    except CliError as exc:
        return _fail(str(exc), secrets, exc.code)
    except InvalidArgumentError as exc:
        return _fail(str(exc), secrets, 2)
    except AuthenticationError as exc:
        return _fail(f"{exc} (check the access token)", secrets, 1)
    except DokobitError as exc:
        return _fail(str(exc), secrets, 1)
    except KeyboardInterrupt:
        if command in ("emulate", "listen", "work"):  # no signal handlers: Ctrl-C stops
            return 0
        return _fail("interrupted", secrets, 130)
    except BrokenPipeError:
        # the reader went away (e.g. `download -o - | head`); say nothing more on stdout
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", secrets, 1)
    except Exception as exc:
        # a bug of ours: still one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {exc}", secrets, 1)
