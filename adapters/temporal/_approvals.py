"""Approvals and run states of runs on Temporal, read and decided from outside them.

Nothing here needs the run's worker: a pending approval's request and its first
decision live in the run's memo (``approval:<position>``), and which runs wait
for one in the ``WaitingFor`` search attribute (``approval:<id>``). A decision
goes through the run's event update, by signal when no worker answers in time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from durable import DurableApprovalNotFoundError, RunStatus, check_name
from durable._approvals import (
    DecisionOutcome,
    PendingApproval,
    approval_id,
    approval_key,
    parse_approval_id,
    pick_for_run,
)
from durable._failures import run_ended_error
from durable_agents.adapters.approvals import decision_for, pending_from

from ._delivery import deliver_event
from ._messages import APPROVAL_MEMO_PREFIX
from ._search import WAITING_FOR, quoted
from ._status import state_of

__all__ = ["decide", "list_runs", "pending_approvals"]

ANSWER_WITHIN = timedelta(seconds=5)
"""How long a decision waits for the run's worker before it goes by signal."""

_EXECUTION_STATUS = {
    "running": "Running",
    "waiting": "Running",
    "waiting_for_approval": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
}


async def list_runs(
    client: Client,
    *,
    status: RunStatus | None = None,
    agent: str | None = None,
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[tuple[WorkflowExecution, str]]:
    """Runs with their states, newest first by ``(start time, run id)``, by visibility.

    ``before`` keeps only runs before that key: the start time and id of the last
    run of the previous page. ``waiting`` and ``waiting_for_approval`` are running
    workflows whose ``WaitingFor`` says so.
    """
    clauses = []
    if status is not None:
        clauses.append(f"ExecutionStatus = '{_EXECUTION_STATUS[status]}'")
    if agent is not None:
        clauses.append(f"WorkflowType = '{quoted(agent)}'")
    if before is not None:
        # Visibility keeps nanoseconds, a start time here has microseconds: ask for the
        # whole microsecond, and let the key below cut it where the previous page did.
        bound = (before[0] + timedelta(microseconds=1)).astimezone(UTC)
        clauses.append(f"StartTime < '{bound.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
    query = " AND ".join(clauses) or None
    rows: list[tuple[WorkflowExecution, str]] = []
    async for execution in client.list_workflows(query):
        if before is not None and (execution.start_time, execution.id) >= before:
            continue
        state = state_of(execution.status, execution.typed_search_attributes.get(WAITING_FOR))
        if status is not None and state != status:
            continue
        # Runs started in the same instant as the page's last one come along, so the
        # page can be cut by run id among them, as the next page's ``before`` expects.
        if len(rows) >= limit and execution.start_time != rows[-1][0].start_time:
            break
        rows.append((execution, state))
    rows.sort(key=lambda row: (row[0].start_time, row[0].id), reverse=True)
    return rows[:limit]


def _positions(described: WorkflowExecutionDescription) -> list[int]:
    """The positions of the run's approvals, from its memo keys."""
    memo = described.raw_description.workflow_execution_info.memo
    names = (name.removeprefix(APPROVAL_MEMO_PREFIX) for name in memo.fields)
    return sorted(int(p) for p in names if p.isdigit())


async def _memo_entry(
    described: WorkflowExecutionDescription, position: int
) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = await described.memo_value(
        f"{APPROVAL_MEMO_PREFIX}{position}", None
    )
    return entry


async def pending_approvals(
    client: Client, *, agent: str | None = None, limit: int = 1000
) -> list[PendingApproval]:
    """Every approval a running workflow waits for, from the search attribute and memo."""
    query = "ExecutionStatus = 'Running' AND WaitingFor IS NOT NULL"
    if agent is not None:
        query += f" AND WorkflowType = '{quoted(agent)}'"
    found: list[PendingApproval] = []
    async for execution in client.list_workflows(query, limit=limit):
        if not (execution.typed_search_attributes.get(WAITING_FOR) or "").startswith("approval:"):
            continue
        described = await client.get_workflow_handle(execution.id).describe()
        for position in _positions(described):
            entry = await _memo_entry(described, position)
            if entry and entry.get("request") and entry.get("decision") is None:
                requested_at, deadline = entry.get("requested_at"), entry.get("deadline")
                found.append(
                    pending_from(
                        execution.id,
                        execution.workflow_type,
                        entry["request"],
                        None if requested_at is None else datetime.fromisoformat(requested_at),
                        None if deadline is None else datetime.fromisoformat(deadline),
                    )
                )
    return found


async def decide(
    client: Client,
    target: str,
    decision: str,
    *,
    decided_by: str,
    input: Any = None,
    reason: str | None = None,
) -> DecisionOutcome:
    """``decide_approval`` for a run on Temporal: the same rules and answers."""
    run_id, position = await _resolve(client, check_name(target, what="approval id"))
    identity = approval_id(run_id, position)
    handle = client.get_workflow_handle(run_id)
    try:
        described = await handle.describe()
    except RPCError as failure:
        if failure.status != RPCStatusCode.NOT_FOUND:
            raise
        raise DurableApprovalNotFoundError(
            f"no approval {identity!r}: there is no run {run_id!r} on Temporal"
        ) from None
    entry = await _memo_entry(described, position) or {}
    if entry.get("decision") is not None:
        return DecisionOutcome(
            approval_id=identity,
            run_id=run_id,
            status="already_decided",
            decision=entry["decision"],
        )
    if described.status != WorkflowExecutionStatus.RUNNING:
        raise run_ended_error(run_id)
    message = decision_for(
        decision,
        decided_by=decided_by,
        input=input,
        reason=reason,
        pending=entry.get("request"),
        approval_id=identity,
    )
    accepted = await deliver_event(
        handle, approval_key(position), message, answer_within=ANSWER_WITHIN
    )
    if accepted is None:
        return DecisionOutcome(
            approval_id=identity, run_id=run_id, status="delivered", decision=message
        )
    if accepted:
        return DecisionOutcome(
            approval_id=identity, run_id=run_id, status="decided", decision=message
        )
    first = await _memo_entry(await handle.describe(), position) or {}
    return DecisionOutcome(
        approval_id=identity,
        run_id=run_id,
        status="already_decided",
        decision=first.get("decision") or {},
    )


async def _resolve(client: Client, target: str) -> tuple[str, int]:
    """An approval id's run and position; a run id stands for its one pending approval."""
    try:
        return parse_approval_id(target)
    except DurableApprovalNotFoundError:
        try:
            described = await client.get_workflow_handle(target).describe()
        except RPCError as failure:
            if failure.status != RPCStatusCode.NOT_FOUND:
                raise
            raise DurableApprovalNotFoundError(
                f"no approval or run {target!r}; list approvals with `durable approvals`"
            ) from None
    pending, asked = [], []
    for position in _positions(described):
        entry = await _memo_entry(described, position)
        if entry and entry.get("request"):
            asked.append(position)
            if entry.get("decision") is None:
                pending.append(position)
    return target, pick_for_run(target, pending, asked)
