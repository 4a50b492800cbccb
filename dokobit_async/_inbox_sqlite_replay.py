"""A replay in the SQLite inbox, one page at a time (``SQLiteInbox.replay``).

Each page is one write transaction of its own (:meth:`Store.write
<dokobit_async._inbox_sqlite_store.Store.write>`): up to :data:`PAGE` done events,
moved back to pending all together or not at all. A replay of many events thus
never holds the write lock for long: the receiver's acknowledgements (and another
process's writes) go in between the pages. The pages follow ``seq``, and an event
moved leaves ``done``, so a page never sees one twice.
"""

from __future__ import annotations

import json
import sqlite3

from ._inbox_replay import Selection

__all__ = ["PAGE", "replay_page"]

PAGE = 500
"""Events moved per write transaction."""
_CHOSEN = (  # a condition that is NULL holds for every event
    "SELECT seq, handlers_done FROM events WHERE state = 'done' AND seq > :after_seq"
    " AND (:since IS NULL OR received_at >= :since)"
    " AND (:until IS NULL OR received_at < :until)"
    " AND (:action IS NULL OR action = :action)"
    " AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))"
    " ORDER BY seq LIMIT :page"
)


def replay_page(
    ids: frozenset[str] | None,
    selection: Selection,
    handler: str | None,
    after_seq: int,
    conn: sqlite3.Connection,
) -> tuple[int, int | None]:
    """Move the next page of matching done events (past ``after_seq``) back to pending
    as a replay: how many moved, and the seq to go on after (None: the last page)."""
    params = {
        "after_seq": after_seq,
        "since": selection.received_after,
        "until": selection.received_before,
        "action": selection.action,
        "ids": None if ids is None else json.dumps(sorted(ids)),
        "page": PAGE,
    }
    rows = conn.execute(_CHOSEN, params).fetchall()
    for seq, handlers_done in rows:
        left = [] if handler is None else sorted(set(json.loads(handlers_done)) - {handler})
        conn.execute(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = 0,"
            " replays = replays + 1, replay_handler = ?, handlers_done = ? WHERE seq = ?",
            (handler, json.dumps(left), seq),
        )
    return len(rows), (rows[-1][0] if len(rows) == PAGE else None)
