"""Where the command's access token comes from, and the client made with it.

The token travels in the query string of every call and opens the whole account, so
the command takes it from the environment (``DOKOBIT_ACCESS_TOKEN``) or from a file
(``--token-file PATH``, one line); ``--token VALUE`` still works for the API's
commands but warns, since every user of the machine sees a process's arguments
(``ps``). Every spelling of the token that may reach an output is collected first
(:func:`secrets_in`, :func:`read_token_file`), so that each error line and log line
is masked with it (``_redact.redact``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .._bodies import JSON
from ..client import PRODUCTION_URL, DokobitClient
from ..exceptions import InvalidArgumentError
from .output import EXIT_USAGE, CliError, shown_path, warn

__all__ = [
    "BASE_URL_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_LIMIT",
    "client_of",
    "read_token_file",
    "secrets_in",
]

TOKEN_ENV = "DOKOBIT_ACCESS_TOKEN"  # noqa: S105 - the variable's name
BASE_URL_ENV = "DOKOBIT_BASE_URL"
TOKEN_FILE_LIMIT = 4096
"""Largest ``--token-file`` read, in bytes: a token is one short line."""
# and a postback secret misplaced on the command line (``listen`` takes none there)
_TOKENISH = re.compile(r"^--?((access[-_]?)?tok|[\w-]*secret)", re.IGNORECASE)


def secrets_in(argv: Sequence[str]) -> list[str]:
    """Every token value that may show up: the variable and any ``--token`` given."""
    found = [os.environ.get(TOKEN_ENV, "")]
    for index, arg in enumerate(argv):
        # also typos such as --tok or --access-token, which argparse would echo back
        name, eq, value = arg.partition("=")
        if not _TOKENISH.search(name) or name.lower().endswith(("-file", "-env")):
            continue
        if eq:
            found.append(value)
        elif index + 1 < len(argv):
            found.append(argv[index + 1])
    return sorted({v for s in found for v in (s, s.strip()) if v.strip()})


def read_token_file(path: str) -> str:
    """The token in ``path``: its one line, stripped.

    Raises:
        CliError: (exit 2) the file cannot be read, is empty, holds more than one
            line or is larger than :data:`TOKEN_FILE_LIMIT`. The message names the
            file, never its content.
    """
    where = shown_path(path)
    try:
        with Path(path).open("rb") as file:
            data = file.read(TOKEN_FILE_LIMIT + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(f"cannot read --token-file {where}: {reason}", EXIT_USAGE) from None
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        lines = []
    if len(data) > TOKEN_FILE_LIMIT or len(lines) != 1:
        raise CliError(f"--token-file {where} must hold the access token on one line", EXIT_USAGE)
    return lines[0]


def _token(args: argparse.Namespace) -> tuple[str, bool]:
    """The token, and whether it came from ``--token``."""
    given = getattr(args, "token", None)
    from_file = getattr(args, "token_from_file", None)
    if given is not None and from_file is not None:
        raise CliError("give the access token once: --token-file or --token", EXIT_USAGE)
    if from_file is not None:
        return str(from_file), False
    if given is not None and given.strip():
        return str(given), True
    return os.environ.get(TOKEN_ENV, ""), False


def client_of(
    args: argparse.Namespace, *, required: bool, warn_argument: bool = False
) -> DokobitClient | None:
    """The client of the token and address in ``args`` or the environment; ``None``
    when there is no token and it is not ``required``. A ``--token`` warns on stderr
    when ``warn_argument``."""
    token, from_argument = _token(args)
    token = token.strip()
    if not token:
        if not required:
            return None
        raise CliError(
            f"no access token: set {TOKEN_ENV} or pass --token-file PATH", code=EXIT_USAGE
        )
    base_url = getattr(args, "base_url", None) or os.environ.get(BASE_URL_ENV) or PRODUCTION_URL
    encoding = JSON if getattr(args, "json_body", False) else "form"
    try:
        client = DokobitClient(token, base_url=base_url, body_encoding=encoding)
    except InvalidArgumentError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    if from_argument and warn_argument:
        warn(
            "--token is visible to every user of this machine (ps); "
            f"set {TOKEN_ENV} or use --token-file PATH"
        )
    return client
