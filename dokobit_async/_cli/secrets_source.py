"""Where ``listen`` takes its postback secrets from: a file or the environment, never
the command line (every user of the machine sees a process's arguments in ``ps``).

Several secrets rotate one without downtime: the first mints the URLs of new
signings, any of them verifies a postback
(``docs/architecture.md#rotating-the-postback-secret``).

* ``--secret-file PATH``: one secret per line; blank lines and lines starting with
  ``#`` are skipped. Like ssh with a private key, a file that its group or others may
  read or write is refused (``chmod 600``).
* ``$DOKOBIT_POSTBACK_SECRET`` (or the variable ``--secret-env`` names): one secret,
  or several separated by whitespace or commas.
* Neither, with an SQLite inbox: ``INBOX.secret`` beside it, generated once (random,
  mode 0600, written atomically) and read like ``--secret-file``, so that it may hold
  several lines too. A Redis inbox's replicas on other hosts cannot share it.

No secret is ever printed, and no error shows one: errors name a secret by its
place (``line 3 of PATH``, ``secret 2 of $VAR``). A ``--secret`` option is refused
without echoing its value.

The commands that show what an inbox holds (``inbox``, ``console``) mask the secrets
they can know of (:func:`known_secrets`): read by the same rules as above, so that
every secret ``listen`` would take from the variable or ``INBOX.secret`` is masked,
each on its own (a rotation's file holds several lines).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._postback_keys import postback_keys
from ..exceptions import InvalidArgumentError
from .access import TOKEN_ENV
from .inboxes import InboxLocation
from .output import EXIT_USAGE, CliError, shown_path

__all__ = [
    "SECRETS_FILE_LIMIT",
    "SECRET_ENV",
    "add_secret_options",
    "known_secrets",
    "postback_secrets",
]

SECRET_ENV = "DOKOBIT_POSTBACK_SECRET"  # noqa: S105 - the variable's name
SECRETS_FILE_LIMIT = 64 * 1024
"""Largest secrets file read, in bytes: a few lines of secrets."""

_SEPARATORS = re.compile(r"[\s,]+")


class _Refused(argparse.Action):
    """``--secret``: refused without echoing its value (``ps`` would show it)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "--secret is not accepted: other users see a command's arguments (ps); "
            f"use --secret-file PATH or ${SECRET_ENV}"
        )


def add_secret_options(p: argparse.ArgumentParser) -> None:
    """``--secret-env`` and ``--secret-file`` on ``listen``'s parser (and a hidden
    ``--secret`` that refuses)."""
    p.add_argument(
        "--secret-env",
        metavar="VAR",
        help="variable holding the postback secret, or several separated by whitespace "
        "or commas: the first mints new URLs, any verifies (default: "
        f"{SECRET_ENV}; if unset with an SQLite inbox, one is generated and kept in "
        "INBOX.secret, which may hold several lines like --secret-file)",
    )
    p.add_argument(
        "--secret-file",
        metavar="PATH",
        help="read the postback secrets from PATH instead: one per line, the first mints "
        "new URLs, any verifies; blank and # lines skipped; mode 600 (to rotate: put "
        "the new secret first, keep the old one while its signings may still send "
        "postbacks, then drop it)",
    )
    p.add_argument("--secret", nargs="?", action=_Refused, help=argparse.SUPPRESS)


def postback_secrets(
    env: str | None, file: str | None, inbox: InboxLocation
) -> tuple[tuple[bytes, ...], str | None]:
    """The postback secrets (the first mints) and a note for stderr, from ``--secret-env
    env`` (``None``: the default variable), ``--secret-file file`` or ``INBOX.secret``.

    Raises:
        CliError: Both options given, a named variable unset, a file that cannot be
            read, holds no secret or is open to others, a secret too short or given
            twice (exit 2), or a Redis inbox without a secret.
    """
    if file is not None:
        if env is not None:
            raise CliError("give the postback secrets once: --secret-file or --secret-env", 2)
        where = f"--secret-file {shown_path(file)}"
        keys = _read(Path(file), where)
        return keys, f"{where}: {_several(keys)}" if len(keys) > 1 else None
    name = env or SECRET_ENV
    value = os.environ.get(name, "").strip()
    if value:
        parts = _split(value)
        names = [f"secret {index}" for index in range(1, len(parts) + 1)]
        keys = _checked(parts, names, f"${name}")
        return keys, f"${name}: {_several(keys)}" if len(keys) > 1 else None
    if env is not None:  # not echoed: a secret given by mistake as the name is one
        raise CliError("the variable --secret-env names is not set (give its name)", 2)
    if inbox.kind != "sqlite":  # replicas on other hosts: one file cannot serve them
        raise CliError(
            f"a {inbox.kind} inbox needs the postback secret in ${name} or a "
            "--secret-file, the same for every listener that shares it (at least 16 bytes)",
            code=2,
        )
    return _kept(inbox.path, name)


