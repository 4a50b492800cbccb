"""Reliability under load: injected faults, the server's rate limit, retries, writes.

One scenario runs once per module against an emulator that injects faults into 20 % of
API requests (429 with and without ``Retry-After``, 500, 502, 503, connections dropped
before and after the request takes effect) and enforces its own rate limit, through one
client whose ``RateLimit`` is the server's own, with no headroom: the client counts a
request until it has been answered, so no jitter between its decision and the arrival
can make the server refuse one:

1. a batch of creates, each with a unique ``name``, so every executed create can be
   traced back to the one call that sent it;
2. several hundred idempotent calls (status, download, update) on the signings made.

The tests below each pin one property of that run. A smaller table-driven test pins
what one fault does to a single create.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
import pytest_asyncio
from _emulator_thread import EmulatorThread

from dokobit_async import (
    CreatedSigning,
    DokobitClient,
    DokobitError,
    ExternalSigner,
    OutcomeUnknownError,
    RateLimit,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    SigningFile,
    SigningStatus,
)
from dokobit_async.ratelimit import SharedLimiter
from dokobit_async.testing import (
    Emulator,
    EmulatorConfig,
    FaultKind,
    Faults,
    RequestRecord,
    make_pdf,
)

SERVER_LIMIT = (50, 1.0)
LIMIT = RateLimit(calls=50, period=1.0)
CALLS = 300
CREATES = 40
BUDGET = 60.0  # seconds: an upper bound on each phase, never reached when healthy
FAULT_KINDS = (
    FaultKind.RATE_LIMITED,
    FaultKind.RATE_LIMITED_BARE,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.UNAVAILABLE,
    FaultKind.DROP_BEFORE,
    FaultKind.DROP_AFTER,
)
FAULTS = Faults(rate=0.2, seed=1234, weights=dict.fromkeys(FAULT_KINDS, 1.0), retry_after=1)
POLICY = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.2, deadline=30)
CREATE_OP = "signing-external/create"
PDF = make_pdf(["Reliability"])
DEADLINE = datetime(2031, 1, 1, tzinfo=timezone.utc)


def client_for(emu: Emulator, policy: RetryPolicy = POLICY) -> DokobitClient:
    """A client for ``emu`` with the emulator's rate limit."""
    return DokobitClient(emu.access_token, base_url=emu.base_url, rate_limit=LIMIT, retry=policy)


def create_signing(client: DokobitClient, name: str) -> Awaitable[CreatedSigning]:
    """One external PDF signing named ``name``."""
    return client.external.create(
        name=name,
        type="pdf",
        files=[SigningFile.from_bytes(PDF, name="doc.pdf")],
        signers=[ExternalSigner(external_id="s", email="s@example.com")],
    )


def idempotent_call(client: DokobitClient, tokens: Sequence[str], i: int) -> Awaitable[Any]:
    """Call number ``i`` of the mix: status, download or update, round robin."""
    token = tokens[i % len(tokens)]
    kind = i % 3
    if kind == 0:
        return client.external.status(token)
    if kind == 1:
        return client.external.download(token)
    return client.external.update(token, deadline=DEADLINE + timedelta(minutes=i))


def max_in_window(records: Sequence[RequestRecord] | Sequence[float], period: float) -> int:
    """The most requests (records or start times) within any window of ``period``."""
    times = sorted(r if isinstance(r, float) else r.time.timestamp() for r in records)
    most = first = 0
    for last, moment in enumerate(times):
        while times[first] <= moment - period:
            first += 1
        most = max(most, last - first + 1)
    return most


def answered_ok(record: RequestRecord) -> bool:
    """The request was answered with a 2xx (not dropped, not a fault)."""
    return record.fault is None and record.status is not None and record.status < 300


@attrs.frozen(kw_only=True)
class Run:
    """Everything the scenario observed."""

    creates: dict[str, object]
    """Create outcome (CreatedSigning or the exception) by signing name."""
    executed: Counter[str]
    """Signings the emulator holds, counted by name."""
    tokens_by_name: dict[str, list[str]]
    mix: list[object]
    """Outcome of each idempotent call."""
    create_requests: list[RequestRecord]
    mix_requests: list[RequestRecord]
    requests: list[RequestRecord]
    mix_seconds: float
    grants: list[float]
    """When the client's rate limiter admitted each request (loop time)."""


