"""Workers for the Redis inbox: :class:`RedisWorker` runs handlers with no HTTP server,
in any number of processes and hosts, reading the inbox's stream in one consumer
group.

* **Once per success, at least once each.** A worker takes an entry of the stream
  (``XREADGROUP``), runs the handlers not yet marked done in the event's hash, and
  records the attempt in one script (``FINISH``: the marks, a failed attempt and its
  retry time, the new state, the acknowledgement). A handler that succeeded is not
  called again for that event, by any worker.
* **In order per signing, across all workers.** Only the head of a signing's queue
  may run, and only while its turn is held (``TAKE``); the end of an event hands the
  turn to the next one. A later event that arrives while an earlier one runs or waits
  for a retry is acknowledged and waits in the queue, not in the stream.
* **Stopping leaves the rest at once.** ``stop()`` lets the running events finish;
  entries read but not started are handed back (``RELEASE``: a fresh entry each,
  which another worker reads at once, not after the lease).
* **Reclaimed after a lease.** A running entry stays in the group's pending list;
  its worker refreshes it every third of ``lease``. A worker that dies stops doing
  so, and after ``lease`` another worker claims the entry (``XAUTOCLAIM``) and runs
  what is left of the event. A worker that was only slow finds its turn gone and
  records nothing (its handlers ran once more: at least once).
* **Confirmed against the API first**, as the receiver's dispatcher does (a
  ``client``, or your own ``confirm`` callable): an event the API keeps contradicting
  (``DispatchPolicy.confirm_attempts`` reads, ``confirm_delay`` apart and doubling)
  is set aside as ``unconfirmed``; a confirmation that raises is a failed attempt.
  Once confirmed, an event is not asked about again: the attempt that confirmed it
  marks it so in Redis (field ``cf``, written by ``FINISH`` with the attempt), and an
  event with a handler done was confirmed before it ran. A mark, not memory, because
  the retry may run on another worker.
* **Retries with backoff, then dead letters**, with the receiver's dispatcher's
  decision and log line (``failed_attempt``, ``DispatchPolicy``: ``max_attempts``,
  ``base_delay``, ``max_delay``); failed events wait in a sorted set by server time
  until due.
* **Redis going away** is one log line per failed round (as is any other error of a
  round), and the worker tries again with a growing delay (up to 30 s); what it held
  is reclaimed after the lease. A worker restarted with the same name reads its own
  pending entries first (``XREADGROUP`` from ``0``): it takes its events back at
  once, not after the lease.
* **Replays** (``Inbox.replay``): a replayed event comes back through the stream and
  its signing's queue as a retried one does; its handlers see ``event.replay``, it
  is not confirmed again, and a replay for one handler runs only that one.
* **No secret in a log line or a stored error**: the client's access token (and any
  ``secrets``) is masked in every spelling (``_redact``).

Why one stream and turns per signing, not a stream per partition of the signings:
with partitions each must be owned by one worker at a time, so the group no longer
spreads the work and workers must assign and rebalance partitions themselves; the
parallelism is capped by the partition count; and a signing waiting for a retry
holds up every other signing of its partition. Turns let any number of workers on
any host share the work, block only the signing that waits, and leave reclaim to
``XAUTOCLAIM``.

Needs Redis 7.0 or newer: ``XAUTOCLAIM`` must leave out the entries deleted from the
stream (6.2 returns them with no fields), which the per-entry turns rely on.

Not here: pipeline consumers, which the in-process dispatcher has. The receivers
that feed the inbox must not dispatch from it: they run with no router
(``PostbackReceiver(None, ...)``, ``listen --no-dispatch``), storing and answering
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from . import _redis_worker_lua as lua
from . import _telemetry
from ._confirm import Confirmation, chosen, confirmed
from ._inbox_redis import DEFAULT_PREFIX, RedisInbox
from ._inbox_redis_client import connect
from ._inbox_redis_layout import event_from_flat
from ._inbox_replay import replayed, skipped_handlers
from ._outcomes import failed_attempt, unconfirmed
from ._policy import DispatchPolicy
from ._redact import error_text, printable, redact
from .events import parse_postback
from .exceptions import InvalidArgumentError
from .inbox import InboxError, StoredEvent
from .routing import Router, dispatch_attempt

if TYPE_CHECKING:
    from .client import DokobitClient

__all__ = ["GROUP", "RedisWorker"]

logger = logging.getLogger("dokobit_async.worker")

GROUP = "workers"
"""The consumer group every worker of an inbox reads in."""
_RETRY_MAX = 30.0  # seconds between rounds at most while Redis fails


class RedisWorker:
    """Runs ``router``'s handlers for the events of a :class:`RedisInbox`, beside any
    number of other workers (processes, hosts) on the same Redis and prefix.

    Args:
        redis: The inbox's Redis: a ``redis://`` URL or a ``redis.asyncio.Redis``
            (``decode_responses=False``; you close it).
        router: The handlers.
        prefix: The inbox's key prefix (as given to its :class:`RedisInbox`).
        policy: Concurrency (events at a time in this worker), retries, backoff,
            ``shutdown_timeout``.
        name: This worker's name in the consumer group (no spaces; default: host and
            process id). A restarted worker with the same name takes its entries
            back at once (its first round reads them).
        client: With the default ``confirm``, each event the status endpoint can
            confirm is confirmed against the API before its handlers run (the reads
            share the client's rate limit; you open and close the client); its
            access token is masked in stored errors and log lines.
        confirm: ``True`` (confirm through ``client`` when one is given), ``False``
            (never), or your own async ``(event) -> True | False | None`` callable
            (a ``Confirmation``), as :class:`~dokobit_async.PostbackReceiver` takes.
        secrets: More text masked in stored errors and log lines.
        lease: Seconds after which another worker may claim an event this one is
            running but no longer refreshing (it died).
        block: Seconds a read waits for new entries: :meth:`run` returns up to this
            long after :meth:`stop`, and a retry may start up to this long after it
            is due.
        timeout: Seconds to connect and for each answer.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        router: Router,
        *,
        prefix: str = DEFAULT_PREFIX,
        policy: DispatchPolicy = DispatchPolicy(),  # noqa: B008 - frozen
        name: str | None = None,
        client: DokobitClient | None = None,
        confirm: bool | Confirmation = True,
        secrets: tuple[str, ...] = (),
        lease: float = 30.0,
        block: float = 1.0,
        timeout: float = 5.0,
    ):
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        if not self.name or any(c.isspace() for c in self.name):
            raise InvalidArgumentError(f"a worker's name has no spaces: {self.name!r}")
        if not 0 < block < timeout or lease <= 0:
            raise InvalidArgumentError("need 0 < block < timeout and lease > 0")
        self.inbox = RedisInbox(redis, prefix=prefix, timeout=timeout)
        self._redis, self._timeout = redis, timeout
        self.router, self.policy = router, policy
        self._secrets = (*secrets, client._token) if client is not None else secrets
        self._confirmation = chosen(client, confirm)
        self._lease, self._block = lease, block
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._rng = random.Random()
        # where the first rounds read this name's own pending entries from (a restart's)
        self._own: bytes | None = b"0"

    def __repr__(self) -> str:
        return f"RedisWorker({self.name!r}, {self.inbox!r})"

    async def __aenter__(self) -> RedisWorker:
        await self.inbox.open()
        self._client = connect(self._redis, self._timeout)
        self._scripts = {n: self._client.register_script(getattr(lua, n)) for n in lua.__all__}
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None and client is not self._redis:
            await client.aclose()
        await self.inbox.close()

    def _key(self, part: str) -> str:
        return self.inbox.prefix + part

    async def _script(self, name: str, *args: Any, keys: tuple[str, ...] = ()) -> Any:
        assert self._client is not None, "use 'async with RedisWorker(...)'"
        keys = keys or (self._key("seq"),)
        return await self._scripts[name](keys, [self.inbox.prefix, *args], self._client)

    async def run(self) -> None:
        """Take and run events until :meth:`stop`; then let the running ones finish
        within the policy's ``shutdown_timeout`` (the rest are reclaimed after the
        lease by the other workers)."""
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self._round()
                    failures = 0
                except Exception as exc:  # Redis away, or a bug of ours: logged, again
                    failures += 1
                    delay = min(_RETRY_MAX, 0.1 * 2**failures) * self._rng.uniform(0.5, 1)
                    logger.error(
                        "worker %s cannot read the inbox (attempt %d: %s); again in %.1f s",
                        self.name,
                        failures,
                        self._shown(exc),
                        delay,
                    )
                    await self._sleep(delay)
        finally:
            if self._running:
                await asyncio.wait(self._running, timeout=self.policy.shutdown_timeout)
            left = list(self._running)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)  # before the clients close

    def _shown(self, exc: BaseException) -> str:
        """``exc`` as a log line shows it: secrets masked, printable."""
        return printable(redact(error_text(exc), self._secrets))

    async def stop(self) -> None:
        """Ask :meth:`run` to stop taking events (it returns once the running ones
        are finished)."""
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _round(self) -> None:
        """Promote due retries, reclaim what stopped workers held, read new entries,
        and start each (as many as there is room for)."""
        assert self._client is not None
        client, stream = self._client, self._key("stream")
        try:
            await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        due_in = int(await self._script("PROMOTE", 100))  # ms until a retry is due
        block = int(self._block * 1000) if due_in < 0 else max(1, min(due_in, self._block * 1000))
        room = self.policy.concurrency - len(self._running)
        if room <= 0:  # full: until an event is finished, or stop()
            stopped = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({*self._running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            return
        entries: list[Any] = []
        if self._own is not None:  # a restart under the same name: its entries back
            mine: Any = await client.xreadgroup(GROUP, self.name, {stream: self._own}, count=room)
            entries += [entry for _, found in mine for entry in found]
            # (as many as there was room for: the rest in the next rounds, after these)
            self._own = entries[-1][0] if len(entries) == room else None
        if len(entries) < room:
            lease_ms = int(self._lease * 1000)
            claimed = await client.xautoclaim(
                stream, GROUP, self.name, lease_ms, "0-0", count=room - len(entries)
            )
            entries += list(claimed[1])
        if len(entries) < room:
            read: Any = await client.xreadgroup(
                GROUP,
                self.name,
                {stream: ">"},
                count=room - len(entries),
                block=int(block),
            )
            entries += [entry for _, found in read for entry in found]
        # (an entry deleted from the stream but still pending comes with no fields)
        entries = [(xid, fields) for xid, fields in entries if fields and b"id" in fields]
        if self._stopping.is_set():  # stopped during the read: for the other workers
            if entries:
                parts = [(xid, fields[b"id"], fields.get(b"q", b"")) for xid, fields in entries]
                await self._script("RELEASE", GROUP, self.name, *(p for t in parts for p in t))
            return
        for entry_id, fields in entries:
            take = self._take(entry_id, fields[b"id"], fields.get(b"q", b""))
            task = asyncio.get_running_loop().create_task(take)
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _take(self, entry_id: bytes, id: bytes, queue: bytes) -> None:
        try:
            verdict = await self._script("TAKE", GROUP, entry_id, self.name, id, queue)
            if isinstance(verdict, list):  # ['run', the event's hash]; else why not
                await self._attempt(entry_id, verdict[1])
        except (RedisError, InboxError, OSError) as exc:  # reclaimed after the lease
            logger.error(
                "worker %s could not finish an event (%s); it is retried after the lease",
                self.name,
                self._shown(exc),
            )

    async def _attempt(self, entry_id: bytes, flat: list[bytes]) -> None:
        """Confirm the event unless done already, run the handlers not yet done, and
        record the attempt in one write."""
        stored = event_from_flat(flat)
        asked = self._confirmation is not None and not (
            b"cf" in flat[::2] or stored.handlers_done or stored.replays  # confirmed before
        )
        beat = asyncio.get_running_loop().create_task(self._beat(entry_id))
        try:
            state, error, confirmed_now, done = await self._decide(stored, asked)
        finally:
            beat.cancel()
        queue = dict(zip(flat[::2], flat[1::2], strict=True))[b"q"]
        args: list[Any] = [GROUP, entry_id, self.name, stored.id, queue]
        if state == "failed":
            kept, delay = failed_attempt(
                stored, error, policy=self.policy, secrets=self._secrets, rng=self._rng
            )
            args += ["1", repr(delay or 0.0), "dead" if delay is None else "", "1", kept]
        else:
            args += ["0", "0", state, "1" if error else "0", error]
        finished = await self._script("FINISH", *args, "1" if confirmed_now else "0", *done)
        if args[7] == "dead" and finished == b"ok" and (hooks := _telemetry.receiver):
            hooks.dead_letter(stored)

    async def _decide(self, stored: StoredEvent, asked: bool) -> tuple[str, str, bool, list[str]]:
        """Confirm (when ``asked``) and run the handlers left: the state to record
        (``done``, ``unconfirmed``, or ``failed`` for a failed attempt), its error,
        whether the API confirmed the event now, and the handlers that succeeded."""
        try:
            received = datetime.fromtimestamp(stored.received_at, tz=timezone.utc)
            event = parse_postback(stored.body, stored.content_type, received_at=received)
            event = replayed(event, stored)
            if asked:
                assert self._confirmation is not None
                try:
                    verdict = await confirmed(
                        self._confirmation,
                        event,
                        attempts=self.policy.confirm_attempts,
                        delay=self.policy.confirm_delay,
                    )
                except Exception as exc:  # the API (or your confirmation) failed: later
                    return "failed", f"confirmation failed: {error_text(exc)}", False, []
                if verdict is False:
                    return "unconfirmed", unconfirmed(stored), False, []
            skip = skipped_handlers(stored, functools.partial(self.router.handlers_for, event))
            limit = self.policy.max_attempts
            handled = await dispatch_attempt(self.router, event, stored, skip, limit)
        except Exception as exc:  # a body that no longer parses, a bug of ours
            handled = {"worker": exc}
        done = sorted(name for name, error in handled.items() if error is None)
        errors = [f"{n}: {error_text(e)}" for n, e in handled.items() if e is not None]
        return ("failed" if errors else "done"), "; ".join(errors), asked, done

    async def _beat(self, entry_id: bytes) -> None:
        """Refresh the running entry every third of the lease (while Redis answers)."""
        stream = (self._key("stream"),)
        try:
            while True:
                await asyncio.sleep(self._lease / 3)
                await self._script("BEAT", GROUP, entry_id, self.name, keys=stream)
        except (RedisError, OSError) as exc:  # it may be reclaimed after the lease
            logger.error("worker %s cannot refresh its lease: %s", self.name, self._shown(exc))
