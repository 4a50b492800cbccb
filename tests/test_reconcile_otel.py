"""The reconciler's telemetry: one span per look, with its status call inside it."""

from __future__ import annotations

from _otel import context_of, leaks, recording
from test_reconcile import NOW_SCHEDULE, client_for, create, dead_url, sign_all

from dokobit_async import MemoryInbox, MemoryTracker, Reconciler
from dokobit_async.testing import Emulator


async def test_each_look_is_one_span_with_its_status_call_inside() -> None:
    """A look at a completed signing whose postbacks were lost is one root span
    ``dokobit reconcile poll``: outcome ``final``, two missed postbacks stored, its
    signing token; the status call's span is its child; a pending signing's look says
    ``unchanged``. Neither the access token nor any of its spellings is recorded."""
    tracker = MemoryTracker(NOW_SCHEDULE)
    async with Emulator() as emu, client_for(emu, tracker) as client, MemoryInbox() as inbox:
        done = await create(client, dead_url(), people=1)
        pending = await create(client, dead_url(), people=1)
        await sign_all(emu, done)
        with recording() as recorded:
            reconciler = Reconciler(client, inbox, tracker)
            assert await reconciler.poll_due() == 2
            await reconciler.aclose()
        token = emu.access_token
    polls = {
        span.attributes["dokobit.signing.token"]: span
        for span in recorded.named("dokobit reconcile poll")
        if span.attributes is not None
    }
    assert set(polls) == {done.token, pending.token}
    looked = polls[done.token].attributes
    assert looked is not None
    assert looked["dokobit.reconcile.outcome"] == "final"
    assert looked["dokobit.reconcile.missed"] == 2
    assert polls[done.token].parent is None
    unchanged = polls[pending.token].attributes
    assert unchanged is not None
    assert unchanged["dokobit.reconcile.outcome"] == "unchanged"
    status_calls = recorded.named("dokobit external.status")
    assert len(status_calls) == 2
    parents = {span.parent.span_id for span in status_calls if span.parent is not None}
    assert parents == {context_of(span).span_id for span in polls.values()}
    assert leaks(recorded.spans(), recorded.metrics(), [token]) == []