async def run_scenario() -> Run:
    """The creates batch, then the idempotent mix, under faults and the rate limit."""
    config = EmulatorConfig(rate_limit=SERVER_LIMIT, faults=FAULTS)
    # the emulator serves from its own thread and loop, so that what it records as a
    # request's arrival is not delayed by the client's work in this loop
    grants: list[float] = []
    original = SharedLimiter._admit

    def counted(self: SharedLimiter, now: float) -> None:  # stands in for _admit
        original(self, now)
        grants.append(now)  # the admission as the limiter counted it

    SharedLimiter._admit = counted  # type: ignore[method-assign]
    try:
        with EmulatorThread(config) as server:
            return await _scenario(server.emulator, grants)
    finally:
        SharedLimiter._admit = original  # type: ignore[method-assign]


async def _scenario(emu: Emulator, grants: list[float]) -> Run:
    async with client_for(emu) as client:
        names = [f"reliability-{i:03d}" for i in range(CREATES)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(create_signing(client, n) for n in names), return_exceptions=True),
            BUDGET,
        )
        creates: dict[str, object] = dict(zip(names, outcomes, strict=True))
        after_creates = len(emu.requests)
        tokens = [r.token for r in outcomes if isinstance(r, CreatedSigning)]
        assert tokens, "no create succeeded, so there is nothing to run the mix on"

        started = time.monotonic()
        mix = await asyncio.wait_for(
            asyncio.gather(
                *(idempotent_call(client, tokens, i) for i in range(CALLS)),
                return_exceptions=True,
            ),
            BUDGET,
        )
        mix_seconds = time.monotonic() - started
        requests = list(emu.requests)
        by_name: dict[str, list[str]] = {}
        for signing in emu.signings.values():
            by_name.setdefault(signing.name, []).append(signing.token)
        return Run(
            creates=creates,
            executed=Counter({name: len(t) for name, t in by_name.items()}),
            tokens_by_name=by_name,
            mix=list(mix),
            create_requests=[r for r in requests[:after_creates] if r.operation == CREATE_OP],
            mix_requests=requests[after_creates:],
            requests=requests,
            mix_seconds=mix_seconds,
            grants=grants,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run() -> Run:
    """The scenario, run once for the module."""
    return await run_scenario()


def figures(run: Run) -> dict[str, Any]:
    """The headline numbers of a run (for reports; the tests assert on them)."""
    creates = Counter(
        "succeeded" if isinstance(o, CreatedSigning) else type(o).__name__
        for o in run.creates.values()
    )
    return {
        "calls": CALLS,
        "mix_requests": len(run.mix_requests),
        "retries": len(run.mix_requests) - CALLS,
        "faults": Counter(r.fault for r in run.requests if r.fault),
        "server_rate_limited": sum(1 for r in run.requests if not r.fault and r.status == 429),
        "client_max_in_window": max_in_window(run.grants, LIMIT.period),
        "server_max_in_window": max_in_window(run.requests, LIMIT.period),
        "limit": LIMIT.calls,
        "mix_seconds": round(run.mix_seconds, 2),
        "creates": dict(creates),
        "duplicated": sum(1 for n in run.executed.values() if n > 1),
        "mix_failures": Counter(type(o).__name__ for o in run.mix if isinstance(o, BaseException)),
    }


# ------------------------------------------------------------------ idempotent mix


def test_every_idempotent_call_succeeds_despite_twenty_percent_faults(run: Run) -> None:
    """All CALLS status/download/update calls succeed: 429s, 5xx answers and dropped
    connections on idempotent calls are retried until they get through."""
    failures = Counter(
        (type(o).__name__, getattr(o, "status", None))
        for o in run.mix
        if isinstance(o, BaseException)
    )
    assert failures == Counter()
    for i, outcome in enumerate(run.mix):
        if i % 3 == 0:
            assert isinstance(outcome, SigningStatus)
            assert outcome.status == "pending"
        elif i % 3 == 1:
            assert isinstance(outcome, bytes)
            assert outcome.startswith(b"%PDF-")


def test_each_successful_call_was_answered_exactly_once(run: Run) -> None:
    """No call is sent again after it got its answer: the emulator answered exactly
    one 2xx per successful call, and every other request was a fault, a drop or a
    429 (so retries = requests sent - calls)."""
    succeeded = sum(1 for o in run.mix if not isinstance(o, BaseException))
    assert sum(1 for r in run.mix_requests if answered_ok(r)) == succeeded
    retried = [r for r in run.mix_requests if not answered_ok(r)]
    assert all(r.fault or r.status == 429 for r in retried)


def test_every_fault_kind_was_injected(run: Run) -> None:
    """The run exercised each configured fault kind, at roughly the configured rate."""
    injected = figures(run)["faults"]
    assert set(injected) == {k.value for k in FAULT_KINDS}
    assert 0.1 < sum(injected.values()) / len(run.requests) < 0.3


def test_the_client_never_starts_more_than_its_rate_in_any_window(run: Run) -> None:
    """Every request the emulator saw went through the client's limiter (no hidden
    resend), and the limiter never let more than ``calls`` start in any window."""
    assert len(run.grants) == len(run.requests)
    assert max_in_window(run.grants, LIMIT.period) <= LIMIT.calls


def test_the_server_never_refuses_a_call_for_its_own_rate_limit(run: Run) -> None:
    """With the client's limit equal to the server's, the server never sees more than
    ``calls`` requests in a window, so its own limit answers no 429 (the 429s of the
    run are injected faults)."""
    assert figures(run)["server_rate_limited"] == 0
    assert max_in_window(run.requests, LIMIT.period) <= LIMIT.calls


# ------------------------------------------------------------------ creates


def test_no_create_is_executed_twice_under_faults(run: Run) -> None:
    """Each create call executed at most once: a success exactly once (its own token),
    a 5xx never, an unknown outcome (dropped connection) at most once."""
    assert all(n == 1 for n in run.executed.values())
    for name, outcome in run.creates.items():
        executed = run.tokens_by_name.get(name, [])
        if isinstance(outcome, CreatedSigning):
            assert executed == [outcome.token]
        elif isinstance(outcome, ServerError):
            assert executed == []
        else:
            assert isinstance(outcome, OutcomeUnknownError), repr(outcome)
            assert len(executed) <= 1


def test_creates_are_resent_only_after_a_429(run: Run) -> None:
    """A create is sent again only when the server refused it with 429 (nothing
    happened); after a 5xx or a dropped connection it is never resent."""
    rate_limited = sum(1 for r in run.create_requests if r.status == 429)
    assert len(run.create_requests) == CREATES + rate_limited
    assert not any(isinstance(o, RateLimitedError) for o in run.creates.values())
    assert any(isinstance(o, CreatedSigning) for o in run.creates.values())


# (fault on every create, error raised, create requests sent, creates executed)
SINGLE_CREATE_FAULTS = [
    pytest.param(FaultKind.SERVER_ERROR, ServerError, 1, 0, id="500-not-retried"),
    # a gateway may have passed the create on: its outcome is unknown, never resent
    pytest.param(FaultKind.BAD_GATEWAY, OutcomeUnknownError, 1, 0, id="502-outcome-unknown"),
    pytest.param(FaultKind.UNAVAILABLE, ServerError, 1, 0, id="503-not-retried"),
    pytest.param(FaultKind.DROP_BEFORE, OutcomeUnknownError, 1, 0, id="drop-before"),
    pytest.param(FaultKind.DROP_AFTER, OutcomeUnknownError, 1, 1, id="drop-after"),
    pytest.param(FaultKind.RATE_LIMITED_BARE, RateLimitedError, 3, 0, id="429-retried"),
]


@pytest.mark.parametrize(("kind", "error", "sent", "executed"), SINGLE_CREATE_FAULTS)
async def test_one_create_under_a_persistent_fault(
    kind: FaultKind, error: type[DokobitError], sent: int, executed: int
) -> None:
    """With every create answered by one fault kind, a create raises the matching
    error after the expected number of sends, and is executed at most once: only a
    429 (a refusal with no effect) is retried."""
    # mypy's attrs plugin types ``operations`` (converter optional(frozenset)) as
    # Iterable[_T_co] with the type variable unbound, which no set of str fits
    faults = Faults(rate=1.0, weights={kind: 1.0}, operations={CREATE_OP})
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, deadline=5)
    async with Emulator(config=EmulatorConfig(faults=faults)) as emu:
        async with client_for(emu, policy) as client:
            with pytest.raises(error) as info:
                await asyncio.wait_for(create_signing(client, "single"), BUDGET)
        assert emu.access_token not in str(info.value)
        assert [r.fault for r in emu.requests] == [kind.value] * sent
        assert len(emu.signings) == executed
