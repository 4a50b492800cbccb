"""The dispatcher when the inbox fails under it, and when it restarts on a backlog.

* A handler that succeeded is not called again while the process lives, whether or
  not the inbox could record the success: the recording is retried with backoff, one
  log line per attempt, and the event ends ``done`` once writes work again. Shown on
  a virtual clock (exact counts), on a real SQLite file locked by another connection,
  and on a real full file system (root only: it mounts a small tmpfs).
* A postback gets its 503 within one ``busy_timeout`` while another process holds the
  inbox's lock, however many postbacks are waiting.
* A restart on a backlog reads the inbox page after page instead of a page per
  second, and new postbacks never overtake the older events of their signing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _clock import VirtualClockLoop
from _receiver_helpers import postback, start_receiver, wait_until

from dokobit_async import _backlog, _outcomes
from dokobit_async._dispatcher import Dispatcher
from dokobit_async._policy import DispatchPolicy
from dokobit_async.events import Event
from dokobit_async.exceptions import InboxError
from dokobit_async.inbox import Inbox, MemoryInbox, SQLiteInbox, StoredEvent
from dokobit_async.routing import Router

JSON = {"Content-Type": "application/json"}
POLICY = DispatchPolicy(max_attempts=5, base_delay=0.5, max_delay=5.0)


class FailingWrites:
    """An inbox whose writes (the dispatcher's bookkeeping) raise ``InboxError`` while
    ``failing`` is set, and whose reads keep working, as on a full disk."""

    def __init__(self, inner: Inbox) -> None:
        self.inner = inner
        self.failing = False
        self.failed_at: dict[str, list[float]] = {}  # id -> the loop's time of each refusal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, id: str) -> None:
        if self.failing:
            self.failed_at.setdefault(id, []).append(asyncio.get_running_loop().time())
            raise InboxError("inbox: not written: database or disk is full")

    async def record_attempt(self, id: str, **outcome: Any) -> int:
        self._check(id)
        return await self.inner.record_attempt(id, **outcome)


async def stop(runner: asyncio.Task[None]) -> None:
    """Cancel a dispatcher's run loop and wait for it."""
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner


def dispatcher(router: Router, inbox: Any, *, concurrency: int = 4) -> Dispatcher:
    policy = DispatchPolicy(concurrency=concurrency, max_attempts=5, base_delay=0.5, max_delay=5)
    return Dispatcher(router, inbox, policy=policy)


async def add_event(inbox: Inbox, token: str, n: int) -> StoredEvent:
    body = postback(token, "signer_signed")[:-1] + f', "signer": "s{n}"}}'.encode()
    stored = await inbox.add(
        id=f"{token}-{n}",
        signing_token=token,
        action="signer_signed",
        body=body,
        content_type="application/json",
        received_at=1000.0 + n,
    )
    assert stored is not None
    assert stored == await inbox.get(stored.id)  # what add() returns is what it stored
    return stored


@contextlib.contextmanager
def receiver_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The ERROR records of the receiver's logger, as they come."""
    with caplog.at_level(logging.INFO, logger="dokobit_async.receiver"):
        found: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR:
                    found.append(record)

        keep = Keep()
        logging.getLogger("dokobit_async.receiver").addHandler(keep)
        try:
            yield found
        finally:
            logging.getLogger("dokobit_async.receiver").removeHandler(keep)


# -- a virtual clock: exact counts over minutes ------------------------------------------


def test_failing_writes_retry_the_recording_not_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writes fail from the first handler call on, for five virtual minutes, while
    five more events wait: the first handler ran once and its recording was retried
    with growing gaps, one ERROR line per attempt; of the waiting events only one
    went ahead (to find out whether writes work again), the others waited, since
    their outcomes could not be kept either. Once writes work, every event ends
    ``done`` with each handler run once."""
    loop = VirtualClockLoop()
    calls: list[str] = []
    router = Router()
    box = FailingWrites(MemoryInbox())

    @router.on_any
    async def handler(event: Event) -> None:
        calls.append(event.signer or "")
        if len(calls) == 1:
            box.failing = True  # the disk fills up while the first handler runs

    async def scenario() -> dict[str, str]:
        await box.open()
        first = await add_event(box.inner, "sig-a", 1)
        d = dispatcher(router, box)
        d._clock = loop.time
        d.submit(first)
        runner = asyncio.create_task(d.run())
        for _ in range(10_000):  # bounded: the first recording fails at once
            if d.recorder.failing:
                break
            await asyncio.sleep(0)
        assert d.recorder.failing
        for n in range(2, 7):
            d.submit(await add_event(box.inner, f"sig-{n}", n))
        await asyncio.sleep(300)
        assert calls == ["s1", "s2"]  # one went ahead; four waited
        box.failing = False
        for _ in range(120):  # bounded: the backoff is at most 30 virtual seconds
            if (await box.inner.counts())["pending"] == 0:
                break
            await asyncio.sleep(1)
        await stop(runner)
        return {e.id: e.state for e in await box.inner.list()}

    with receiver_errors(caplog) as errors:
        try:
            states = loop.run_until_complete(scenario())
        finally:
            loop.close()
    assert set(states.values()) == {"done"}
    assert len(states) == 6
    assert sorted(calls) == [f"s{n}" for n in range(1, 7)]  # each handler once per event
    assert all("could not record" in record.getMessage() for record in errors)
    first = [r for r in errors if "sig-a" in r.getMessage()]
    attempts = sorted(set(box.failed_at["sig-a-1"]))
    assert len(box.failed_at["sig-a-1"]) == len(first) == len(attempts)  # one write each
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # doubling from about a second to the cap of 30 s: some 10 to 20 attempts in 300 s
    assert 8 <= len(attempts) <= 25, attempts
    assert all(gap >= 1 for gap in gaps), gaps
    assert max(gaps) >= 15, gaps
    assert set(box.failed_at) == {"sig-a-1", "sig-2-2"}  # nobody else tried to write


def test_record_backoff_doubles_up_to_its_cap() -> None:
    """The gaps between write attempts double from one second up to thirty, with
    jitter that never shortens a gap below half its ceiling."""
    d = dispatcher(Router(), MemoryInbox())
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (99, 30.0)]:
        gaps = [d.recorder.backoff(failures) for _ in range(200)]
        assert ceiling / 2 <= min(gaps)
        assert max(gaps) <= ceiling


# -- real SQLite files --------------------------------------------------------------------


async def _one_event_under_failing_writes(
    inbox: SQLiteInbox,
    caplog: pytest.LogCaptureFixture,
    fail: Any,
    recover: Any,
    seconds: float,
) -> tuple[list[str], list[logging.LogRecord]]:
    """Serve a receiver on ``inbox``; one postback; ``fail()`` runs inside the first
    handler call; after ``seconds`` of failing writes, ``recover()``; wait until the
    event is done. The handler calls and the ERROR records."""
    calls: list[str] = []
    router = Router()

    @router.on_any
    async def handler(event: Event) -> None:
        calls.append(event.token or "")
        if len(calls) == 1:
            fail()

    with receiver_errors(caplog) as errors:
        _, runner, url = await start_receiver(router, inbox=inbox, policy=POLICY)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, data=postback("full-1"), headers=JSON) as answer,
            ):
                assert answer.status == 200
            await wait_until(lambda: _true(bool(calls)))
            await asyncio.sleep(seconds)  # the subject: how the dispatcher spends this time
            during = len(calls), list(errors)
            recover()
            await wait_until(lambda: _all_done(inbox), timeout=20)
        finally:
            await runner.cleanup()
    assert during[0] == 1, "the handler ran again while writes failed"
    print(f"{seconds:g} s of failing writes: {during[0]} handler call, {len(during[1])} errors")
    return calls, during[1]


async def _true(value: bool) -> bool:
    return value


async def _all_done(inbox: SQLiteInbox) -> bool:
    counts = await inbox.counts()
    return counts["done"] > 0 and counts["pending"] == 0


def _assert_few_and_spaced(errors: list[logging.LogRecord], seconds: float) -> None:
    assert errors, "no ERROR line for the failing writes"
    assert all("could not record" in r.getMessage() for r in errors), [
        r.getMessage() for r in errors
    ]
    assert all("\n" not in r.getMessage() and r.exc_info is None for r in errors)
    # base 0.2 s doubling to a cap of 1 s (patched below): about a line a second
    assert len(errors) <= seconds / 0.5 + 3, len(errors)
    gaps = [b.created - a.created for a, b in itertools.pairwise(errors)]
    assert all(gap >= 0.08 for gap in gaps), gaps


@pytest.fixture
def quick_record_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter backoff for the real-time tests: 0.2 s, doubling, at most 1 s."""
    monkeypatch.setattr(_outcomes, "RECORD_RETRY_BASE", 0.2)
    monkeypatch.setattr(_outcomes, "RECORD_RETRY_MAX", 1.0)


@pytest.mark.usefixtures("quick_record_retry")
async def test_a_locked_sqlite_file_does_not_make_a_handler_storm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection takes the write lock while the first handler runs and holds
    it for three seconds: reads still work, writes fail after ``busy_timeout``. The
    handler ran once; the errors are few and spaced; the event ends ``done``."""
    path = tmp_path / "in.db"
    inbox = SQLiteInbox(path, busy_timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        calls, errors = await _one_event_under_failing_writes(
            inbox,
            caplog,
            fail=lambda: blocker.execute("BEGIN IMMEDIATE"),
            recover=lambda: blocker.execute("ROLLBACK"),
            seconds=3.0,
        )
    finally:
        blocker.close()
    assert calls == ["full-1"]
    _assert_few_and_spaced(errors, 3.0)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["/bin/mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (root only; CI runs as root), unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    if not _mount_tmpfs(where, "1m"):
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["/bin/umount", "-l", str(where)], capture_output=True, check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            for _ in range(100_000):  # bounded: far more than 1 MiB
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="No space") as full:
        (disk / "probe").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


@pytest.mark.usefixtures("quick_record_retry")
async def test_a_full_disk_does_not_make_a_handler_storm(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file system fills up while the first handler runs (the case that ran one
    handler 227 times in 5 s): the handler runs once, a few spaced error lines, and
    the event ends ``done`` once space is freed."""
    inbox = SQLiteInbox(small_disk / "in.db")
    filler: list[Path] = []
    calls, errors = await _one_event_under_failing_writes(
        inbox,
        caplog,
        fail=lambda: filler.append(_fill(small_disk)),
        recover=lambda: filler[0].unlink(),
        seconds=3.0,
    )
    assert calls == ["full-1"]
    _assert_few_and_spaced(errors, 3.0)
    assert any("full" in r.getMessage() for r in errors), [r.getMessage() for r in errors]


# -- lock waits: one deadline for every postback -------------------------------------------


async def test_every_postback_gets_its_503_within_one_busy_timeout(tmp_path: Path) -> None:
    """Another process holds the inbox's write lock while 30 postbacks arrive over
    1.5 s, two to a commit: each is answered 503 within about one ``busy_timeout``
    (1 s) of its arrival, not after the timeouts of every batch queued before it
    (which added up to seconds)."""
    path = tmp_path / "in.db"
    inbox = SQLiteInbox(path, busy_timeout=1.0, batch_max=2)
    _, runner, url = await start_receiver(Router(), inbox=inbox)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        async with aiohttp.ClientSession() as session:

            async def send(i: int) -> tuple[int, float]:
                await asyncio.sleep(i * 0.05)
                started = time.monotonic()
                async with session.post(url, data=postback(f"lock-{i}"), headers=JSON) as answer:
                    return answer.status, time.monotonic() - started

            answers = await asyncio.wait_for(
                asyncio.gather(*(send(i) for i in range(30))), timeout=60
            )
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
        await runner.cleanup()
    assert {status for status, _ in answers} == {503}
    slowest = max(seconds for _, seconds in answers)
    # one timeout (and the commit in flight); queued batches used to add one each
    assert slowest < 2 * 1.0, sorted(seconds for _, seconds in answers)[-5:]


# -- restart on a backlog ------------------------------------------------------------------


def test_a_backlog_is_read_page_after_page_not_a_page_per_second() -> None:
    """5,000 pending events (five pages) at start: all are handled before the first
    one-second poll would have come round (virtual clock), each handler once."""
    loop = VirtualClockLoop()
    handled: list[str] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        handled.append(event.signer or "")

    async def scenario() -> float:
        inbox = MemoryInbox()
        await inbox.open()
        for n in range(5000):
            await add_event(inbox, f"sig-{n % 700}", n)
        d = dispatcher(router, inbox, concurrency=16)
        d._clock = loop.time
        started = loop.time()
        await d.start()
        runner = asyncio.create_task(d.run())
        while (await inbox.counts())["pending"] and loop.time() - started < 30:
            await asyncio.sleep(0)
        await stop(runner)
        assert (await inbox.counts())["done"] == 5000
        return loop.time() - started

    try:
        took = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert sorted(handled) == sorted(f"s{n}" for n in range(5000))
    assert took < _backlog.IDLE_POLL, f"{took} virtual seconds"


async def test_new_postbacks_do_not_overtake_a_signings_unread_backlog() -> None:
    """At start the first page of a 2,500-event backlog is read; a new postback for a
    signing whose older events are on later pages waits for them: that signing's
    events are handled in arrival order."""
    order: list[str] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        if event.token == "sig-late":
            order.append(event.signer or "")
        await asyncio.sleep(0)

    inbox = MemoryInbox()
    await inbox.open()
    for n in range(2500):
        await add_event(inbox, "sig-late" if n in (1500, 2400) else f"sig-{n}", n)
    d = dispatcher(router, inbox, concurrency=4)
    await d.start()  # reads the first 1,000
    newest = await add_event(inbox, "sig-late", 9999)
    d.submit(newest)  # as the receiver does, right after storing it
    runner = asyncio.create_task(d.run())
    try:
        await wait_until(lambda: _true(len(order) == 3), timeout=30)
    finally:
        await stop(runner)
    assert order == ["s1500", "s2400", "s9999"]


# -- what one event, or a full memory, must not do to the others ---------------------------


async def test_an_error_the_inbox_cannot_store_does_not_stop_dispatch(tmp_path: Path) -> None:
    """A handler fails with an error quoting a lone surrogate from the postback (JSON
    can escape one; SQLite cannot store it): the error is kept escaped, the event is
    dead-lettered after its attempts, and the other events are handled meanwhile."""
    calls: list[str] = []
    router = Router()

    @router.on_any
    async def echo(event: Event) -> None:
        calls.append(event.token or "")
        if event.token == "poison":
            raise ValueError(f"cannot use {event.raw['note']}")

    inbox = SQLiteInbox(tmp_path / "in.db")
    policy = DispatchPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    _, runner, url = await start_receiver(router, inbox=inbox, policy=policy)
    try:
        async with aiohttp.ClientSession() as session:
            poison = b'{"action": "signing_created", "token": "poison", "note": "\\ud800"}'
            for body in [poison, *(postback(f"good-{n}") for n in range(4))]:
                async with session.post(url, data=body, headers=JSON) as answer:
                    assert answer.status == 200
        await wait_until(lambda: _settled(inbox, dead=1, done=4), timeout=20)
        (dead,) = await inbox.list(state="dead")
    finally:
        await runner.cleanup()
    assert calls.count("poison") == 3
    assert sorted(c for c in calls if c != "poison") == [f"good-{n}" for n in range(4)]
    assert dead.last_error is not None
    assert "cannot use \\ud800" in dead.last_error


async def _settled(inbox: Inbox, **states: int) -> bool:
    counts = await inbox.counts()
    return all(counts[state] == n for state, n in states.items())


async def _settled_at_least(inbox: Inbox, **states: int) -> bool:
    counts = await inbox.counts()
    return all(counts[state] >= n for state, n in states.items())


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


async def test_an_error_without_text_is_retried_with_backoff_not_at_once() -> None:
    """A handler raises an exception whose ``str()`` itself fails: it is counted and
    retried with backoff like any failure (it used to rerun thousands of times a
    second), and dead-lettered in the end."""
    calls: list[float] = []
    router = Router()

    @router.on_any
    async def broken(event: Event) -> None:
        calls.append(time.monotonic())
        raise UnprintableError

    inbox = MemoryInbox()
    policy = DispatchPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)
    _, runner, url = await start_receiver(router, inbox=inbox, policy=policy)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=postback("no-text"), headers=JSON) as answer,
        ):
            assert answer.status == 200
        await wait_until(lambda: _settled(inbox, dead=1), timeout=20)
        (dead,) = await inbox.list(state="dead")
    finally:
        await runner.cleanup()
    assert len(calls) == 3
    assert dead.last_error is not None
    assert "UnprintableError: (its str() failed)" in dead.last_error


