"""The receiver under faults: ``kill -9`` mid-dispatch, failing handlers, restarts and
graceful shutdown. Each event is stored before its 200, every handler runs at least
once per event, and a handler whose success is recorded never runs again for it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from _processes import kill_and_reap
from _receiver_helpers import postback, start_receiver, wait_until

from dokobit_async import DispatchPolicy
from dokobit_async.events import Event
from dokobit_async.inbox import SQLiteInbox, StoredEvent
from dokobit_async.routing import Router

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}
TINY_BACKOFF = DispatchPolicy(max_attempts=20, base_delay=0.001, max_delay=0.01, concurrency=16)

# The receiver run as a separate process, so that it can be killed with SIGKILL. Each
# handler does its (slow) work, then appends "handler-name token" to the log and
# fsyncs it: a line in the log means the handler's work finished.
RECEIVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, random, sys
    from aiohttp import web
    from dokobit_async.inbox import SQLiteInbox
    from dokobit_async.receiver import DispatchPolicy, PostbackReceiver
    from dokobit_async.routing import Router

    db, log, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    router = Router()

    async def work_then_log(name, event):
        await asyncio.sleep(random.uniform(0.005, 0.03))
        os.write(log_fd, f"{name} {event.token}\\n".encode())
        os.fsync(log_fd)

    @router.on_any
    async def archive(event):
        await work_then_log("archive", event)

    @router.on_any
    async def notify(event):
        await work_then_log("notify", event)

    async def main():
        receiver = PostbackReceiver(
            router,
            inbox=SQLiteInbox(db),
            policy=DispatchPolicy(concurrency=concurrency),
        )
        runner = web.AppRunner(receiver.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)
HANDLERS = {"archive": "__main__.archive", "notify": "__main__.notify"}


@contextlib.asynccontextmanager
async def receiver_process(
    script: Path, db: Path, log: Path, concurrency: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Run ``script`` in a subprocess; yields it and its postback URL. The process is
    killed (and reaped) on the way out, whatever happened."""
    with (script.parent / "receiver.stderr").open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(db),
            str(log),
            str(concurrency),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip().isdigit(), f"no port from the receiver: {line!r}"
        yield proc, f"http://127.0.0.1:{int(line)}/dokobit/postback"
    finally:
        await kill_and_reap(proc)


def read_log(log: Path) -> list[tuple[str, str]]:
    """The ``(handler, token)`` lines that the handlers wrote."""
    if not log.exists():
        return []
    return [
        (name, token)
        for name, token in (line.split() for line in log.read_text().splitlines() if line)
    ]


async def snapshot(db: Path) -> dict[str, StoredEvent]:
    """Every event in the SQLite file, by signing token."""
    async with SQLiteInbox(db) as inbox:
        return {event.signing_token: event for event in await inbox.list(limit=100_000)}


