"""The durable inbox: postbacks are stored here before the receiver answers 200.

The receiver calls :meth:`Inbox.add` and answers Dokobit only after it returns; then it
dispatches pending events to the handlers, and records each attempt in one write
(:meth:`~Inbox.record_attempt`): the handlers that succeeded, a failed attempt with
its retry time, the outcome (``done``, ``dead`` letter, ``unconfirmed``). Nothing is
written before the handlers run. :meth:`~Inbox.mark_handler_done`,
:meth:`~Inbox.record_failure` and :meth:`~Inbox.set_state` write one of these at a
time, for tools and tests. The ``dokobit-async inbox list|retry|purge`` command works
on the same file from another process while a receiver runs.

Replay and export
-----------------
:meth:`Inbox.replay` sends events that are already ``done`` back to their handlers
(``dokobit-async inbox replay``): chosen by id, by arrival time and by action, for
every handler or for one named handler. Each is moved back to ``pending``, due now,
with ``replays`` counted and ``attempts`` reset, in its signing's queue (by its
``seq``, as ``retry()`` puts a dead event back); the dispatcher, or a Redis worker,
runs it again with ``event.replay`` set and without asking the API to confirm it
again. A replay for one handler takes only that handler out of ``handlers_done``
and names it in ``replay_handler``: the others are not run. Events in another state
are left alone, and a replay of every done event must be asked for explicitly
(``received_after=0``). :func:`export_jsonl` writes events as JSON Lines, redacted
(``dokobit-async inbox export``). A file of schema version 2 gains the replay
columns on :meth:`SQLiteInbox.open` (``user_version`` 3), its rows never replayed.

Durability (:class:`SQLiteInbox`)
---------------------------------
* When ``add()`` returns, the transaction that holds the event has committed. With
  ``synchronous="FULL"`` (the default) SQLite fsyncs the write-ahead log on every
  commit, so the event survives ``kill -9``, a restart, an OS crash and power loss (on
  storage that honours fsync). With ``synchronous="NORMAL"`` a commit is not fsync'd:
  it survives the process dying (``kill -9``), but the last commits may be rolled back
  by an OS crash or power loss; the file itself stays consistent either way.
* An ``add()`` that had not returned when the process died may or may not be stored.
  Dokobit got no 200 for it and sends it again; ``id`` dedupes, so this is safe.
* Dispatch bookkeeping is committed the same way, so delivery is *at least once*: a
  crash between a handler's success and its ``record_attempt`` runs that handler
  again after restart. ``handlers_done`` lets the dispatcher skip handlers that
  already succeeded; handlers should still be idempotent. A write that fails (a full
  disk, a lock held past ``busy_timeout``) does not rerun anything: the dispatcher
  remembers the success in memory and retries the write.
* :class:`MemoryInbox` keeps the same rules but survives nothing: it is for tests.

Group commit
------------
An fsync costs far more than an insert, so ``add()`` does not commit on its own, and
neither do the writes that change an event. Each queues its write and waits. When no
commit is in flight, the worker thread takes the queue: up to ``batch_max`` writes in
one transaction, every waiting ``add()`` before any ``record_attempt`` (acks first),
one commit (one fsync), and every waiter is woken. Writes that arrive while that
commit is in flight go in the next one, which starts as soon as it is done: under
load many acknowledgements share one fsync, while a lone ``add()`` is still committed
at once (no timer). A ``record_attempt`` with no ``add()`` to share a commit with waits
up to 5 ms for one. The inbox checkpoints the WAL itself, between commits, so that no
acknowledgement waits for a checkpoint inside its commit. Each write changes one row
in one statement, its last, and a failing statement undoes itself, so a write that
fails fails alone. ``SQLiteInbox.commits`` counts the write transactions.

All SQLite work runs on one dedicated worker thread that owns the connection, never on
the event loop. The database is in WAL mode with a busy timeout, so readers never block
the writer and another process can read and write the same file meanwhile.

Trace context
-------------
``add(traceparent=...)`` stores the W3C trace context of the span that received the
postback with the event (an SQLite column, a field of the Redis event's hash), and
every read hands it back as :attr:`StoredEvent.traceparent`: so a handler run later,
in another process or on another host, can link its span to the postback's. The
inbox never parses it; it refuses only what is not a short printable ASCII string,
before the write is queued, so that a bad one can never fail a group commit. A
duplicate keeps the first event's. A file of the previous schema (``user_version`` 1)
gains the column on :meth:`SQLiteInbox.open`, its rows kept with ``None``; from then
on an older dokobit-async refuses the file as newer than it understands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._inbox_base import Inbox, InboxState, StoredEvent
from ._inbox_export import export_jsonl
from ._inbox_memory import MemoryInbox
from ._inbox_sqlite import SQLiteInbox
from .exceptions import EventNotFoundError, InboxClosedError, InboxError

__all__ = [
    "EventNotFoundError",
    "Inbox",
    "InboxClosedError",
    "InboxError",
    "InboxState",
    "MemoryInbox",
    "SQLiteInbox",
    "StoredEvent",
    "export_jsonl",
]

if TYPE_CHECKING:

    def _conforms(memory: MemoryInbox, sqlite: SQLiteInbox) -> tuple[Inbox, Inbox]:
        return memory, sqlite  # both implementations satisfy the protocol
