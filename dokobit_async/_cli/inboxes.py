"""``--inbox``: where an inbox lives, for ``listen``, ``work``, ``inbox``, ``console``
and ``reconcile``.

The value is a file path (``postbacks.db``), the same as an SQLite URL in
SQLAlchemy's spelling (``sqlite:///postbacks.db`` relative, ``sqlite:////var/lib/
postbacks.db`` absolute), or a Redis URL (``redis://[[user]:password@]host[:port][/db]``,
``rediss://`` for TLS, ``unix:///path/to/socket``), which needs the ``redis`` extra.
A Redis URL's password is never shown: messages carry :attr:`InboxLocation.shown`.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Literal
from urllib.parse import urlsplit

import attrs

from .._inbox_sqlite_store import SCHEMA_VERSION
from .._urls import server_address
from ..inbox import Inbox, SQLiteInbox
from .output import CliError

__all__ = [
    "DEFAULT_INBOX",
    "INBOX_FORMS",
    "REDIS_SCHEMES",
    "InboxLocation",
    "add_inbox_option",
    "inbox_location",
    "open_inbox",
    "opened",
    "redis_extra",
    "schema_version",
]

DEFAULT_INBOX = "postbacks.db"
INBOX_FORMS = "a file, sqlite:///PATH or redis://HOST[:PORT][/DB]"
"""What ``--inbox`` takes, as help texts and errors say it."""
REDIS_SCHEMES = ("redis", "rediss", "unix")
_SQLITE_PREFIX = "sqlite:///"


def add_inbox_option(p: argparse.ArgumentParser, what: str = "the listener's inbox") -> None:
    """``--inbox`` of a command that opens a listener's inbox (default
    :data:`DEFAULT_INBOX`); its help starts with ``what``."""
    p.add_argument(
        "--inbox",
        default=DEFAULT_INBOX,
        metavar="PATH|URL",
        help=f"{what}: {INBOX_FORMS} (default: %(default)s)",
    )


@attrs.frozen
class InboxLocation:
    """A checked ``--inbox`` value."""

    kind: Literal["sqlite", "redis"]
    target: str = attrs.field(repr=False)
    """The file's path, or the Redis URL (which may hold a password: never shown)."""
    shown: str
    """What messages show: the path, or the Redis URL without user, password or query."""

    @property
    def path(self) -> Path:
        """The SQLite file."""
        assert self.kind == "sqlite"
        return Path(self.target)


def inbox_location(text: str) -> InboxLocation:
    """``--inbox`` checked (a usage error of one line when it is not an inbox)."""
    if text.startswith(_SQLITE_PREFIX):
        path = text[len(_SQLITE_PREFIX) :]
        if not path:
            raise CliError("--inbox sqlite:///PATH needs a path", code=2)
        return InboxLocation("sqlite", path, path)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if not scheme:
        if not text.strip():
            raise CliError("--inbox needs a path or a URL", code=2)
        return InboxLocation("sqlite", text, text)
    if scheme not in REDIS_SCHEMES:
        raise CliError(
            f"--inbox: {scheme}:// is not an inbox; use {INBOX_FORMS}",
            code=2,
        )
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - checked: a port that is not a number raises
    except ValueError:
        raise CliError("--inbox: the Redis URL's port is not a number", code=2) from None
    if scheme != "unix" and not parts.hostname:
        raise CliError(f"--inbox: a {scheme}:// URL needs a host", code=2)
    return InboxLocation("redis", text, server_address(text))


def open_inbox(location: InboxLocation, *, existing: bool = False) -> Inbox:
    """The inbox at ``location``, not yet open. ``existing``: an SQLite file must be
    there already (SQLite would create an empty one, and ``inbox`` would then show a
    wrong file as empty), of this version's schema: ``inbox`` and ``console`` never
    upgrade a file, the listener that serves it does (an older listener would refuse
    its file, upgraded under it, at its next start)."""
    if location.kind == "sqlite":
        if existing and not location.path.is_file():
            raise CliError(
                f"no inbox at {location.shown} (a listener creates it; pass --inbox)", code=2
            )
        version = schema_version(location.path) if existing else None
        if version == 0:  # (no table: another program's database, or an empty file)
            raise CliError(f"{location.shown} is not an inbox (pass --inbox)", code=2)
        if version is not None and version < SCHEMA_VERSION:
            raise CliError(
                f"{location.shown} is an inbox of schema version {version}, older than this "
                f"dokobit-async's ({SCHEMA_VERSION}): upgrade and restart the listener that "
                "serves it first (it upgrades the file; inbox and console never do)"
            )
        return SQLiteInbox(location.path)
    redis: ModuleType = redis_extra(location.shown)
    inbox: Inbox = redis.RedisInbox(location.target)
    return inbox


def redis_extra(what: str) -> ModuleType:
    """:mod:`dokobit_async.redis`, imported now (only a Redis URL asks for it); a usage
    error that names the extra to install when redis-py is missing."""
    try:
        from .. import redis
    except ImportError as exc:
        raise CliError(
            f"{what} needs the redis extra: pip install 'dokobit-async[redis]' ({exc})", code=2
        ) from None
    return redis


def schema_version(path: Path) -> int | None:
    """The schema version (``PRAGMA user_version``) of the SQLite file at ``path``,
    read without a write (no transaction, no migration, unlike ``SQLiteInbox.open``);
    None when it cannot be read (opening it then tells why)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


@asynccontextmanager
async def opened(location: InboxLocation, *, existing: bool = False) -> AsyncIterator[Inbox]:
    """:func:`open_inbox`, open for the ``async with`` block, closed after it."""
    box = open_inbox(location, existing=existing)
    await box.open()
    try:
        yield box
    finally:
        await box.close()
