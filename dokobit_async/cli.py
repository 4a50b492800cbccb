"""The ``dokobit-async`` command (also ``python -m dokobit_async``).

::

    dokobit-async emulate [--host 127.0.0.1] [--port 8080] [--time-scale 1.0]
    dokobit-async sign FILE [FILE...] --name NAME [--type pdf] --signer "k=v,..." ...
    dokobit-async status TOKEN [--internal] [--json]
    dokobit-async download TOKEN [-o FILE|-] [--internal] [--progress] [--json]
    dokobit-async validate FILE [--report report-pdf] [-o FILE|-] [--progress] [--json]
    dokobit-async signing create FILE... [--name NAME] [--signer k=v,...]...
                          [--from-json FILE] [--internal --redirect-uri URL] [options]
    dokobit-async signing status|download TOKEN [--internal] ...  (as above)
    dokobit-async signing add-signers TOKEN --signer k=v,... [--from-json FILE] [--internal]
    dokobit-async signing remove-signers TOKEN SIGNER... [--internal]
    dokobit-async signing update TOKEN [--deadline ISO] [--hard-deadline] ... [--internal]
    dokobit-async signing delete TOKEN [--internal] [--yes]
    dokobit-async signing remind TOKEN SIGNER [--message TEXT]
    dokobit-async signing seal TOKEN [--reason TEXT] [--annotation page=1,top=..,left=..]
    dokobit-async delivery create FILE... --name NAME --recipient k=v,... [--from-json FILE]
    dokobit-async validation upload FILE
    dokobit-async validation report TOKEN [--report KIND|all] [-o FILE|-]
    dokobit-async listen --router MODULE:ATTR [--port 8080] [--inbox postbacks.db]
                         [--public-url URL] [--secret-env VAR] [--no-confirm]
                         [--reconcile] [--rate-limit redis://HOST[:PORT][/DB]]
    dokobit-async work --inbox redis://HOST[:PORT][/DB] --router MODULE:ATTR [--no-confirm]
                       [--rate-limit redis://HOST[:PORT][/DB]]
    dokobit-async reconcile --inbox postbacks.db|URL [--tracker PATH|URL] [--once]
                            [--share 0.2] [--rate-limit redis://HOST[:PORT][/DB]]
    dokobit-async inbox list|show ID|retry [ID]|purge [--inbox postbacks.db|URL]
    dokobit-async inbox replay [ID...] [--since TIME] [--until TIME] [--action A] [--handler N]
    dokobit-async inbox export [--state S] [--since TIME] [--until TIME] [-o FILE|-]
    dokobit-async console [--inbox postbacks.db|URL] [--host 127.0.0.1] [--port 8090]
    dokobit-async demo [--out signed-demo.pdf]

Every API command prints a short summary, or ``--json``: the API's answer (or what
was saved) as one JSON document on stdout. The flow is the ``--internal`` switch
everywhere (external is the default). ``--from-json FILE`` takes a call's fields
from the API's own body (without files), options override them. Uploads and
downloads show progress on stderr when it is a terminal, or with ``--progress``.
``signing delete`` asks first on the terminal; with no terminal it refuses unless
``--yes``.

The access token comes from ``DOKOBIT_ACCESS_TOKEN`` or ``--token-file PATH`` (one
line); ``--token VALUE`` still works but warns, as ``ps`` shows arguments. The API's
address comes from ``DOKOBIT_BASE_URL`` (or ``--base-url``; default the production
URL). Errors are one line on stderr, with the token masked in any encoding. Every
command that calls the API (the API's, ``listen``'s confirmations and
``--reconcile``, ``work``'s confirmations, ``reconcile``) counts its calls in the
token's rate limit: its own, in the process, or with
``--rate-limit redis://...`` (default ``DOKOBIT_RATE_LIMIT``) the one that the
application's processes share through that Redis, with ``--rate-limit-calls`` and
``--rate-limit-period`` when the application's limit is not the default.

Exit status: 0 success; 1 a failure of ours or of a local resource (a file that
exists, a busy port, an inbox, a delete not confirmed); 2 bad input (the command
line, a file to send, a ``--from-json`` file: nothing was sent); 3 the API refused
(it answered with an error: invalid data, a wrong token, not found, rate limited,
a server error); 4 no usable answer (no connection, a timeout, a lost answer: a
write may or may not have happened, or an answer that is not the API's JSON); 130
after Ctrl-C (``emulate``, ``listen`` and ``work`` stop on Ctrl-C or SIGTERM with
0). Before the CLI's API actions (issue 13), 3 and 4 were both 1.

This module is the command's face: its parser and ``main``. The commands themselves
live in :mod:`dokobit_async._cli`, one module per group: ``api`` (``status``,
``download``, ``validate``, ``emulate``), ``signings``, ``services`` (``delivery``,
``validation``), ``listen``, ``work``, ``inbox``, ``console`` and ``demo``, on top of
``access``, ``arguments``, ``fields``, ``inboxes``, ``output``, ``logs`` and
``signals``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._cli import api, console, demo, inbox, listen, reconcile, services, signings, work
from ._cli.access import (
    BASE_URL_ENV,
    RATE_LIMIT_ENV,
    TOKEN_ENV,
    add_rate_limit_options,
    client_of,
    in_use,
    read_token_file,
    secrets_in,
)
from ._cli.arguments import non_negative, port_number
from ._cli.logs import LINE_LIMIT, log_to_stderr
from ._cli.output import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_TRANSPORT,
    EXIT_USAGE,
    PROG,
    CliError,
)
from ._redact import printable, redact
from .client import PRODUCTION_URL
from .exceptions import (
    APIError,
    AuthenticationError,
    DecodeError,
    DokobitError,
    InvalidArgumentError,
    OutcomeUnknownError,
    TransportError,
)
from .models import SigningType

__all__ = ["build_parser", "main"]

_EPILOG = f"""\
The access token: ${TOKEN_ENV} or --token-file PATH (--token works but warns: ps
shows arguments). The address: ${BASE_URL_ENV} or --base-url. The token's rate
limit: this process's own, or shared with the application's processes through the
Redis of ${RATE_LIMIT_ENV} or --rate-limit URL (with the application's
--rate-limit-calls and --rate-limit-period).

