"""``dokobit-async work`` over real subprocesses and a real redis-server: behind
``listen --no-dispatch``, postbacks from the emulator are stored by the listener and
handled by the worker, confirmed against the API, in order; SIGTERM lets a running
handler finish, exits 0 and hands the other events to the next worker at once; what
cannot start is one error line with the right exit status; neither the access token,
the postback secret nor a Redis password is ever in the output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from _processes import kill_and_reap
from _receiver_helpers import wait_until
from _redis import free_port, running_redis, start_persistent
from test_redis_worker_confirm import _spellings, add

from dokobit_async import DokobitClient
from dokobit_async.cli import main
from dokobit_async.models import ExternalSigner, SigningFile
from dokobit_async.redis import RedisInbox
from dokobit_async.testing import Emulator, make_pdf

WAIT = 30.0  # seconds: the bound on every wait in this module
SECRET = "postback-secret-shared-by-replicas-0123"


class Child:
    """``python -m dokobit_async ARGS`` in a subprocess; its output collected."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            asyncio.ensure_future(self._read(proc.stdout, self.out)),
            asyncio.ensure_future(self._read(proc.stderr, self.err)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode())

    async def line(self, pattern: str, *, stdout: bool = False) -> re.Match[str]:
        """The first line of stderr (or stdout) that matches ``pattern``, once it came."""
        lines = self.out if stdout else self.err
        found: list[re.Match[str]] = []

        async def seen() -> bool:
            found[:] = [m for m in map(re.compile(pattern).search, lines) if m][:1]
            if not found and self.proc.returncode is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {''.join(self.err)}")
            return bool(found)

        await wait_until(seen, timeout=WAIT)
        return found[0]

    async def stop(self) -> int:
        """SIGTERM (unless it exited); its exit status once its output is read."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        await asyncio.wait_for(asyncio.gather(*self._readers), WAIT)
        return code

    def output(self) -> str:
        return "".join(self.out + self.err)


@contextlib.asynccontextmanager
async def child(tmp_path: Path, *argv: str, **env: str) -> AsyncIterator[Child]:
    """A running ``dokobit-async`` with ``env`` (and no other DOKOBIT_* variable),
    killed on exit if still running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dokobit_async", *argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": path, **env},
    )
    running = Child(proc)
    try:
        yield running
    finally:
        await kill_and_reap(proc)


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[str]:
    """A router module in tmp_path: its handler appends ``pid started|finished action
    signer n`` to handled.txt, and waits between the two until a file ``release``
    exists (made at once unless the test removes it)."""
    name = f"work_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / "release").touch()
    (tmp_path / f"{name}.py").write_text(
        "import asyncio, os\n"
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "def note(what, event):\n"
        f"    with open({str(tmp_path / 'handled.txt')!r}, 'a') as f:\n"
        "        n = event.raw.get('n', '-')\n"
        "        f.write(f'{os.getpid()} {what} {event.action} {event.signer} {n}\\n')\n"
        "@router.on_any\n"
        "async def handle(event):\n"
        "    note('started', event)\n"
        "    for _ in range(3000):\n"
        f"        if os.path.exists({str(tmp_path / 'release')!r}):\n"
        "            break\n"
        "        await asyncio.sleep(0.01)\n"
        "    note('finished', event)\n"
        "not_a_router = 42\n"
    )
    yield name
    sys.modules.pop(name, None)


def handled(tmp_path: Path) -> list[list[str]]:
    """handled.txt's lines, split."""
    path = tmp_path / "handled.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def _true(value: bool) -> bool:
    return value


def _status_reads(emu: Emulator) -> int:
    return sum(1 for record in emu.requests if record.operation.endswith("/status"))


