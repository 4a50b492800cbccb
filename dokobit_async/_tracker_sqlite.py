"""``SQLiteTracker``: tracked signings in a SQLite file, shared by the processes that
open it.

The guarantee is :class:`~dokobit_async.reconcile.Tracker`'s: a claim is one
``BEGIN IMMEDIATE`` transaction (select the due rows nobody holds, stamp them with the
lease's end), so two processes on one file never hold the same signing at once. Its
table (``dokobit_tracked``) may live in the inbox's file: it uses a connection of its
own, in WAL mode like the inbox, waiting up to ``busy_timeout`` for the file's lock.
Each call runs on a worker thread (``asyncio.to_thread``), one at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._tracker import Schedule, TrackedSigning

__all__ = ["SQLiteTracker"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dokobit_tracked (
    token TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT '',
    signers TEXT NOT NULL DEFAULT '{}',
    held_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dokobit_tracked_next ON dokobit_tracked (next_at);
"""
_COLUMNS = "token, flow, created_at, next_at, polls, status, signers"


def _row(row: tuple[Any, ...]) -> TrackedSigning:
    token, flow, created_at, next_at, polls, status, signers = row
    return TrackedSigning(
        token=token,
        flow=flow,
        created_at=created_at,
        next_at=next_at,
        polls=polls,
        status=status,
        signers=json.loads(signers),
    )


class SQLiteTracker:
    """A :class:`~dokobit_async.reconcile.Tracker` in a SQLite file.

    Args:
        path: The database file (created if missing); the inbox's file will do.
        schedule: When to look at each signing.
        busy_timeout: Seconds to wait for another connection's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schedule: Schedule = Schedule(),  # noqa: B008 - frozen
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        self.schedule = schedule
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SQLiteTracker path={self.path!r}>"

    async def open(self) -> None:
        """Open the file and create the table if missing."""
        if self._db is None:
            self._db = await asyncio.to_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection (the records stay in the file)."""
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(self._locked, db.close)

    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            await self.open()
        db = self._db
        assert db is not None
        return await asyncio.to_thread(self._locked, lambda: work(db))

    async def track(self, token: str, flow: str, created_at: float) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.track`."""
        next_at = created_at + self.schedule.first
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO dokobit_tracked (token, flow, created_at, next_at)"
                " VALUES (?, ?, ?, ?)",
                (token, flow, created_at, next_at),
            )
        )

    async def claim(self, now: float, limit: int, lease: float) -> list[TrackedSigning]:
        """See :meth:`~dokobit_async.reconcile.Tracker.claim`."""

        def work(db: sqlite3.Connection) -> list[TrackedSigning]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM dokobit_tracked"  # noqa: S608 - constants only
                    " WHERE next_at <= ? AND held_until <= ? ORDER BY next_at LIMIT ?",
                    (now, now, limit),
                ).fetchall()
                db.executemany(
                    "UPDATE dokobit_tracked SET held_until = ? WHERE token = ?",
                    [(now + lease, row[0]) for row in rows],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return [_row(row) for row in rows]

        return await self._run(work)

    async def update(self, signing: TrackedSigning) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.update`."""
        await self._run(
            lambda db: db.execute(
                "UPDATE dokobit_tracked SET next_at = ?, polls = ?, status = ?, signers = ?,"
                " held_until = 0 WHERE token = ?",
                (
                    signing.next_at,
                    signing.polls,
                    signing.status,
                    json.dumps(dict(signing.signers), sort_keys=True),
                    signing.token,
                ),
            )
        )

    async def forget(self, token: str) -> None:
        """See :meth:`~dokobit_async.reconcile.Tracker.forget`."""
        await self._run(
            lambda db: db.execute("DELETE FROM dokobit_tracked WHERE token = ?", (token,))
        )

    async def get(self, token: str) -> TrackedSigning | None:
        """See :meth:`~dokobit_async.reconcile.Tracker.get`."""
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM dokobit_tracked WHERE token = ?",  # noqa: S608
                (token,),
            ).fetchone()
        )
        return None if row is None else _row(row)

    async def oldest(self) -> TrackedSigning | None:
        """See :meth:`~dokobit_async.reconcile.Tracker.oldest`."""
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM dokobit_tracked "  # noqa: S608
                "ORDER BY created_at, token LIMIT 1"
            ).fetchone()
        )
        return None if row is None else _row(row)