async def test_kill_9_while_dispatching_loses_nothing_and_reruns_only_unrecorded_work(
    tmp_path: Path,
) -> None:
    """SIGKILL the receiver mid-dispatch, restart it on the same inbox: every postback
    that got a 200 is handled by every handler; a handler runs a second time for an
    event only if its first run finished but was not yet recorded (at most one such
    event per dispatch slot)."""
    count, concurrency, kill_after = 200, 4, 20
    script, db, log = tmp_path / "receiver.py", tmp_path / "in.db", tmp_path / "handled.log"
    script.write_text(RECEIVER_SCRIPT)
    accepted: set[str] = set()

    async with receiver_process(script, db, log, concurrency) as (proc, url):

        async def send(session: aiohttp.ClientSession, token: str) -> None:
            with contextlib.suppress(aiohttp.ClientError):  # killed before answering
                async with session.post(url, data=postback(token), headers=JSON) as answer:
                    if answer.status == 200:
                        accepted.add(token)

        async def busy() -> bool:  # still receiving, and dispatching already
            return len(accepted) >= count // 2 and len(read_log(log)) >= kill_after

        async def kill_mid_dispatch() -> None:
            await wait_until(busy, timeout=60)
            await kill_and_reap(proc)

        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16), timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            await asyncio.gather(
                kill_mid_dispatch(), *(send(session, f"ev{i:04d}") for i in range(count))
            )
        assert await asyncio.wait_for(proc.wait(), 30) == -9
    first_life = read_log(log)
    at_kill = await snapshot(db)
    recorded = {token: event.handlers_done for token, event in at_kill.items()}

    # durability: each 200 was stored before it went out; dispatch was cut off midway
    assert accepted, "no postback was acknowledged before the kill"
    assert accepted <= at_kill.keys()
    assert any(event.state == "pending" for event in at_kill.values())
    # within one life a handler runs once per event (no failures here)
    assert max(Counter(first_life).values()) == 1
    # a success is recorded only after the handler's work finished
    for token, names in recorded.items():
        for short, name in HANDLERS.items():
            assert name not in names or (short, token) in first_life

    async with receiver_process(script, db, log, concurrency), SQLiteInbox(db) as inbox:
        await wait_until(lambda: _nothing_pending(inbox), timeout=60)
    final = await snapshot(db)
    second_life = read_log(log)[len(first_life) :]

    assert max(Counter(second_life).values(), default=1) == 1
    handled = set(first_life) | set(second_life)
    for token, event in final.items():  # acknowledged or not: whatever was stored
        assert event.state == "done", (token, event.state, event.last_error)
        assert event.handlers_done == frozenset(HANDLERS.values())
        assert {(short, token) for short in HANDLERS} <= handled
    # no handler ran again after its success was recorded ...
    for short, token in second_life:
        assert HANDLERS[short] not in recorded.get(token, frozenset()), (short, token)
    # ... so the only reruns are runs that finished but were not recorded at the kill
    reruns = set(first_life) & set(second_life)
    unrecorded = {
        (short, token)
        for short, token in first_life
        if HANDLERS[short] not in recorded.get(token, frozenset())
    }
    assert reruns <= unrecorded
    assert len({token for _, token in unrecorded}) <= concurrency
    per_handler = Counter(short for short, _ in reruns)
    assert all(n <= concurrency for n in per_handler.values()), per_handler
    print(
        f"kill -9: {len(accepted)}/{count} acknowledged, {len(at_kill)} stored, "
        f"{sum(e.state == 'done' for e in at_kill.values())} done at the kill, "
        f"{len(first_life)}+{len(second_life)} handler runs, {len(reruns)} reruns "
        f"{dict(per_handler)} (bound {concurrency} per handler)"
    )


async def _nothing_pending(inbox: SQLiteInbox) -> bool:
    return (await inbox.counts())["pending"] == 0


async def post_all(url: str, tokens: list[str]) -> list[int]:
    """POST one postback per token, concurrently; the statuses."""

    async def send(session: aiohttp.ClientSession, token: str) -> int:
        async with session.post(url, data=postback(token), headers=JSON) as answer:
            return answer.status

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return list(await asyncio.gather(*(send(session, token) for token in tokens)))


async def test_randomly_failing_handlers_are_retried_until_each_succeeds_once(
    tmp_path: Path,
) -> None:
    """Handlers fail ~30% of their calls (seeded): with enough attempts every event
    ends ``done``, each handler succeeds exactly once per event, and a handler is
    never called again for an event once it succeeded."""
    rng = random.Random(20240611)
    runs: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    router = Router()

    async def run(name: str, event: Event) -> None:
        await asyncio.sleep(0)
        if rng.random() < 0.3:
            runs[name, event.token or ""].append("failed")
            raise RuntimeError(f"{name} flaked")
        runs[name, event.token or ""].append("ok")

    @router.on_any
    async def archive(event: Event) -> None:
        await run("archive", event)

    @router.on_any
    async def notify(event: Event) -> None:
        await run("notify", event)

    tokens = [f"ev{i:04d}" for i in range(200)]
    inbox = SQLiteInbox(tmp_path / "in.db", synchronous="NORMAL")
    _, runner, url = await start_receiver(router, inbox=inbox, policy=TINY_BACKOFF)
    try:
        assert await post_all(url, tokens) == [200] * len(tokens)
        await wait_until(lambda: _nothing_pending(inbox), timeout=60)
        events = await inbox.list(limit=1000)
    finally:
        await runner.cleanup()
    assert {(e.signing_token, e.state) for e in events} == {(t, "done") for t in tokens}
    assert all(e.handlers_done == frozenset(router.handlers()) for e in events)
    assert set(runs) == {(name, t) for name in ("archive", "notify") for t in tokens}
    for key, outcomes in runs.items():  # failures, then exactly one success, then nothing
        assert outcomes == ["failed"] * (len(outcomes) - 1) + ["ok"], key
    failures = sum(len(outcomes) - 1 for outcomes in runs.values())
    assert failures > 0.1 * len(runs)  # the fault injection did bite


