"""``--rate-limit URL``: the long-running commands count their calls in the rate limit
that the application's processes share through Redis (issue 13, section 1).

An application process (this test's, a client with ``RedisRateLimit``) and
``dokobit-async reconcile`` in a subprocess call the emulator with one token; the
emulator records when each call arrived, and no window of ``period`` holds more than
the token's ``calls`` (and the reconciler's own calls no more than its share). Without
the option the same two processes crowd a window: the command kept a limit of its own.
A Redis that does not answer at start is one error line, exit 1, from every command,
and its password is never in any output.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio
from _receiver_helpers import wait_until
from _redis import free_port, running_redis
from test_cli_work import WAIT, child
from test_ratelimit import max_in_any_window
from test_reconcile import NOW_SCHEDULE, completed_signings, create, dead_url

from dokobit_async import DokobitClient, RateLimit
from dokobit_async._cli.access import client_of
from dokobit_async.cli import build_parser, main
from dokobit_async.reconcile import SQLiteTracker
from dokobit_async.redis import RedisRateLimit
from dokobit_async.testing import Emulator, EmulatorConfig

CALLS, PERIOD, SHARE = 10, 1.0, 0.5  # the token's limit, and the reconciler's part
TRACKED, OWN = 15, 20  # the reconciler's status calls, the application's
LIMIT_OPTIONS = ("--rate-limit-calls", str(CALLS), "--rate-limit-period", f"{PERIOD:g}")


@pytest.fixture(autouse=True)
def _no_rate_limit_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOKOBIT_RATE_LIMIT", raising=False)


async def _application_and_reconciler(
    tmp_path: Path, redis_url: str, *shared: str
) -> tuple[list[float], list[float], str, str]:
    """``TRACKED`` completed signings tracked in an SQLite file; ``reconcile --once``
    with ``shared`` options in a subprocess, and, from its first status call on, the
    application's ``OWN`` status calls through a ``RedisRateLimit`` of the same token.
    Arrivals (s) at the emulator of every call of the two after the set-up, and of the
    reconciler's, the command's output, and the token."""
    db = tmp_path / "postbacks.db"
    async with Emulator(config=EmulatorConfig(time_scale=0.000001)) as emu:
        tracker = SQLiteTracker(db, schedule=NOW_SCHEDULE)
        tracked = {s.token for s in await completed_signings(emu, tracker, TRACKED)}
        async with DokobitClient(emu.access_token, base_url=emu.base_url) as setup:
            own = (await create(setup, dead_url(), people=1)).token  # not tracked
        start = len(emu.requests)
        env = {"DOKOBIT_ACCESS_TOKEN": emu.access_token, "DOKOBIT_BASE_URL": emu.base_url}
        argv = ["reconcile", "--inbox", str(db), "--once", "--share", f"{SHARE:g}"]

        def reconciler_calls() -> list[float]:
            return [
                r.time.timestamp()
                for r in emu.requests[start:]
                if r.operation.endswith("/status") and r.path.split("/")[-2] in tracked
            ]

        async with child(tmp_path, *argv, *LIMIT_OPTIONS, *shared, **env) as command:

            async def reconciling() -> bool:
                if command.proc.returncode is not None:  # ended before its first call
                    raise AssertionError(f"exited {command.proc.returncode}: {command.output()}")
                return bool(reconciler_calls())

            await wait_until(reconciling, timeout=WAIT)
            async with (
                RedisRateLimit(redis_url, calls=CALLS, period=PERIOD) as limit,
                DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=limit) as app,
            ):
                pending = list(range(OWN))

                async def caller() -> None:
                    while pending:
                        pending.pop()
                        await app.external.status(own)

                await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(4))), WAIT)
            assert await asyncio.wait_for(command.proc.wait(), WAIT) == 0, command.output()
            await command.stop()
        everything = [r.time.timestamp() for r in emu.requests[start:]]
        own_calls = [r for r in emu.requests[start:] if r.path.split("/")[-2] == own]
        assert len(own_calls) == OWN
        assert len(reconciler_calls()) == TRACKED
        assert emu.access_token not in command.output()
        return everything, reconciler_calls(), command.output(), emu.access_token


def _tags(token: str) -> set[bytes]:
    """The hash tags of the token's limit and of the reconciler's share of it."""
    return {
        hashlib.sha256(name.encode()).hexdigest().encode()
        for name in (token, f"reconciler\x00{token}")
    }


async def _stored(redis_url: str) -> tuple[set[bytes], bytes]:
    """The rate limit's hash tags in Redis, and every key and value, dumped."""
    store = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in store.scan_iter()]
        dumped = b"".join([key + (await store.dump(key) or b"") for key in keys])
    finally:
        await store.aclose()
    limits = (k for k in keys if k.startswith(b"dokobit:ratelimit:"))
    return {k.split(b"{")[1].split(b"}")[0] for k in limits}, dumped