async def test_listen_no_dispatch_and_work_handle_the_emulators_postbacks_in_order(
    tmp_path: Path, handlers: str, redis_url: str
) -> None:
    """A whole signing of two signers on the emulator, its postbacks sent to a
    ``listen --no-dispatch`` on Redis: a ``work`` process confirms each event against
    the emulator and runs the handler once for each, in the order stored; both stop
    with 0 on SIGTERM, and no output holds the token or the postback secret."""
    async with (
        Emulator() as emu,
        DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=None) as client,
    ):
        env = {
            "DOKOBIT_ACCESS_TOKEN": emu.access_token,
            "DOKOBIT_BASE_URL": emu.base_url,
            "DOKOBIT_POSTBACK_SECRET": SECRET,
        }
        listen_args = ("listen", "--inbox", redis_url, "--no-dispatch", "--port", "0")
        work_args = ("work", "--inbox", redis_url, "--router", f"{handlers}:router")
        async with child(tmp_path, *listen_args, **env) as listener:
            url = (await listener.line(r"^postback URL: (\S+)", stdout=True))[1]
            async with child(tmp_path, *work_args, **env) as worker:
                await worker.line(r"worker \S+ on redis://127\.0\.0\.1:\d+/0")
                reads = _status_reads(emu)
                created = await client.external.create(
                    name="Agreement",
                    type="pdf",
                    files=[SigningFile.from_bytes(make_pdf(["x"]), name="a.pdf")],
                    signers=[
                        ExternalSigner(external_id=f"u{i}", email=f"u{i}@example.com")
                        for i in (1, 2)
                    ],
                    postback_url=url,
                )
                for signer in created.signers:
                    await emu.sign(created.token, signer.token)
                await emu.wait_postbacks_idle()
                async with RedisInbox(redis_url) as inbox:

                    async def all_done() -> bool:
                        counts = await inbox.counts()
                        return counts["done"] >= 3 and counts["done"] == sum(counts.values())

                    await wait_until(all_done, timeout=WAIT)
                    stored = sorted(await inbox.list(limit=100), key=lambda e: e.seq)
                assert await worker.stop() == 0
            assert await listener.stop() == 0
    finished = [line[2:4] for line in handled(tmp_path) if line[1] == "finished"]
    assert finished == [[e.action, _signer(e.body)] for e in stored]
    assert {"signer_signed", "signing_completed"} <= {action for action, _ in finished}
    confirmable = sum(1 for e in stored if e.action in ("signer_signed", "signing_completed"))
    assert _status_reads(emu) - reads >= confirmable
    assert len({line[0] for line in handled(tmp_path)}) == 1  # one worker process
    segment = url.rsplit("/", 1)[-1]
    for shown in (worker.output(), "".join(listener.err)):
        for secret in (emu.access_token, SECRET, segment):
            assert secret not in shown
    assert "worker" in worker.output()


def _signer(body: bytes) -> str:
    return str(json.loads(body).get("signer"))


async def test_sigterm_finishes_the_running_handler_and_leaves_the_rest_at_once(
    tmp_path: Path, handlers: str, redis_url: str
) -> None:
    """SIGTERM while a handler runs: the worker lets it finish, records it, hands the
    signing's next event back to the group (no entry left in its hands: none waits
    for a lease) and exits 0; a second worker then runs the two others, in order."""
    async with RedisInbox(redis_url) as inbox:
        for n in range(3):
            await add(inbox, f"e{n}", {"action": "signer_signed", "token": "sig-t", "n": str(n)})
    (tmp_path / "release").unlink()
    args = ("work", "--inbox", redis_url, "--router", f"{handlers}:router", "--no-confirm")
    async with child(tmp_path, *args, "--name", "first") as first:
        await wait_until(lambda: _true(len(handled(tmp_path)) == 1), timeout=WAIT)
        first.proc.send_signal(signal.SIGTERM)
        await first.line(r"worker first stopping")
        (tmp_path / "release").touch()
        assert await first.stop() == 0
    async with RedisInbox(redis_url) as inbox:
        states = {e.id: e.state for e in await inbox.list(limit=10)}
        held = await _pending_entries(redis_url, inbox.prefix)
    assert states == {"e0": "done", "e1": "pending", "e2": "pending"}
    assert held == 0
    assert [line[1:] for line in handled(tmp_path)] == [
        ["started", "signer_signed", "None", "0"],
        ["finished", "signer_signed", "None", "0"],
    ]
    async with child(tmp_path, *args, "--name", "second") as second:
        async with RedisInbox(redis_url) as inbox:

            async def done() -> bool:
                return (await inbox.counts())["done"] == 3

            await wait_until(done, timeout=WAIT)
        assert await second.stop() == 0
    runs = [(line[0], line[4]) for line in handled(tmp_path) if line[1] == "finished"]
    assert [n for _, n in runs] == ["0", "1", "2"]
    assert runs[1][0] == runs[2][0] != runs[0][0]
    assert "no access token" not in first.output()