class ArrivalsDuringRead:
    """A real MemoryInbox whose next ``pending()`` read runs ``arrivals`` just after
    it took its snapshot: postbacks stored and handed over while a sweep reads."""

    def __init__(self, inner: MemoryInbox) -> None:
        self.inner = inner
        self.arrivals: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def pending(self, **options: Any) -> list[StoredEvent]:
        found = await self.inner.pending(**options)
        arrivals, self.arrivals = self.arrivals, None
        if arrivals is not None:
            await arrivals()
        return found


async def test_waiting_postbacks_keep_their_place_when_memory_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sweep ends with more waiting postbacks than memory has room for: those left
    over keep waiting, ahead of newer ones, so a signing's newer postback cannot
    overtake its older one (which used to be dropped until the next idle sweep)."""
    monkeypatch.setattr(_backlog, "MAX_BACKLOG", 0)  # memory: 2 pages of 1,000
    release = asyncio.Event()
    order: list[str] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        if event.token == "S":
            order.append(event.signer or "")
        elif event.token and event.token.startswith("a"):
            await release.wait()

    box = ArrivalsDuringRead(MemoryInbox())
    await box.inner.open()
    for n in range(1500):
        await add_event(box.inner, f"a{n}", n)
    d = dispatcher(router, box)
    await d.start()  # the first 1,000: memory half full, the sweep goes on

    async def arrivals() -> None:  # 600 postbacks while the second page is read
        for n in range(599):
            d.submit(await add_event(box.inner, f"b{n}", 2000 + n))
        d.submit(await add_event(box.inner, "S", 1))  # the older one of signing S

    box.arrivals = arrivals
    await d.backlog.scan()  # the last 500: room for only 500 of the 600 that waited
    runner = asyncio.create_task(d.run())
    try:
        release.set()
        await wait_until(lambda: _settled_at_least(box.inner, done=50), timeout=30)
        d.submit(await add_event(box.inner, "S", 2))  # the newer one, with room for it
        await wait_until(lambda: _true(len(order) == 2), timeout=30)
    finally:
        await stop(runner)
    assert order == ["s1", "s2"]


def test_new_postbacks_are_not_stalled_by_events_waiting_for_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,500 events wait an hour for their retries, filling most of memory (2,000):
    a new postback is still handled at once, not after the retries (virtual clock)."""
    monkeypatch.setattr(_backlog, "MAX_BACKLOG", 0)
    loop = VirtualClockLoop()
    handled: list[str] = []
    router = Router()

    @router.on_any
    async def record(event: Event) -> None:
        handled.append(event.token or "")

    async def scenario() -> float:
        inbox = MemoryInbox()
        await inbox.open()
        for n in range(1500):
            await add_event(inbox, f"old{n}", n)
            await inbox.record_failure(f"old{n}-{n}", error="x", next_attempt_at=3600.0)
        d = dispatcher(router, inbox)
        d._clock = loop.time
        await d.start()
        runner = asyncio.create_task(d.run())
        await asyncio.sleep(2)  # past the first idle sweep
        d.submit(await add_event(inbox, "fresh", 9999))
        arrived = loop.time()
        for _ in range(60):
            if "fresh" in handled:
                break
            await asyncio.sleep(1)
        await stop(runner)
        return loop.time() - arrived

    try:
        waited = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert handled == ["fresh"]
    assert waited <= 2, f"{waited} virtual seconds"


async def test_shutdown_records_what_the_inbox_refused_before() -> None:
    """An outcome the inbox refused is tried once more at shutdown: if writes work by
    then, the event ends ``done`` and its handler does not run again after a
    restart."""
    calls: list[str] = []
    router = Router()
    box = FailingWrites(MemoryInbox())

    @router.on_any
    async def handler(event: Event) -> None:
        calls.append(event.token or "")
        box.failing = True

    await box.open()
    d = dispatcher(router, box)
    d.submit(await add_event(box.inner, "sig-a", 1))
    runner = asyncio.create_task(d.run())
    await wait_until(lambda: _true(bool(box.failed_at)), timeout=10)
    await stop(runner)
    box.failing = False  # the disk has room again as the process stops
    await d.drain(timeout=5)
    assert calls == ["sig-a"]
    assert [e.state for e in await box.inner.list()] == ["done"]