exit status: 0 success, 1 a local failure (a file, a port, an inbox, a delete not
confirmed), 2 bad input (nothing sent), 3 the API refused (an error answer), 4 no
usable answer (connection, timeout, lost answer), 130 interrupted.
"""


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
            help=f"access token (default: ${TOKEN_ENV}; prefer the variable or "
            "--token-file: arguments are visible to other users of the machine)",
        )
        common.add_argument(
            "--token-file",
            metavar="PATH",
            default=argparse.SUPPRESS,
            help="read the access token from this file (one line)",
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
        add_rate_limit_options(common)
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
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.set_defaults(run=api.status)
    signings.flow_arguments(p)

    p = command("download", "download the signed file")
    p.set_defaults(run=api.download)
    api.download_arguments(p)

    p = command("validate", "validate a signed file and save a report")
    p.set_defaults(run=api.validate)
    api.validate_arguments(p)

    p = command("sign", "create a signing and print its tokens (= signing create)")
    p.set_defaults(run=signings.create, from_json=None)
    p.add_argument("files", nargs="+", metavar="FILE", help="files to sign")
    p.add_argument("--name", required=True, help="the document's name")
    p.add_argument(
        "--type",
        choices=[t.value for t in SigningType],
        default="pdf",
        help="document or container type (default: %(default)s)",
    )
    signings.signer_option(p)
    p.add_argument("--postback-url", metavar="URL", help="where Dokobit posts events")
    p.add_argument("--internal", action="store_true", help="an internal signing (no e-mails)")
    p.add_argument("--redirect-uri", metavar="URL", help="return address (internal only)")
    api.transfer_arguments(p, signings.JSON_HELP)

    signings.add_parser(command, api_options)
    services.add_parsers(command, api_options)
    listen.add_parser(command)
    work.add_parser(command)
    reconcile.add_parser(command)
    inbox.add_parser(command)
    console.add_parser(command)
    demo.add_parser(command)
    return parser


# ------------------------------------------------------------------ running


async def _run(args: argparse.Namespace) -> int:
    if args.command == "emulate":
        return await api.emulate(args)
    if args.command == "console":
        return await console.console(args)
    if args.command == "inbox":
        return await inbox.inbox(args)
    if args.command == "reconcile":
        client = client_of(args, required=True, warn_argument=True)
        assert client is not None
        return await reconcile.reconcile(args, client)
    if args.command == "work":  # the client confirms the events, its token is masked
        return await work.work(args, client_of(args, required=False, warn_argument=True))
    if args.command in ("listen", "demo"):
        if args.command == "listen":
            wanted = args.confirm or args.reconcile  # --reconcile asks the status
            optional = (
                client_of(args, required=args.reconcile, warn_argument=True) if wanted else None
            )
        elif getattr(args, "base_url", None) is not None:  # only an explicit --base-url
            optional = client_of(args, required=True)
        else:
            if getattr(args, "token", None) is not None or getattr(args, "token_file", None):
                raise CliError(
                    "--token and --token-file apply with --base-url (the real API) only", code=2
                )
            optional = None
        async with contextlib.AsyncExitStack() as stack:
            if optional is not None:
                await stack.enter_async_context(in_use(optional))
            if args.command == "listen":
                return await listen.listen(args, optional)
            return await demo.demo(args, optional)
    # the API's commands: each parser names its function (``set_defaults(run=...)``)
    client = client_of(args, required=True, warn_argument=True)
    assert client is not None
    async with in_use(client):
        return int(await args.run(args, client))


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
        The exit status: 0 on success, 1 for a local failure, 2 for bad input, 3
        when the API refused, 4 when no usable answer came, 130 after Ctrl-C (see
        the module's docstring). Errors are reported as one line on stderr, never
        raised.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    secrets = secrets_in(args_list)
    command = None
    verbose = False
    try:
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as done:  # --help, --version
            return done.code if isinstance(done.code, int) else 0
        command = args.command
        if getattr(args, "token_file", None) is not None:
            args.token_from_file = read_token_file(args.token_file)
            secrets.append(args.token_from_file)
        verbose = bool(getattr(args, "verbose", False))
        with log_to_stderr(verbose, secrets, serving=command in ("listen", "work", "console")):
            return asyncio.run(_run(args))
    except _UsageError as exc:
        return _fail(str(exc), secrets, EXIT_USAGE)
    except CliError as exc:
        return _fail(str(exc), secrets, exc.code)
    except InvalidArgumentError as exc:
        return _fail(str(exc), secrets, EXIT_USAGE)
    except AuthenticationError as exc:
        return _fail(f"{exc} (check the access token)", secrets, EXIT_REFUSED)
    except APIError as exc:
        return _fail(str(exc), secrets, EXIT_REFUSED)
    except OutcomeUnknownError as exc:
        return _fail(
            f"{exc} (it may have taken effect: check before repeating)", secrets, EXIT_TRANSPORT
        )
    except (TransportError, DecodeError) as exc:
        return _fail(str(exc), secrets, EXIT_TRANSPORT)
    except DokobitError as exc:
        return _fail(str(exc), secrets, EXIT_FAILED)
    except KeyboardInterrupt:
        if command in ("emulate", "listen", "work", "console"):  # no signal handlers: Ctrl-C stops
            return 0
        return _fail("interrupted", secrets, 130)
    except BrokenPipeError:
        # the reader went away (e.g. `download -o - | head`); say nothing more on stdout
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", secrets, EXIT_FAILED)
    except Exception as exc:
        # a bug of ours: still one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {exc}", secrets, EXIT_FAILED)
