"""Child runs on every substrate: delegation, its policy, cancellation, no orphans."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from durable import (
    DelegationPolicy,
    DurableChildRunFailedError,
    DurableRunCancelledError,
    DurableRunFailedError,
    usage_totals,
)
from tests.conformance import family
from tests.conformance.family import Answer, Ask
from tests.conformance.substrates import Substrate, TemporalSubstrate


@pytest.fixture(autouse=True)
def _fresh_observations() -> None:
    family.OBSERVED.clear()


async def _settled(substrate: Substrate, run_ids: list[str], *, timeout: float = 20) -> list[str]:
    """The runs' states once none is running any more."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        states = [await substrate.status(run_id) for run_id in run_ids]
        if "running" not in states or asyncio.get_running_loop().time() > deadline:
            return states
        await asyncio.sleep(0.05)


async def test_a_child_run_returns_its_typed_result_under_a_derived_id(
    substrate: Substrate, run_id: str
) -> None:
    answer = await substrate.run(family.parent, Ask(n=7), run_id=run_id)

    child = f"{run_id}/family.leaf-0"
    assert answer == Answer(n=49, by=child)
    (step,) = await substrate.steps(run_id)
    assert (step.kind, step.intent, step.status) == ("agent", "agent:family.leaf", "completed")
    assert step.result["run_id"] == child
    assert await substrate.children(run_id) == [child]
    assert await substrate.status(child) == "completed"


async def test_a_child_named_by_string_with_its_own_run_id(
    substrate: Substrate, run_id: str
) -> None:
    answer = await substrate.run(family.by_name, Ask(n=3), run_id=run_id)

    assert answer == Answer(n=9, by=f"{run_id}-helper")
    assert await substrate.children(run_id) == [f"{run_id}-helper"]


