"""Approvals of local runs, listed and decided from outside them."""

from __future__ import annotations

from typing import Any

from durable import DurableApprovalNotFoundError, check_name
from durable._approvals import (
    DecisionOutcome,
    PendingApproval,
    approval_id,
    approval_key,
    parse_approval_id,
    pick_for_run,
    timeout_decision,
)
from durable_agents.adapters.approvals import decision_for, pending_in

from ._store import DurableRunStore, run_ended

__all__ = ["decide_approval", "pending_approvals"]


async def pending_approvals(
    store: DurableRunStore, *, agent: str | None = None, limit: int = 1000
) -> list[PendingApproval]:
    """Every approval a run in ``store`` waits for (of ``agent``'s runs only, if given).

    A decision already sent, and waiting for a worker to apply it, takes its
    approval off the list.
    """
    found: list[PendingApproval] = []
    for run in await store.list_runs(status="waiting_for_approval", limit=limit):
        if agent is not None and run.agent != agent:
            continue
        for pending in pending_in(run.run_id, run.agent, await store.load_steps(run.run_id)):
            _, position = parse_approval_id(pending.approval_id)
            if await store.load_event(run.run_id, approval_key(position)) is None:
                found.append(pending)
    return found


async def decide_approval(
    store: DurableRunStore,
    target: str,
    decision: str,
    *,
    decided_by: str,
    input: Any = None,
    reason: str | None = None,
) -> DecisionOutcome:
    """Approve, edit or reject the approval ``target`` (its id, or a run waiting for one).

    The first decision of an approval is its decision: a later one changes
    nothing and answers ``already_decided`` with the first. A decision sent
    before the run asks, or while no worker runs it, is kept and applied when
    the run gets there. A bad edit is refused and the run keeps waiting.
    """
    run_id, position = await _resolve(store, check_name(target, what="approval id"))
    identity = approval_id(run_id, position)
    run = await store.load_run(run_id)
    if run is None:
        raise DurableApprovalNotFoundError(
            f"no approval {identity!r}: there is no run {run_id!r} in this store"
        )
    steps = {step.step_index: step for step in await store.load_steps(run_id)}
    request = steps.get(position)
    if request is not None and request.kind != "approval":
        raise DurableApprovalNotFoundError(
            f"no approval {identity!r}: position {position} of run {run_id!r} holds a "
            f"step of kind {request.kind!r} ({request.intent}); "
            "list approvals with `durable approvals`"
        )
    key = approval_key(position)
    first = await store.load_event(run_id, key)
    if first is not None:
        return DecisionOutcome(
            approval_id=identity, run_id=run_id, status="already_decided", decision=first.payload
        )
    wait = steps.get(position + 1)
    if request is not None and wait is not None and wait.status == "failed":
        return DecisionOutcome(
            approval_id=identity,
            run_id=run_id,
            status="already_decided",
            decision=timeout_decision(request.result),
        )
    if not run.active:
        raise run_ended(run_id)
    pending = request.result if request is not None and request.status == "completed" else None
    message = decision_for(
        decision,
        decided_by=decided_by,
        input=input,
        reason=reason,
        pending=pending,
        approval_id=identity,
    )
    emitted = await store.emit_event(run_id, key, message)
    return DecisionOutcome(
        approval_id=identity,
        run_id=run_id,
        status="decided" if emitted.accepted else "already_decided",
        decision=emitted.record.payload,
    )


async def _resolve(store: DurableRunStore, target: str) -> tuple[str, int]:
    """An approval id's run and position; a run id stands for its one pending approval."""
    try:
        return parse_approval_id(target)
    except DurableApprovalNotFoundError:
        run = await store.load_run(target)
        if run is None:
            raise DurableApprovalNotFoundError(
                f"no approval or run {target!r}; list approvals with `durable approvals`"
            ) from None
    steps = await store.load_steps(run.run_id)
    pending = pending_in(run.run_id, run.agent, steps)
    asked = [step.step_index for step in steps if step.kind == "approval"]
    return target, pick_for_run(
        target, [parse_approval_id(p.approval_id)[1] for p in pending], asked
    )