def _kept(inbox_path: Path, name: str) -> tuple[tuple[bytes, ...], str]:
    """The secrets in ``INBOX.secret``, made on first use."""
    if not inbox_path.parent.is_dir():
        raise CliError(f"--inbox {inbox_path}: no directory {inbox_path.parent}", code=2)
    path = Path(f"{inbox_path}.secret")
    made = not path.exists()
    if made:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32) + "\n")
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another listener won the race
                os.link(tmp, path)
        finally:
            tmp.unlink()
    empty = f"{path} holds no usable postback secret; delete it or set ${name}"
    keys = _read(path, str(path), empty)
    if made:
        return keys, f"${name} is not set: generated a postback secret, kept in {path} (mode 0600)"
    several = f" ({_several(keys)})" if len(keys) > 1 else ""
    return keys, f"${name} is not set: using the postback secret kept in {path}{several}"


def _read(path: Path, where: str, empty: str | None = None) -> tuple[bytes, ...]:
    """The secrets in ``path``: one per line, blank and ``#`` lines skipped; refused
    when its group or others may read or write it."""
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode  # of the file read, not of a path
            data = file.read(SECRETS_FILE_LIMIT + 1)
    except OSError as exc:
        raise CliError(f"cannot read {where}: {exc.strerror or type(exc).__name__}", 2) from None
    if os.name == "posix" and mode & 0o077:
        raise CliError(
            f"{where}: permissions {mode & 0o777:04o} are too open for postback secrets "
            f"(its group or others have access): chmod 600 {shown_path(str(path))}",
            EXIT_USAGE,
        )
    if len(data) > SECRETS_FILE_LIMIT:
        raise CliError(f"{where} is larger than {SECRETS_FILE_LIMIT} bytes", EXIT_USAGE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{where} is not UTF-8 text", EXIT_USAGE) from None
    numbered = _lines(text)
    if not numbered:
        raise CliError(empty or f"{where} holds no postback secret", EXIT_USAGE)
    lines = [line for _, line in numbered]
    return _checked(lines, [f"line {number}" for number, _ in numbered], where)


def known_secrets(inbox: InboxLocation) -> list[str]:
    """What this process can know of the access token and the postback secrets, to
    mask them: ``$DOKOBIT_ACCESS_TOKEN``, every secret of ``$DOKOBIT_POSTBACK_SECRET``
    and, for an SQLite inbox, every secret line of ``INBOX.secret``.

    Best effort, never an error: a file that cannot be read or is not UTF-8 adds
    nothing, and nothing is checked (masking a value that is not a secret costs
    nothing; refusing here would only hide the inbox).
    """
    found = [os.environ.get(TOKEN_ENV, "").strip(), *_split(os.environ.get(SECRET_ENV, ""))]
    if inbox.kind == "sqlite":
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with Path(f"{inbox.path}.secret").open("rb") as file:
                text = file.read(SECRETS_FILE_LIMIT).decode("utf-8")
            found += [line for _, line in _lines(text)]
    return [value for value in found if value]


def _split(value: str) -> list[str]:
    """The secrets in a variable's ``value``: separated by whitespace or commas."""
    return [part for part in _SEPARATORS.split(value) if part]


def _lines(text: str) -> list[tuple[int, str]]:
    """The secrets in a file's ``text`` with their line numbers: one per line, blank
    lines and ``#`` comments skipped."""
    lines = ((number, line.strip()) for number, line in enumerate(text.splitlines(), 1))
    return [(number, line) for number, line in lines if line and not line.startswith("#")]


def _checked(parts: Sequence[str], names: Sequence[str], where: str) -> tuple[bytes, ...]:
    try:
        return postback_keys(parts, names)
    except InvalidArgumentError as exc:
        raise CliError(f"{where}: {exc}", EXIT_USAGE) from None


def _several(keys: tuple[bytes, ...]) -> str:
    """What a note says of several secrets (a rotation under way)."""
    return f"{len(keys)} postback secrets: the first mints new URLs, any verifies"
