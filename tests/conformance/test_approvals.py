"""Approvals on every substrate: approve, edit, reject, timeout, and deciding from outside."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from durable import DurableApprovalNotFoundError, DurableEventPayloadError
from tests.conformance import approval_agents as agents
from tests.conformance.approval_agents import Ask
from tests.conformance.substrates import Substrate


def _by(outcome: dict[str, object], **expected: object) -> None:
    for key, value in expected.items():
        assert outcome[key] == value, (key, outcome)


async def test_approve_lists_the_request_records_the_decision_and_streams_both(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(amount=25), run_id=run_id)

    pending = await substrate.pending(run_id)
    assert pending.approval_id == f"{run_id}:approval-0"
    assert (pending.agent, pending.action, pending.tool) == (
        "approvals.refund",
        "issue_refund",
        "payments.refund",
    )
    assert pending.summary == "refund 25 on order A-1"
    assert pending.deadline is None  # asked without a timeout
    assert pending.input == {"order": "A-1", "amount": 25}
    assert pending.input_schema is not None
    assert "amount" in pending.input_schema["properties"]
    assert await substrate.state(run_id) == "waiting_for_approval"

    outcome = await substrate.decide(run_id, "approve", decided_by="ana", reason="looks right")
    assert (outcome.status, outcome.approval_id) == ("decided", pending.approval_id)

    result = await substrate.result(run_id)
    _by(result, decision="approve", approved=True, typed=True, decided_by="ana")
    assert result["input"] == {"order": "A-1", "amount": 25}
    assert await substrate.state(run_id) == "completed"
    request, wait = await substrate.steps(run_id)
    assert (request.kind, request.intent) == ("approval", "approval:issue_refund")
    assert request.result["approval_id"] == pending.approval_id
    assert (wait.kind, wait.intent, wait.status) == ("event", "await_event:approval:0", "completed")
    assert wait.result["decided_by"] == "ana"
    assert wait.result["reason"] == "looks right"
    assert wait.result["decided_at"]
    kinds = [e.kind for e in await substrate.watch(run_id)]
    assert kinds.index("approval_requested") < kinds.index("approval_resolved")


async def test_a_bad_edit_is_refused_and_a_good_one_reaches_the_run_typed(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(amount=25, timeout=600), run_id=run_id)
    pending = await substrate.pending(run_id)
    assert pending.requested_at is not None
    assert pending.deadline is not None
    assert 590 <= (pending.deadline - pending.requested_at).total_seconds() <= 601

    with pytest.raises(DurableEventPayloadError, match=r"\$\.amount: -5 is less than"):
        await substrate.decide(pending.approval_id, "edit", input={"order": "A-1", "amount": -5})
    assert await substrate.state(run_id) == "waiting_for_approval"  # unharmed, still asking

    edited = await substrate.decide(
        pending.approval_id, "edit", input={"order": "A-1", "amount": 20}, reason="partial"
    )
    assert edited.status == "decided"
    result = await substrate.result(run_id)
    _by(result, decision="edit", approved=True, typed=True, reason="partial")
    assert result["input"] == {"order": "A-1", "amount": 20}


async def test_reject_needs_a_reason_and_reaches_the_run(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.refund, Ask(), run_id=run_id)
    await substrate.pending(run_id)

    with pytest.raises(ValueError, match="a rejection needs a reason"):
        await substrate.decide(run_id, "reject")
    await substrate.decide(run_id, "reject", decided_by="bo", reason="order was fine")

    result = await substrate.result(run_id)
    _by(result, decision="reject", approved=False, input=None, decided_by="bo")
    assert result["reason"] == "order was fine"


async def test_no_decision_in_time_is_the_on_timeout_decision(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(timeout=0.5), run_id=run_id)

    result = await substrate.result(run_id)
    _by(result, decision="reject", approved=False, decided_by="timeout", decided=False)
    assert result["reason"] == "no decision within 0.5s"
    wait = (await substrate.steps(run_id))[1]
    assert (wait.status, wait.error and wait.error.code) == ("failed", "await_event_timeout")
    late = await substrate.decide(f"{run_id}:approval-0", "approve")
    assert late.status == "already_decided"
    assert (late.decision["decision"], late.decision["decided_by"]) == ("reject", "timeout")


async def test_a_decision_sent_before_the_run_asks_is_kept(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.after_go, Ask(), run_id=run_id)
    early = f"{run_id}:approval-1"

    with pytest.raises(DurableEventPayloadError, match="has not been requested yet"):
        await substrate.decide(early, "edit", input={"order": "A-1", "amount": 1})
    outcome = await substrate.decide(early, "approve", decided_by="early")
    assert outcome.status == "decided"
    await substrate.send_event(run_id, "go", None)

    result = await substrate.result(run_id)
    _by(result, decision="approve", decided_by="early", typed=True)


async def test_a_decision_sent_while_no_worker_runs_is_applied_when_one_starts(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(), run_id=run_id)
    pending = await substrate.pending(run_id)
    await substrate.crash(run_id)

    outcome = await substrate.decide(pending.approval_id, "approve", decided_by="night shift")
    assert outcome.status == ("decided" if substrate.local else "delivered")
    await substrate.resume(agents.refund, Ask(), run_id=run_id)

    result = await substrate.result(run_id)
    _by(result, decision="approve", decided_by="night shift")


async def test_a_repeated_decision_answers_already_decided_with_the_first(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(), run_id=run_id)
    pending = await substrate.pending(run_id)

    await substrate.decide(pending.approval_id, "reject", decided_by="ana", reason="no")
    again = await substrate.decide(pending.approval_id, "approve", decided_by="bo")

    assert again.status == "already_decided"
    assert (again.decision["decision"], again.decision["decided_by"]) == ("reject", "ana")
    _by(await substrate.result(run_id), decision="reject")
    after_the_end = await substrate.decide(pending.approval_id, "approve", decided_by="cy")
    assert after_the_end.status == "already_decided"
    by_run = await substrate.decide(run_id, "approve", decided_by="dee")  # a retried caller
    assert (by_run.status, by_run.decision["decided_by"]) == ("already_decided", "ana")


async def test_a_malformed_decision_sent_as_a_plain_event_is_refused_and_harms_nothing(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.refund, Ask(), run_id=run_id)
    await substrate.pending(run_id)

    with pytest.raises(DurableEventPayloadError, match="carries the decision of an approval"):
        await substrate.send_event(run_id, "approval:0", {"bogus": 1})
    assert await substrate.state(run_id) == "waiting_for_approval"
    await substrate.decide(run_id, "approve")
    _by(await substrate.result(run_id), decision="approve")


async def test_pending_approvals_are_listed_across_runs_with_their_requests(
    substrate: Substrate, run_id: str
) -> None:
    first, second, other = f"{run_id}-a", f"{run_id}-b", f"{run_id}-c"
    await substrate.start(agents.refund, Ask(amount=1), run_id=first)
    await substrate.start(agents.refund, Ask(amount=2), run_id=second)
    await substrate.start(agents.plain, Ask(), run_id=other)
    for run in (first, second, other):
        await substrate.pending(run)

    refunds = await substrate.approvals(agent="approvals.refund")
    mine = sorted((p.run_id, p.input["amount"]) for p in refunds if p.run_id.startswith(run_id))
    assert mine == [(first, 1), (second, 2)]

    await substrate.decide(first, "approve")
    await substrate.result(first)
    for _ in range(100):
        listed = {p.run_id for p in await substrate.approvals()} & {first, second, other}
        if listed == {second, other}:
            break
        await asyncio.sleep(0.1)
    assert listed == {second, other}
    await substrate.decide(other, "edit", input={"anything": ["goes"]})
    _by(await substrate.result(other), decision="edit", input={"anything": ["goes"]})


async def test_an_unknown_approval_is_not_found(substrate: Substrate, run_id: str) -> None:
    with pytest.raises(DurableApprovalNotFoundError, match="no approval or run"):
        await substrate.decide(f"{run_id}-missing", "approve")
    with pytest.raises(DurableApprovalNotFoundError, match="there is no run"):
        await substrate.decide(f"{run_id}-missing:approval-0", "approve")
    await substrate.start(agents.after_go, Ask(), run_id=run_id)
    with pytest.raises(DurableApprovalNotFoundError, match="has asked for no approval yet"):
        await substrate.decide(run_id, "approve")
    await substrate.send_event(run_id, "go", None)
    await substrate.pending(run_id)
    with pytest.raises(DurableApprovalNotFoundError, match="holds a step of kind 'event'"):
        await substrate.decide(f"{run_id}:approval-0", "approve")
    await substrate.decide(run_id, "approve")
    await substrate.result(run_id)


async def _until(check: Callable[[], Awaitable[bool]], *, timeout: float = 20) -> None:
    """Visibility on Temporal lags a little behind the run: ask again until it agrees."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the run never got there"
        await asyncio.sleep(0.1)


async def test_run_states_say_what_a_run_waits_for_and_list_filters_by_them(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.after_go, Ask(), run_id=run_id)

    async def state_is(state: str) -> bool:
        return await substrate.state(run_id) == state and run_id in await substrate.runs(state)

    await _until(lambda: state_is("waiting"))
    assert run_id not in await substrate.runs("waiting_for_approval")
    await substrate.send_event(run_id, "go", None)
    await _until(lambda: state_is("waiting_for_approval"))
    assert run_id not in await substrate.runs("waiting")
    await substrate.decide(run_id, "approve")
    await substrate.result(run_id)
    await _until(lambda: state_is("completed"))
    assert run_id not in await substrate.runs("running")