async def _pending_entries(redis_url: str, prefix: str) -> int:
    """How many stream entries the workers' group has delivered and not acknowledged."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        summary = await client.xpending(prefix + "stream", "workers")
    finally:
        await client.aclose()
    return int(summary["pending"])


@pytest.mark.parametrize(
    ("inbox", "router", "code", "says"),
    [
        ("redis://:hunter2-pw@127.0.0.1:{port}/0", True, 1, "redis://127.0.0.1:{port}/0"),
        ("postbacks.db", True, 2, "work needs a Redis inbox"),
        ("http://127.0.0.1/x", True, 2, "http:// is not an inbox"),
        ("redis://", True, 2, "needs a host"),
        ("redis://127.0.0.1:{port}/0", False, 2, "required: --router"),
    ],
)
def test_what_cannot_start_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    handlers: str,
    inbox: str,
    router: bool,
    code: int,
    says: str,
) -> None:
    """A refused connection (exit 1, at once, not a retry loop), an inbox that is not
    Redis, a URL that is no inbox, a missing --router (usage errors, 2): each is one
    error line, and the URL's password is never in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    port = str(free_port())
    inbox, says = inbox.replace("{port}", port), says.replace("{port}", port)
    argv = ["work", "--inbox", inbox, *(("--router", f"{handlers}:router") if router else ())]
    got = main(argv)
    out, err = capsys.readouterr()
    assert (got, out) == (code, "")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dokobit-async: error: ")
    assert says in err
    assert "hunter2" not in err


async def test_a_redis_password_is_never_shown(tmp_path: Path, handlers: str) -> None:
    """A server that requires a password: a wrong one is one error line (exit 1)
    without either password; the right one runs (saying once that, with no access
    token, events run unconfirmed), handles an event, and stops with 0, its output
    without the password."""
    with running_redis(tmp_path) as server:
        assert server.command("CONFIG", "SET", "requirepass", "right-pw-4711").startswith(b"+OK")
        url = f"redis://:right-pw-4711@127.0.0.1:{server.port}/0"
        wrong = url.replace("right-pw-4711", "wrong-pw-0815")
        args = ("--router", f"{handlers}:router")
        async with child(tmp_path, "work", "--inbox", wrong, *args) as failed:
            assert await asyncio.wait_for(failed.proc.wait(), WAIT) == 1
            await failed.stop()
        async with RedisInbox(url) as inbox:
            await add(inbox, "p", {"action": "signer_signed", "token": "sig-p"})
        async with child(tmp_path, "work", "--inbox", url, *args) as worker:
            await wait_until(lambda: _true(len(handled(tmp_path)) == 2), timeout=WAIT)
            assert await worker.stop() == 0
    error = failed.err
    assert len(error) == 1, error
    assert error[0].startswith("dokobit-async: error: cannot start the worker: ")
    assert f"redis://127.0.0.1:{server.port}/0" in error[0]
    shown = worker.output()
    assert shown.count("no access token: events reach the handlers unconfirmed") == 1
    for output in (failed.output(), shown):
        assert "pw-4711" not in output
        assert "pw-0815" not in output


_FLAKY = """
import asyncio, os
from dokobit_async.routing import Router
router = Router()
failed = set()
@router.on_any
async def handle(event):
    if int(event.raw["n"]) % 10 == 0 and event.raw["n"] not in failed:  # fails once
        failed.add(event.raw["n"])
        raise RuntimeError("refused with " + os.environ["DOKOBIT_ACCESS_TOKEN"])
    with open("handled.txt", "a") as f:
        f.write(f"{event.token} {event.raw['n']}\\n")
    await asyncio.sleep(0.005)
"""