async def test_reconcile_shares_the_token_limit_with_the_application(
    tmp_path: Path, redis_url: str
) -> None:
    """With ``--rate-limit`` on the application's Redis, the two processes together
    never put more than ``CALLS`` calls in any window at the emulator, the reconciler's
    own no more than its share; the command says its budget is shared, and no Redis
    key or value holds the token: the token's keys and the reconciler's share, by
    hash only."""
    everything, reconciler, output, token = await _application_and_reconciler(
        tmp_path, redis_url, "--rate-limit", redis_url
    )
    assert max_in_any_window(everything, PERIOD) <= CALLS
    assert max_in_any_window(reconciler, PERIOD) <= int(CALLS * SHARE)
    assert f"({int(CALLS * SHARE)} calls per 1 s, shared through {redis_url})" in output
    tags, dumped = await _stored(redis_url)
    assert tags == _tags(token)  # the application's and the command's token; the share
    for spelling in (token, quote(token), json.dumps(token), base64.b64encode(token.encode())):
        assert (spelling if isinstance(spelling, bytes) else spelling.encode()) not in dumped


async def test_without_the_option_the_command_and_the_application_crowd_a_window(
    tmp_path: Path, redis_url: str
) -> None:
    """What the option prevents: the same command with a limit of its own (the same
    calls and period, in its process) adds its calls to the application's, and some
    window at the emulator holds more than ``CALLS``."""
    everything, reconciler, output, _ = await _application_and_reconciler(tmp_path, redis_url)
    assert max_in_any_window(reconciler, PERIOD) <= int(CALLS * SHARE)
    assert max_in_any_window(everything, PERIOD) > CALLS
    assert "this process's" in output


@pytest.fixture
def router_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A router module importable from the working directory (``listen``, ``work``)."""
    (tmp_path / "limit_handlers.py").write_text(
        "from dokobit_async.routing import Router\nrouter = Router()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "limit_handlers:router"


@pytest.mark.parametrize("given", ["option", "variable"])
@pytest.mark.parametrize("command", ["status", "reconcile", "listen", "work"])
def test_a_rate_limit_redis_that_does_not_answer_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    redis_url: str,
    router_module: str,
    command: str,
    given: str,
) -> None:
    """``--rate-limit`` (or ``$DOKOBIT_RATE_LIMIT``) on a port where nothing listens:
    every command that calls the API stops at start with one error line (exit 1) that
    names the server without the URL's password, and sends nothing."""
    port = free_port()
    url = f"redis://:hunter2-pw@127.0.0.1:{port}/0"
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", "rate-limit-test-token-0123456789")
    monkeypatch.setenv("DOKOBIT_BASE_URL", f"http://127.0.0.1:{free_port()}")
    db = str(tmp_path / "postbacks.db")
    argv = {
        "status": ["status", "SIG"],
        "reconcile": ["reconcile", "--inbox", db, "--once"],
        "listen": ["listen", "--router", router_module, "--inbox", db, "--port", "0"],
        "work": ["work", "--inbox", redis_url, "--router", router_module],
    }[command]
    if given == "option":
        argv += ["--rate-limit", url]
    else:
        monkeypatch.setenv("DOKOBIT_RATE_LIMIT", url)
    code = main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    shown = f"redis://127.0.0.1:{port}/0"
    assert err.startswith(
        f"dokobit-async: error: cannot reach the rate limit's Redis at {shown}: "
    )
    assert len(err.splitlines()) == 1, err
    assert "hunter2" not in err
    assert not (tmp_path / "postbacks.db").exists()  # nothing was opened


async def test_a_password_protected_redis_never_shows_its_password(tmp_path: Path) -> None:
    """A Redis that requires a password: a wrong one is one error line (exit 1)
    without either password; the right one runs ``reconcile`` (its budget shared
    there), and no output holds either password or the token."""
    db = tmp_path / "postbacks.db"
    with running_redis(tmp_path) as server:
        assert server.command("CONFIG", "SET", "requirepass", "right-pw-4711").startswith(b"+OK")
        right = f"redis://:right-pw-4711@127.0.0.1:{server.port}/0"
        wrong = right.replace("right-pw-4711", "wrong-pw-0815")
        async with Emulator(config=EmulatorConfig(time_scale=0.000001)) as emu:
            tracker = SQLiteTracker(db, schedule=NOW_SCHEDULE)
            await completed_signings(emu, tracker, 2)
            env = {"DOKOBIT_ACCESS_TOKEN": emu.access_token, "DOKOBIT_BASE_URL": emu.base_url}
            argv = ("reconcile", "--inbox", str(db), "--once")
            async with child(tmp_path, *argv, "--rate-limit", wrong, **env) as refused:
                assert await asyncio.wait_for(refused.proc.wait(), WAIT) == 1
                await refused.stop()
            async with child(tmp_path, *argv, **env, DOKOBIT_RATE_LIMIT=right) as ran:
                assert await asyncio.wait_for(ran.proc.wait(), WAIT) == 0, ran.output()
                await ran.stop()
            token = emu.access_token
    shown = f"redis://127.0.0.1:{server.port}/0"
    assert refused.out == []
    assert len(refused.err) == 1, refused.err
    assert refused.err[0].startswith(
        f"dokobit-async: error: cannot reach the rate limit's Redis at {shown}: "
    )
    assert f"shared through {shown})" in ran.output()
    assert "looked at 2 tracked signing(s)" in ran.output()
    for output in (refused.output(), ran.output()):
        for hidden in ("pw-4711", "pw-0815", token):
            assert hidden not in output


