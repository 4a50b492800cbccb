"""Scale-out on one Redis, over real processes (issue 11, section 4): receivers that
only store and answer (``listen --no-dispatch``) and ``work`` processes that run the
handlers, one of them killed with SIGKILL in the middle of a handler.

What must hold (docs/architecture.md, the guarantees): no acknowledged event lost,
each handled once per success (the event whose worker was killed may run twice, and
nothing else), the events of a signing handled in the order the receivers stored
them (their ``seq``), a postback sent to two receivers stored once; a worker stopped
with SIGTERM finishes its handler, exits 0 and leaves the unread events to the
others. The handlers record every call and every success by appending one line per
call to a file (``O_APPEND``: whole lines, in the order written, across processes).
Every wait is bounded; every child is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import redis.asyncio
from _processes import kill_and_reap
from _receiver_helpers import wait_until
from test_cli_receiver import Listener, _listener_env
from test_inbox_redis import everything_stored
from test_redact import spellings

from dokobit_async.redis import RedisInbox

SIGNINGS = 40
EVENTS = 5  # per signing: 200 events, 2 of 3 sent to both receivers
CHOSEN = (7, 2)  # (signing, event) whose first handler run is killed
LEASE = "1"  # seconds: the reclaim happens within the test
WAIT = 60.0  # seconds: the bound on every wait in this module
SECRET = "scale-out-shared-postback-secret-0123"

_HANDLERS = '''
"""Handlers of the scale-out test: each call and each success is one appended line."""
import asyncio, os
from dokobit_async.routing import Router

router = Router()
CALLS, DONE, RELEASE = {calls!r}, {done!r}, {release!r}
HOLD = {hold!r}  # (token, signer): its handler waits until RELEASE exists


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@router.on_any
async def record(event):
    line = f"{{event.token}} {{event.signer}} {{os.getpid()}}\\n"
    _append(CALLS, line)
    if (event.token, event.signer) == HOLD:
        while not os.path.exists(RELEASE):  # the test kills or stops us here
            await asyncio.sleep(0.05)
    _append(DONE, line)
'''


def token(signing: int) -> str:
    return f"{signing:040x}"  # Dokobit tokens are 40 hex digits


def signer(event: int) -> str:
    return f"signer-{event}"


def body(signing: int, event: int) -> bytes:
    payload = {"action": "signer_signed", "token": token(signing), "signer": signer(event)}
    return json.dumps(payload).encode()


class Run:
    """The handlers module of one test in ``tmp_path``, and what it recorded."""

    def __init__(self, tmp_path: Path, hold: tuple[str, str]):
        self.dir = tmp_path
        self.module = f"scaleout_handlers_{uuid.uuid4().hex[:8]}"
        self.calls, self.done = tmp_path / "calls.txt", tmp_path / "done.txt"
        self.release = tmp_path / "release"
        source = _HANDLERS.format(
            calls=str(self.calls), done=str(self.done), release=str(self.release), hold=hold
        )
        (tmp_path / f"{self.module}.py").write_text(source)
        self.env = _listener_env(tmp_path, DOKOBIT_POSTBACK_SECRET=SECRET)

    @staticmethod
    def _lines(path: Path) -> list[tuple[str, str, int]]:
        if not path.exists():
            return []
        found = []
        for line in path.read_text().splitlines():
            tok, who, pid = line.split()
            found.append((tok, who, int(pid)))
        return found

    def called(self) -> list[tuple[str, str, int]]:
        """(token, signer, pid) of each handler call, in the order they began."""
        return self._lines(self.calls)

    def succeeded(self) -> list[tuple[str, str, int]]:
        """(token, signer, pid) of each handler success, in the order they ended."""
        return self._lines(self.done)

    async def worker(self, redis_url: str, name: str) -> asyncio.subprocess.Process:
        """A ``work`` process (one event at a time, so that the one killed holds only
        the event it is running), once it is reading the inbox."""
        log = self.dir / f"{name}.err"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "dokobit_async", "work", "--inbox", redis_url),
                *("--router", f"{self.module}:router", "--concurrency", "1"),
                *("--lease", LEASE, "--name", name, "--shutdown-timeout", "30"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                cwd=self.dir,
                env=self.env,
            )
        try:
            await wait_until(lambda: _says(log, f"worker {name} on redis://"), timeout=WAIT)
        except BaseException:
            await kill_and_reap(proc)
            raise
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.err").read_text()


async def _says(log: Path, text: str) -> bool:
    return text in log.read_text()


async def _true(value: bool) -> bool:
    return value


async def _done(inbox: RedisInbox, total: int) -> bool:
    counts = await inbox.counts()
    return counts["done"] == total


def _signal_delivered(pid: int) -> bool:
    """Whether ``pid`` has no pending signal left (its handler has run)."""
    status = Path(f"/proc/{pid}/status").read_text()
    pending = [line.split()[1] for line in status.splitlines() if line[:6] in ("SigPnd", "ShdPnd")]
    return all(int(mask, 16) == 0 for mask in pending)


def _encodings(secret: str) -> set[bytes]:
    """``secret`` in every spelling the other leak tests look for."""
    raw = secret.encode()
    spelled = {value.encode() for value in spellings(secret).values()}
    return spelled | {raw.hex().encode(), base64.b64encode(raw).rstrip(b"=")}


async def test_two_receivers_three_workers_and_a_worker_killed_mid_handler(
    tmp_path: Path, redis_url: str
) -> None:
    """Two ``listen --no-dispatch`` receivers and three ``work`` processes (lease 1 s)
    on one Redis; 40 signings x 5 events are posted, each signing's events one after
    another, each to one receiver and 2 of 3 also, at the same time, to the other.
    The worker running the chosen event is killed (SIGKILL) inside its handler.

    Then every acknowledged event was handled; each succeeded once; only the killed
    event was called twice (once by the killed worker, once by a living one after
    the lease); per signing, the successes came in ``seq`` order, which is the order
    they were sent; 200 events are stored (the copies were not); no key or value in
    Redis holds the postback secret or the URL's secret segment."""
    chosen = (token(CHOSEN[0]), signer(CHOSEN[1]))
    run = Run(tmp_path, chosen)
    listeners: list[Listener] = []
    workers: dict[int, asyncio.subprocess.Process] = {}
    names: dict[int, str] = {}
    acked: set[tuple[str, str]] = set()
    statuses: Counter[int] = Counter()
    try:
        for _ in range(2):
            listeners.append(
                Listener(tmp_path, None, "--inbox", redis_url, "--no-dispatch", env=run.env)
            )
        urls = [listener.local_url(listener.url) for listener in listeners]
        for n in range(3):
            proc = await run.worker(redis_url, f"w{n}")
            workers[proc.pid], names[proc.pid] = proc, f"w{n}"

        async def send(session: aiohttp.ClientSession, url: str, data: bytes) -> int:
            headers = {"Content-Type": "application/json"}
            async with session.post(url, data=data, headers=headers) as response:
                return response.status

        async def one_signing(session: aiohttp.ClientSession, s: int) -> None:
            for e in range(EVENTS):  # in order: each once the previous was answered
                first = (s + e) % 2
                targets = [urls[first]] + ([urls[1 - first]] if (s + e) % 3 else [])
                answers = await asyncio.gather(*(send(session, u, body(s, e)) for u in targets))
                statuses.update(answers)
                if 200 in answers:
                    acked.add((token(s), signer(e)))

        timeout = aiohttp.ClientTimeout(total=WAIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            load = asyncio.ensure_future(
                asyncio.gather(*(one_signing(session, s) for s in range(SIGNINGS)))
            )
            try:  # the chosen event's handler has begun: kill its worker there
                await wait_until(
                    lambda: _true(any(c[:2] == chosen for c in run.called())), timeout=WAIT
                )
                killed = next(pid for tok, who, pid in run.called() if (tok, who) == chosen)
                assert await kill_and_reap(workers.pop(killed)) == -signal.SIGKILL
                run.release.touch()
                await asyncio.wait_for(asyncio.shield(load), WAIT)
            finally:
                load.cancel()

        total = SIGNINGS * EVENTS
        async with RedisInbox(redis_url) as inbox:
            await wait_until(lambda: _done(inbox, total), timeout=WAIT)
            stored = await inbox.list(limit=10 * total)
            counts = await inbox.counts()
        for pid, proc in workers.items():  # the living ones stop cleanly
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0, run.log(names[pid])
        stops = [listener.stop() for listener in listeners]
        secret_segment = listeners[0].url.rsplit("/", 1)[-1]
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            everything = b"\n".join(await everything_stored(client))
        finally:
            await client.aclose()
    finally:
        for proc in workers.values():
            await kill_and_reap(proc)
        for listener in listeners:
            listener.kill()

    assert [code for code, _, _ in stops] == [0, 0]
    everyone = {(token(s), signer(e)) for s in range(SIGNINGS) for e in range(EVENTS)}
    assert acked == everyone  # (so that "nothing lost" below covers every event)
    assert set(statuses) == {200}
    assert sum(statuses.values()) > total  # copies were sent
    assert counts["done"] == len(stored) == total  # the copies stored once

    calls = run.called()
    successes = run.succeeded()
    # 0 acknowledged events lost; once per success
    assert {c[:2] for c in successes} == acked
    assert [k for k, n in Counter(c[:2] for c in successes).items() if n > 1] == []
    # only the event whose worker was killed ran twice: in it, then after the lease
    assert [k for k, n in Counter(c[:2] for c in calls).items() if n > 1] == [chosen]
    chosen_calls = [pid for tok, who, pid in calls if (tok, who) == chosen]
    assert chosen_calls[0] == killed
    assert chosen_calls[1] in workers
    assert [pid for tok, who, pid in successes if (tok, who) == chosen] == chosen_calls[1:]
    # order per signing: the order of the successes is the order of the seqs, which
    # is the order the events were sent in
    by_seq: dict[str, list[str]] = defaultdict(list)
    for event in sorted(stored, key=lambda e: e.seq):
        by_seq[event.signing_token].append(json.loads(event.body)["signer"])
    handled: dict[str, list[str]] = defaultdict(list)
    for tok, who, _ in successes:
        handled[tok].append(who)
    sent = [signer(e) for e in range(EVENTS)]
    assert dict(handled) == dict(by_seq) == {token(s): sent for s in range(SIGNINGS)}
    # no key or value holds the postback secret, nor the URL's secret segment
    assert token(0).encode() in everything  # (what is stored was read)
    for leak in _encodings(SECRET) | _encodings(secret_segment):
        assert leak not in everything


async def test_a_worker_stopped_mid_handler_finishes_it_and_leaves_the_rest(
    tmp_path: Path, redis_url: str
) -> None:
    """A ``work`` process running the first event's handler gets SIGTERM: it lets that
    handler finish (released only once the signal was delivered), records it done,
    exits 0 and takes nothing more; the events stored meanwhile stay pending, and
    another worker then runs them, the held signing's next event after its first."""
    held = (token(0), signer(0))
    run = Run(tmp_path, held)
    procs: list[asyncio.subprocess.Process] = []
    async with RedisInbox(redis_url) as inbox:

        async def add(s: int, e: int) -> None:
            stored = await inbox.add(
                id=f"{s}-{e}",
                signing_token=token(s),
                action="signer_signed",
                body=body(s, e),
                content_type="application/json",
                received_at=time.time(),
            )
            assert stored is not None

        try:
            await add(0, 0)
            procs.append(await run.worker(redis_url, "first"))
            await wait_until(lambda: _true(bool(run.called())), timeout=WAIT)
            for s, e in [(0, 1), *((s, 0) for s in range(1, 6))]:
                await add(s, e)
            procs[0].send_signal(signal.SIGTERM)
            await wait_until(lambda: _true(_signal_delivered(procs[0].pid)), timeout=WAIT)
            run.release.touch()
            assert await asyncio.wait_for(procs[0].wait(), WAIT) == 0, run.log("first")
            after_stop = await inbox.counts()
            first = await inbox.get("0-0")
            procs.append(await run.worker(redis_url, "second"))
            await wait_until(lambda: _done(inbox, 7), timeout=WAIT)
        finally:
            for proc in procs:
                await kill_and_reap(proc)
    assert "worker first stopped" in run.log("first")
    assert first is not None
    assert (first.state, first.attempts) == ("done", 0)
    assert (after_stop["done"], after_stop["pending"]) == (1, 6)
    stopped, second = procs[0].pid, procs[1].pid
    assert run.called() == run.succeeded()  # each called once, and it succeeded
    assert [(tok, who) for tok, who, pid in run.succeeded() if pid == stopped] == [held]
    assert {(tok, who) for tok, who, pid in run.succeeded() if pid == second} == {
        (token(0), signer(1)),
        *((token(s), signer(0)) for s in range(1, 6)),
    }