async def test_a_handler_that_always_fails_is_dead_lettered_with_its_last_error(
    tmp_path: Path,
) -> None:
    """After ``max_attempts`` failed attempts the event is a dead letter holding the
    last error; the handler that succeeded ran once and is recorded as done."""
    policy = DispatchPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)
    calls: Counter[tuple[str, str]] = Counter()
    router = Router()

    @router.on_any
    async def good(event: Event) -> None:
        calls["good", event.token or ""] += 1

    @router.on_any
    async def broken(event: Event) -> None:
        calls["broken", event.token or ""] += 1
        raise RuntimeError(f"broken call {calls['broken', event.token or '']} for {event.token}")

    inbox = SQLiteInbox(tmp_path / "in.db")
    _, runner, url = await start_receiver(router, inbox=inbox, policy=policy)
    tokens = ["A", "B", "C"]
    try:
        assert await post_all(url, tokens) == [200, 200, 200]
        await wait_until(lambda: _nothing_pending(inbox))
        events = await inbox.list()
    finally:
        await runner.cleanup()
    good_name = next(name for name, handler in router.handlers().items() if handler is good)
    for event in events:
        assert event.state == "dead"
        assert event.attempts == policy.max_attempts
        assert event.last_error is not None
        assert f"broken call {policy.max_attempts} for {event.signing_token}" in event.last_error
        assert event.handlers_done == {good_name}
    assert calls == {
        **{("good", t): 1 for t in tokens},
        **{("broken", t): policy.max_attempts for t in tokens},
    }


async def test_an_event_cut_off_by_shutdown_stays_pending_and_runs_after_restart(
    tmp_path: Path,
) -> None:
    """A handler still running at ``shutdown_timeout`` is cancelled; its event stays
    pending in the SQLite file, and the next receiver on that file handles it."""
    db = tmp_path / "in.db"
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    first = Router()
    first.add(None, stuck)
    _, runner, url = await start_receiver(
        first, inbox=SQLiteInbox(db), policy=DispatchPolicy(shutdown_timeout=0.2)
    )
    try:
        assert await post_all(url, ["T1"]) == [200]
        await asyncio.wait_for(started.wait(), 10)
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)
    assert cancelled.is_set()
    stored = (await snapshot(db))["T1"]
    assert (stored.state, stored.handlers_done) == ("pending", frozenset())

    handled: list[str] = []
    second = Router()

    @second.on_any
    async def record(event: Event) -> None:
        handled.append(event.token or "")

    inbox = SQLiteInbox(db)
    _, runner, _ = await start_receiver(second, inbox=inbox)
    try:
        await wait_until(lambda: _nothing_pending(inbox))
        assert [event.state for event in await inbox.list()] == ["done"]
    finally:
        await runner.cleanup()
    assert handled == ["T1"]


async def test_graceful_shutdown_finishes_running_handlers_and_accepts_nothing_new(
    tmp_path: Path,
) -> None:
    """Handlers that finish within ``shutdown_timeout`` complete and their events are
    marked done; once shutdown has begun, new connections are refused."""
    db = tmp_path / "in.db"
    running: list[str] = []
    finished: list[str] = []
    release = asyncio.Event()
    router = Router()

    @router.on_any
    async def slow(event: Event) -> None:
        running.append(event.token or "")
        await release.wait()
        finished.append(event.token or "")

    _, runner, url = await start_receiver(
        router, inbox=SQLiteInbox(db), policy=DispatchPolicy(shutdown_timeout=10, concurrency=4)
    )
    port = runner.addresses[0][1]
    stopping: asyncio.Task[None] | None = None
    try:
        assert await post_all(url, ["A", "B", "C"]) == [200, 200, 200]
        await wait_until(lambda: _length_is(running, 3))
        stopping = asyncio.create_task(runner.cleanup())
        await wait_until(lambda: _refuses_connections(port))
        with pytest.raises(aiohttp.ClientConnectionError):
            await post_all(url, ["LATE"])
        assert not stopping.done()  # the handlers hold it: they have not been released
        assert finished == []
        release.set()
    finally:
        release.set()
        await asyncio.wait_for(stopping or runner.cleanup(), 15)
    assert sorted(finished) == ["A", "B", "C"]
    events = await snapshot(db)
    assert {token: event.state for token, event in events.items()} == dict.fromkeys("ABC", "done")


async def _refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def _length_is(items: list[str], length: int) -> bool:
    return len(items) == length