@pytest.mark.parametrize(
    "options",
    [
        ["--rate-limit", "http://127.0.0.1:6379/0"],
        ["--rate-limit", "127.0.0.1:6379"],
        ["--rate-limit", "redis://127.0.0.1:port/0"],
        ["--rate-limit", "redis:///0"],
        ["--rate-limit-calls", "0"],
        ["--rate-limit-period", "0"],
    ],
)
def test_a_rate_limit_that_is_no_limit_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    """A URL that is not Redis's, a bad port, no host, no calls, no period: exit 2 with
    one line, before anything runs."""
    monkeypatch.setenv("DOKOBIT_ACCESS_TOKEN", "rate-limit-test-token-0123456789")
    assert main(["status", "SIG", *options]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "rate-limit" in err


def _limit(*argv: str) -> RateLimit | None:
    args = build_parser().parse_args(["status", "SIG", "--token-file", "unused", *argv])
    args.token_from_file = "rate-limit-test-token-0123456789"
    client = client_of(args, required=True)
    assert client is not None
    return client.rate_limit


def test_the_limit_is_the_library_default_in_process_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No option, no variable: the client's limit is ``RateLimit()``, as before;
    ``--rate-limit-calls``/``--rate-limit-period`` set it; a Redis URL (the variable,
    or the option over it) makes it a ``RedisRateLimit`` with those numbers, which are
    the application's defaults when not given; ``--rate-limit ''`` turns the variable
    off."""
    assert _limit() == RateLimit()
    assert _limit("--rate-limit-calls", "7", "--rate-limit-period", "2.5") == RateLimit(
        calls=7, period=2.5
    )
    monkeypatch.setenv("DOKOBIT_RATE_LIMIT", "redis://127.0.0.1:1/3")
    shared = _limit()
    assert isinstance(shared, RedisRateLimit)
    assert (shared.redis, shared.calls, shared.period) == ("redis://127.0.0.1:1/3", 100, 60.0)
    assert (shared.calls, shared.period) == (RateLimit().calls, RateLimit().period)
    given = _limit("--rate-limit", "rediss://h:6380/1", "--rate-limit-calls", "7")
    assert isinstance(given, RedisRateLimit)
    assert (given.redis, given.calls, given.period) == ("rediss://h:6380/1", 7, 60.0)
    assert _limit("--rate-limit", "") == RateLimit()


def test_the_command_imports_no_redis_without_a_redis_url() -> None:
    """The extra costs nothing unused: the CLI builds its client with the in-process
    limit and has imported neither redis-py nor ``dokobit_async.redis``."""
    code = (
        "import sys\n"
        "from dokobit_async.cli import build_parser\n"
        "from dokobit_async._cli.access import client_of\n"
        "args = build_parser().parse_args(['status', 'SIG', '--token', 't' * 20])\n"
        "assert client_of(args, required=True) is not None\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.endswith('.redis')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOKOBIT_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_listen_reconcile_spends_the_shared_limit(tmp_path: Path, redis_url: str) -> None:
    """``listen --reconcile --rate-limit URL``: the listener's reconciler asks the
    status through the token's shared limit and its share's, both in that Redis (the
    keys of the token's hash and of the share's), says so, and its handler runs once
    per missed event."""
    (tmp_path / "limited_handlers.py").write_text(
        "from dokobit_async.routing import Router\n"
        "router = Router()\n"
        "@router.on_any\n"
        "async def handle(event):\n"
        f"    with open({str(tmp_path / 'handled.txt')!r}, 'a') as f:\n"
        "        f.write(f'{event.action} {event.token}\\n')\n"
    )
    db = tmp_path / "postbacks.db"
    handled = tmp_path / "handled.txt"
    async with Emulator(config=EmulatorConfig(time_scale=0.000001)) as emu:
        tracker = SQLiteTracker(db, schedule=NOW_SCHEDULE)
        await completed_signings(emu, tracker, 2)
        argv = ["listen", "--router", "limited_handlers:router", "--inbox", str(db)]
        argv += ["--port", "0", "--no-confirm", "--reconcile", "--idle", "0.1"]
        env = {"DOKOBIT_ACCESS_TOKEN": emu.access_token, "DOKOBIT_BASE_URL": emu.base_url}
        async with child(tmp_path, *argv, "--rate-limit", redis_url, **env) as listener:

            async def all_handled() -> bool:
                return handled.exists() and len(handled.read_text().splitlines()) >= 4

            await wait_until(all_handled, timeout=WAIT)
            assert await listener.stop() == 0
        token = emu.access_token
    assert len(handled.read_text().splitlines()) == 4
    assert f"(20 calls per 60 s, shared through {redis_url})" in listener.output()
    tags, _ = await _stored(redis_url)
    assert tags == _tags(token)