async def test_work_rides_out_redis_going_away_and_loses_nothing(tmp_path: Path) -> None:
    """Redis (appendonly, appendfsync always) is killed while a ``work`` process
    handles 40 events (every tenth fails once, with the access token in its
    error): the worker stays up, retries with a growing delay (attempts numbered in
    turn, each delay within its doubling ceiling), and once Redis is back on the same
    port it handles every event, in order per signing, including those added after.
    No output line holds the token."""
    name = f"flaky_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(_FLAKY)
    token = "work-token-Secret+/=0123456789"
    server = start_persistent(tmp_path)
    try:
        async with RedisInbox(server.url) as inbox:
            for n in range(20):
                await add(
                    inbox, f"e{n}", {"action": "signer_signed", "token": f"s{n % 3}", "n": str(n)}
                )
        args = ("work", "--inbox", server.url, "--router", f"{name}:router", "--no-confirm")
        async with child(tmp_path, *args, DOKOBIT_ACCESS_TOKEN=token) as worker:
            await wait_until(lambda: _true(len(_lines(tmp_path)) >= 5), timeout=WAIT)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(WAIT)
            await worker.line(r"cannot read the inbox \(attempt 3:")
            server = start_persistent(tmp_path, server.port)
            async with RedisInbox(server.url) as inbox:
                for n in range(20, 40):
                    await add(
                        inbox,
                        f"e{n}",
                        {"action": "signer_signed", "token": f"s{n % 3}", "n": str(n)},
                    )

                async def all_done() -> bool:
                    return (await inbox.counts())["done"] == 40

                await wait_until(all_done, timeout=60)
            assert await worker.stop() == 0
    finally:
        server.stop()
    ran: dict[str, list[int]] = {}
    for signing, number in _lines(tmp_path):
        ran.setdefault(signing, []).append(int(number))
    for s in range(3):
        assert ran[f"s{s}"] == sorted(ran[f"s{s}"])
        assert set(ran[f"s{s}"]) == set(range(s, 40, 3))
    retries = [
        (int(m[1]), float(m[2]))
        for m in re.finditer(
            r"cannot read the inbox \(attempt (\d+):.*again in ([\d.]+) s", worker.output()
        )
    ]
    assert [attempt for attempt, _ in retries][:3] == [1, 2, 3]
    for attempt, delay in retries:
        ceiling = min(30.0, 0.1 * 2**attempt)
        assert ceiling / 2 - 0.05 <= delay <= ceiling + 0.05
    assert "refused with ***" in worker.output()
    for spelling in _spellings(token):
        assert spelling.decode() not in worker.output()


def _lines(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "handled.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_the_postback_secrets_are_masked_in_the_errors_work_stores(
    tmp_path: Path, redis_url: str
) -> None:
    """A handler's error that quotes a postback secret (of ``$DOKOBIT_POSTBACK_SECRET``,
    which may hold several during a rotation) is stored and logged masked by ``work``."""
    old, new = "old-postback-secret-0123456789", "new-postback-secret-0123456789"
    name = f"work_leaky_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "@router.on_any\n"
        "async def handle(event):\n"
        f"    raise RuntimeError('failed with {old} and {new}')\n"
    )
    async with RedisInbox(redis_url) as inbox:
        await add(inbox, "e0", {"action": "signer_signed", "token": "sig-m", "n": "0"})
    args = ("work", "--inbox", redis_url, "--router", f"{name}:router", "--no-confirm")
    async with child(
        tmp_path, *args, "--max-attempts", "1", DOKOBIT_POSTBACK_SECRET=f"{new}, {old}"
    ) as worker:
        async with RedisInbox(redis_url) as inbox:

            async def dead() -> bool:
                return (await inbox.counts())["dead"] == 1

            await wait_until(dead, timeout=WAIT)
            (event,) = await inbox.list(state="dead")
        assert await worker.stop() == 0
    sys.modules.pop(name, None)
    assert event.last_error is not None
    assert "failed with" in event.last_error
    for secret in (old, new):
        assert secret not in event.last_error
        assert secret not in worker.output()