async def test_parallel_children_each_run_once(
    substrate: Substrate, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "marks"
    answers = await substrate.run(family.fan_out, Ask(path=str(path)), run_id=run_id)

    assert [a.n for a in answers] == [1, 4, 9]
    assert [a.by for a in answers] == [f"{run_id}/family.leaf-{i}" for i in range(3)]
    assert sorted(path.read_text().split()) == ["leaf-1", "leaf-2", "leaf-3"]
    assert len(await substrate.children(run_id)) == 3


async def test_a_crash_mid_child_resumes_the_child_with_its_parent(
    substrate: Substrate, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "marks"
    job = Ask(n=1, path=str(path))
    child = f"{run_id}/family.waiting_leaf-0"
    await substrate.start(family.waiting_parent, job, run_id=run_id)
    await substrate.wait_for_step(child, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(family.waiting_parent, job, run_id=run_id)
    assert await substrate.send_event(child, "go", 5)
    answer = await substrate.result(run_id)

    assert answer == Answer(n=5, by=child)
    assert path.read_text().split() == ["before-1"]  # the child's step ran once
    # Run again, the completed parent replays the child's result without running it.
    await substrate.start(family.waiting_parent, job, run_id=run_id)
    assert await substrate.result(run_id) == answer
    assert path.read_text().split() == ["before-1"]


async def test_every_delegation_refusal_in_the_reference_order(
    substrate: Substrate, run_id: str
) -> None:
    reasons = await substrate.run(family.refusals, Ask(), run_id=run_id)

    assert reasons == [
        "agent_not_allowed",  # spends nothing: the next two calls still fit max_calls=2
        "max_parallel_child_agent_calls_exceeded",
        "allowed",
        "max_child_agent_calls_exceeded",
    ]
    assert len(await substrate.children(run_id)) == 2


async def test_delegation_is_refused_without_a_policy(substrate: Substrate, run_id: str) -> None:
    assert await substrate.run(family.undelegated, Ask(), run_id=run_id) == "delegation_disabled"
    assert await substrate.children(run_id) == []


async def test_a_policy_passed_per_run_replaces_the_agents(
    substrate: Substrate, run_id: str
) -> None:
    allowed = await substrate.run(
        family.undelegated, Ask(), run_id=run_id, delegation=DelegationPolicy()
    )
    assert allowed == "allowed"
    assert await substrate.children(run_id) == [f"{run_id}/family.leaf-0"]


async def test_the_first_failing_check_names_the_refusal(substrate: Substrate, run_id: str) -> None:
    reason = await substrate.run(family.first_check_wins, Ask(), run_id=run_id)
    assert reason == "agent_not_allowed"


async def test_the_depth_travels_with_the_child(substrate: Substrate, run_id: str) -> None:
    # The root allows depth 1; its child's own policy allowing 5 does not lift that.
    reason = await substrate.run(family.deep_parent, Ask(), run_id=run_id)
    assert reason == "max_delegation_depth_exceeded"


async def test_a_childs_failure_reaches_the_parent_with_its_code_and_run_id(
    substrate: Substrate, run_id: str
) -> None:
    seen = await substrate.run(family.catching, Ask(n=1), run_id=run_id)

    assert seen == [
        {
            "child": f"{run_id}/family.failing_leaf-0",
            "type": "ValueError",
            "code": None,
            "parent_code": "child_failed",
        },
        {
            "child": f"{run_id}/family.impatient_leaf-1",
            "type": "DurableAwaitEventTimeoutError",
            "code": "await_event_timeout",
            "parent_code": "child_failed",
        },
    ]


async def test_an_uncaught_child_failure_fails_the_parent(
    substrate: Substrate, run_id: str
) -> None:
    with pytest.raises((DurableChildRunFailedError, DurableRunFailedError)) as raised:
        await substrate.run(family.uncaught, Ask(n=2), run_id=run_id)

    assert "leaf 2 cannot answer" in str(raised.value)
    assert await substrate.status(run_id) == "failed"


async def test_a_childs_usage_counts_toward_the_parent(substrate: Substrate, run_id: str) -> None:
    await substrate.run(family.paying, Ask(), run_id=run_id)

    totals = usage_totals(await substrate.steps(run_id))
    # Its own call (n=1) and its two children's (n=2, n=3).
    assert totals == {"input_tokens": 60, "output_tokens": 6, "cost": pytest.approx(3.0)}
    if isinstance(substrate, TemporalSubstrate):
        assert await substrate.client.usage(run_id) == totals


async def test_cancel_with_children_in_flight_leaves_no_orphan(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(family.hold_two, Ask(), run_id=run_id)
    children = [f"{run_id}/family.waiting_leaf-{i}" for i in range(2)]
    for child in children:
        await substrate.wait_for_step(child, "await_event:go")

    assert await substrate.cancel(run_id, "the operator said stop") in ("requested", "cancelled")
    with pytest.raises(DurableRunCancelledError, match="the operator said stop"):
        await substrate.result(run_id)

    assert await substrate.children(run_id) == children
    assert await _settled(substrate, [run_id, *children]) == ["cancelled"] * 3
    # A cancelled run starts no child runs: refused before the policy is consulted
    # (seen once per replay of the workflow on Temporal, whose worker keeps no cache).
    assert set(family.OBSERVED) == {("refused after cancel", "cancelled")}
    # Cancelling it again is no error: it has already ended.
    assert await substrate.cancel(run_id, "again") == "already_ended"


async def test_a_parent_that_finishes_cancels_its_children_first(
    substrate: Substrate, run_id: str
) -> None:
    assert await substrate.run(family.leave_behind, Ask(), run_id=run_id) == "done"

    children = await substrate.children(run_id)
    assert len(children) == 2
    assert await _settled(substrate, children) == ["cancelled", "cancelled"]


async def test_a_parent_that_fails_cancels_its_children_first(
    substrate: Substrate, run_id: str
) -> None:
    with pytest.raises((DurableRunFailedError, RuntimeError), match="the parent gave up"):
        await substrate.run(family.fail_behind, Ask(), run_id=run_id)

    (child,) = await substrate.children(run_id)
    assert await _settled(substrate, [child]) == ["cancelled"]


async def test_a_step_in_flight_gets_the_cancellation(
    substrate: Substrate, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "linger"
    await substrate.start(family.lingering, Ask(path=str(path)), run_id=run_id)
    for _ in range(400):
        if path.exists():
            break
        await asyncio.sleep(0.02)

    await substrate.cancel(run_id, "no more waiting")

    with pytest.raises(DurableRunCancelledError, match="no more waiting"):
        await substrate.result(run_id)
    for _ in range(400):  # on Temporal the activity learns it at its next heartbeat
        if path.read_text().split() == ["started", "cancelled"]:
            break
        await asyncio.sleep(0.02)
    assert path.read_text().split() == ["started", "cancelled"]


async def test_cancelling_a_child_fails_its_parents_call(substrate: Substrate, run_id: str) -> None:
    child = f"{run_id}/family.waiting_leaf-0"
    await substrate.start(family.waiting_parent, Ask(n=1), run_id=run_id)
    await substrate.wait_for_step(child, "await_event:go")

    await substrate.cancel(child, "not needed")

    with pytest.raises(DurableChildRunFailedError, match="was cancelled") as raised:
        await substrate.result(run_id)
    assert (raised.value.child_run_id, raised.value.error_code) == (child, "cancelled")
    assert await _settled(substrate, [child, run_id]) == ["cancelled", "failed"]


async def test_a_failed_child_runs_again_under_its_retry_policy(
    substrate: Substrate, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "tries"
    answer = await substrate.run(family.retrying_parent, Ask(path=str(path)), run_id=run_id)

    assert answer.n == 3
    assert path.read_text().split() == ["try"] * 3


async def test_a_child_past_its_timeout_fails_the_call(substrate: Substrate, run_id: str) -> None:
    assert await substrate.run(family.timing_parent, Ask(), run_id=run_id) == "step_timeout"


async def test_a_child_its_parent_stopped_awaiting_is_cancelled(
    substrate: Substrate, run_id: str
) -> None:
    assert await substrate.run(family.impatient_parent, Ask(), run_id=run_id) == "gave up"

    (child,) = await substrate.children(run_id)
    assert await _settled(substrate, [child]) == ["cancelled"]


@pytest.mark.local_only(reason="local runs watch for their cancellation, each on its own")
async def test_a_cancel_seen_first_by_the_child_still_cancels_the_parent(
    substrate: Substrate, run_id: str
) -> None:
    # The child is asked first; whichever watcher sees its request first, the parent
    # ends cancelled, never failed with its child's cancellation.
    for n in range(5):
        parent = f"{run_id}-{n}"
        await substrate.start(family.late_parent, Ask(n=n), run_id=parent)
        await substrate.wait_for_step(f"{parent}/family.waiting_leaf-1", "await_event:go")
        await substrate.cancel(parent, "stop")
        with pytest.raises(DurableRunCancelledError):
            await substrate.result(parent)
        assert await substrate.status(parent) == "cancelled"


async def test_a_parent_failing_mid_tree_leaves_no_grandchild_running(
    substrate: Substrate, run_id: str
) -> None:
    middle, approver = f"{run_id}/family.middle-0", f"{run_id}/family.waiting_leaf-1"
    grandchild = f"{middle}/family.waiting_leaf-0"
    await substrate.start(family.boss, Ask(), run_id=run_id)
    await substrate.wait_for_step(grandchild, "await_event:go")
    await substrate.wait_for_step(approver, "await_event:go")

    await substrate.cancel(approver, "not needed")  # the boss's await fails: it fails

    with pytest.raises(DurableChildRunFailedError):
        await substrate.result(run_id)
    settled = await _settled(substrate, [run_id, approver, middle, grandchild])
    assert settled == ["failed", "cancelled", "cancelled", "cancelled"]


async def test_a_run_id_naming_another_runs_run_is_refused(
    substrate: Substrate, run_id: str
) -> None:
    other = f"{run_id}-other"
    await substrate.run(family.parent, Ask(n=2), run_id=other)

    said = await substrate.run(family.squatter, family.Named(run_id=other), run_id=run_id)

    assert said == (
        f"run {other!r} already exists and is not a child of run {run_id!r}; "
        "pass call_agent another run_id, or none to derive one"
    )
    (step,) = await substrate.steps(run_id)
    assert (step.kind, step.status) == ("agent", "failed")
    assert await substrate.status(other) == "completed"  # left as it was
