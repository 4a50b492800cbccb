"""The Redis inbox: :class:`RedisInbox`, the same contract as the SQLite inbox, shared
by every receiver replica (and, next, by workers on other hosts).

What "acknowledged" means
-------------------------
``add()`` returns once the Redis server has answered the script that stored the
event (its hash, its ``seq``, its place in the indexes and its stream entry, all in
one script that Redis runs alone). What survives then is what the server was told
to keep:

* ``appendonly yes`` with ``appendfsync always``: Redis writes the append-only file
  and fsyncs it before it sends the answers of an event-loop turn (the writes of
  every client in that turn share one fsync), so an acknowledged event survives
  ``kill -9`` of the server, a restart, an OS crash and power loss (on storage that
  honours fsync): the same guarantee as :class:`~dokobit_async.SQLiteInbox` with
  ``synchronous="FULL"``.
* ``appendonly yes`` with ``appendfsync everysec`` (Redis's default once AOF is on):
  an OS crash or power loss may lose the last second or two of acknowledgements
  (like ``synchronous="NORMAL"``, and worse), and while an fsync is slow Redis may
  answer before it has even written, so the server process dying can lose some too.
* ``appendonly no`` (snapshots only, Redis's own default) or no persistence:
  everything since the last snapshot is lost when the server stops. Fit for tests.
* Replicas are asynchronous: a failover to a replica that had not received the last
  writes loses them, whatever the primary's fsync. ``WAIT`` does not close this gap
  (a failover may still pick a replica without the write, and a duplicate ``add()``
  that returns ``None`` has nothing of its own to wait for), so this inbox does not
  offer it: keep acknowledged events on the primary's disk with the settings above.

Every key is under one prefix that holds a Redis Cluster hash tag (default
``dokobit:{inbox}:``), so that one inbox lives in one slot and its scripts may touch
all of its keys; ``dokobit_async/_inbox_redis_layout.py`` describes the layout. No key
holds a token: a signing's queue is named by the SHA-256 of its token, and events by
their dedupe key.

A write that the server did not answer (refused connection, a timeout, a server that
went away) raises :class:`~dokobit_async.inbox.InboxError`, never a silent success;
the client is built without redis-py's automatic retries, so a write is sent once
(the receiver answers 503 and Dokobit sends the postback again, which the dedupe key
makes safe). A write that timed out may still have been applied.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import _inbox_redis_layout as layout
from ._inbox_base import (
    InboxState,
    Lifecycle,
    StoredEvent,
    check_attempt,
    check_limit,
    check_state,
    new_row,
    pending_event,
)
from ._inbox_redis_batch import AddBatcher
from ._inbox_redis_client import connect, shown_address
from ._inbox_redis_layout import PAGE, event_from_flat, event_from_hash, ids_after, queue_key
from ._inbox_replay import check_replay
from .exceptions import EventNotFoundError, InboxClosedError, InboxError, InvalidArgumentError

__all__ = ["DEFAULT_PREFIX", "RedisInbox"]

DEFAULT_PREFIX = "dokobit:{inbox}:"
"""The default key prefix: ``{inbox}`` is the Redis Cluster hash tag."""
_HASH_TAG = re.compile(r"\{[^{}]+\}")
_T = TypeVar("_T")


class RedisInbox(Lifecycle):
    """An :class:`~dokobit_async.inbox.Inbox` in Redis, shared by every receiver that
    uses the same server and prefix: a postback is stored once whichever replica gets
    it (and whichever gets its copies).

    Args:
        redis: A ``redis://`` or ``rediss://`` URL (``redis://host:port/db``), or a
            ``redis.asyncio.Redis`` client of your own, made with
            ``decode_responses=False`` (you close it; this inbox does not).
        prefix: Put before every key; it must hold a Redis Cluster hash tag
            (``{...}``), which keeps one inbox's keys in one slot.
        timeout: Seconds to connect and to wait for each answer (for a client built
            from a URL); past it the call raises ``InboxError``.

    Durability depends on the server's settings: ``appendonly yes`` and
    ``appendfsync always`` give the guarantee of ``SQLiteInbox(synchronous="FULL")``
    (see :mod:`dokobit_async.redis`). The client connects on :meth:`open`.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 5.0,
    ):
        if not isinstance(prefix, str) or not _HASH_TAG.search(prefix):
            raise InvalidArgumentError(
                f"prefix must hold a Redis Cluster hash tag such as '{{inbox}}': {prefix!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgumentError(
                f"timeout must be a positive number of seconds: {timeout!r}"
            )
        self._where = shown_address(redis)
        self._redis = redis
        self._prefix = prefix
        self._timeout = float(timeout)
        self._client: aioredis.Redis | None = None
        self._closing = False
        self._busy = 0  # calls in flight: close() waits for them
        self._quiet: asyncio.Event | None = None
        self._scripts: dict[str, Any] = {}
        self._batcher = AddBatcher(self._send_adds)

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"RedisInbox({self._where!r}, prefix={self._prefix!r}, {state})"

    @property
    def prefix(self) -> str:
        """What every key of this inbox starts with."""
        return self._prefix

    def _key(self, part: str) -> str:
        return self._prefix + part

    async def open(self) -> None:
        """Connect and check that the server answers (idempotent).

        Raises:
            InboxError: The server cannot be reached (wrong URL, refused, timeout).
        """
        if self._client is not None:
            return
        client = connect(self._redis, self._timeout)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            if client is not self._redis:
                await client.aclose()
            raise InboxError(f"redis inbox at {self._where}: cannot connect: {exc}") from exc
        self._scripts = {
            name: client.register_script(getattr(layout, name))
            for name in ("ADD", "UPDATE", "RETRY", "REPLAY", "PURGE", "READ_PAGE")
        }
        self._client = client

    async def close(self) -> None:
        """Let the calls in flight finish, then disconnect (idempotent). Afterwards
        every method except :meth:`open` raises ``InboxClosedError``."""
        client = self._client
        if client is None or self._closing:
            return
        self._closing = True
        try:
            while self._busy:
                self._quiet = asyncio.Event()
                await self._quiet.wait()
            await self._batcher.drain()
        finally:
            self._client = None
            self._closing = False
            if client is not self._redis:
                await client.aclose()

    def _require_open(self) -> None:
        if self._client is None or self._closing:
            raise InboxClosedError(
                f"redis inbox at {self._where} is not open; call open() or use 'async with'"
            )

    async def _run(self, work: Callable[[aioredis.Redis], Awaitable[_T]]) -> _T:
        """Run ``work`` with the client, as a call that close() waits for."""
        self._require_open()
        self._busy += 1
        try:
            return await self._send(work)
        finally:
            self._idle()

    def _idle(self) -> None:
        self._busy -= 1
        if not self._busy and self._quiet is not None:
            self._quiet.set()

    async def _send(self, work: Callable[[aioredis.Redis], Awaitable[_T]]) -> _T:
        """Run ``work`` with the client; Redis's errors become ``InboxError``."""
        assert self._client is not None  # (close() waits for every call)
        try:
            return await work(self._client)
        except (RedisError, OSError, UnicodeError) as exc:
            raise InboxError(f"redis inbox at {self._where}: not done: {exc}") from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._run(lambda client: self._scripts[name](keys, args, client))

    async def _send_adds(self, args: Sequence[Any]) -> Sequence[Any]:
        """One batch of adds (see :mod:`dokobit_async._inbox_redis_batch`)."""
        keys, every = [self._key("seq")], [self._prefix, *args]
        return cast(
            "Sequence[Any]", await self._send(lambda c: self._scripts["ADD"](keys, every, c))
        )

    async def add(
        self,
        *,
        id: str,
        signing_token: str,
        action: str,
        body: bytes,
        content_type: str,
        received_at: float,
        traceparent: str | None = None,
    ) -> StoredEvent | None:
        """Store a new pending event; the event as stored, or ``None`` if ``id`` is
        already stored (by this or any other replica).

        Returns once the server has answered the script that stored it (with the
        other adds that queued up while the previous batch was on its way)."""
        row = new_row(id, signing_token, action, body, content_type, received_at, traceparent)
        queue = queue_key(self._prefix, signing_token, id)
        tp = "" if traceparent is None else "=" + traceparent  # (see layout.ADD)
        self._require_open()
        self._busy += 1
        try:
            seq = await self._batcher.add(
                (id, signing_token, action, row[3], content_type, repr(row[5]), queue, tp)
            )
        finally:
            self._idle()
        return None if seq is None else pending_event(row, int(seq))

    async def get(self, id: str) -> StoredEvent | None:
        """The event with this id, or None."""
        key = self._key("e:" + id)
        fields = await self._run(
            lambda client: cast("Awaitable[dict[bytes, bytes]]", client.hgetall(key))
        )
        return event_from_hash(fields) if fields else None

    async def _page(
        self,
        index: str,
        *,
        limit: int,
        after_seq: int = 0,
        due: float | None = None,
        state: str = "",
    ) -> builtins.list[StoredEvent]:
        """Up to ``limit`` events of an index after ``after_seq``, by seq: a script
        call per :data:`PAGE` ids looked at (fewer when every one of them counts)."""
        self._require_open()
        found: builtins.list[StoredEvent] = []
        cursor: Any = after_seq
        while len(found) < limit:
            look = PAGE if due is not None else min(PAGE, limit - len(found))
            args = [self._prefix, cursor, look, "" if due is None else repr(float(due)), state]
            last, looked, hashes = await self._script("READ_PAGE", [self._key(index)], args)
            found += [event_from_flat(fields) for fields in hashes]
            if looked < look:
                break
            cursor = last.decode()
        return found[:limit]

    async def pending(
        self, *, limit: int = 1000, due_before: float | None = None, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Pending events with ``seq > after_seq`` (and ``next_attempt_at <=
        due_before`` if given), by seq."""
        check_limit(limit)
        return await self._page(
            "s:pending", limit=limit, after_seq=after_seq, due=due_before, state="pending"
        )

    async def _update(
        self,
        id: str,
        *,
        names: Collection[str] = (),
        failed: bool = False,
        next_attempt_at: float = 0.0,
        state: str | None = None,
        error: str | None = None,
    ) -> int:
        args = [self._prefix, id, "1" if failed else "0", repr(float(next_attempt_at))]
        args += [state or "", "0" if error is None else "1", error or "", *sorted(names)]
        attempts = await self._script("UPDATE", [self._key("e:" + id)], args)
        if attempts is None:
            raise EventNotFoundError(id)
        return int(attempts)

    async def mark_handler_done(self, id: str, handler: str) -> None:
        """Record that ``handler`` succeeded for the event (idempotent)."""
        await self._update(id, names=check_attempt([handler], None))

    async def record_failure(self, id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt, keep the error and the retry time; the new count."""
        return await self._update(id, failed=True, next_attempt_at=next_attempt_at, error=error)

    async def set_state(self, id: str, state: InboxState, *, error: str | None = None) -> None:
        """Move the event to ``state``; ``error`` (if given) becomes ``last_error``."""
        check_state(state)
        await self._update(id, state=state, error=error)

    async def record_attempt(
        self,
        id: str,
        *,
        handlers_done: Collection[str] = (),
        failed: bool = False,
        next_attempt_at: float = 0.0,
        state: InboxState | None = None,
        error: str | None = None,
    ) -> int:
        """Record a dispatch attempt in one write (one script: handlers that
        succeeded, a failed attempt, a new state, the error); the failed attempts
        after it."""
        names = check_attempt(handlers_done, state)
        return await self._update(
            id,
            names=names,
            failed=failed,
            next_attempt_at=next_attempt_at,
            state=state,
            error=error,
        )

    async def list(
        self, *, state: InboxState | None = None, limit: int = 100, after_seq: int = 0
    ) -> builtins.list[StoredEvent]:
        """Events (in ``state`` if given) with ``seq > after_seq``, by seq."""
        if state is not None:
            check_state(state)
        check_limit(limit)
        index = "all" if state is None else "s:" + state
        return await self._page(index, limit=limit, after_seq=after_seq, state=state or "")

    async def _each_page(self, index: str, script: str, *args: str) -> int:
        """Run a purge or retry ``script`` over an index, a page of ids at a time (one
        short script each, so that the server never runs one long one); the sum."""
        total, cursor = 0, "-inf"
        while True:
            page = await self._run(functools.partial(ids_after, self._key(index), cursor))
            if page:
                ids = [id for id, _ in page]
                moved = await self._script(script, [self._key("seq")], [self._prefix, *args, *ids])
                total += int(moved)
            if len(page) < PAGE:
                return total
            cursor = f"({int(page[-1][1])}"

    async def retry(self, id: str | None = None) -> int:
        """Dead/unconfirmed events (one, or all) back to pending now; how many moved."""
        if id is not None:
            return int(await self._script("RETRY", [self._key("seq")], [self._prefix, id]))
        return sum(
            [await self._each_page("s:" + state, "RETRY") for state in ("dead", "unconfirmed")]
        )

    async def replay(
        self,
        ids: Collection[str] = (),
        *,
        received_after: float | None = None,
        received_before: float | None = None,
        action: str | None = None,
        handler: str | None = None,
    ) -> int:
        """Done events (by id and/or condition) back to pending now, as a replay (for
        every handler, or ``handler`` alone); how many moved: a script per page."""
        chosen, selection = check_replay(ids, received_after, received_before, action, handler)
        args = layout.replay_args(handler, selection)
        if chosen is None:
            return await self._each_page("s:done", "REPLAY", *args)
        keys, pages = [self._key("seq")], layout.pages_of(sorted(chosen))
        return sum([await self._script("REPLAY", keys, [self._prefix, *args, *p]) for p in pages])

    async def purge(self, *, state: InboxState = "done", older_than: float | None = None) -> int:
        """Delete events in ``state`` (received before ``older_than`` if given); count."""
        check_state(state)
        older = "" if older_than is None else repr(float(older_than))
        return await self._each_page("s:" + state, "PURGE", state, older)

    async def counts(self) -> dict[str, int]:
        """How many events are in each state (every state present, zeros included)."""
        return await self._run(functools.partial(layout.state_counts, self._prefix))
