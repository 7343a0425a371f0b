"""Deciding approvals from outside a run: the checks every caller makes the same way.

A decision is checked where it is sent, so a bad one never reaches the run: the
run waits on, unharmed, for a good one. An edited input is validated against the
JSON schema the run recorded with its request. The run validates it again with
the pydantic type itself when it takes the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator

from durable import DurableEventPayloadError, StepRecord
from durable._approvals import (
    PendingApproval,
    approval_key,
    decision_message,
)

__all__ = ["check_edit", "decision_for", "pending_from", "pending_in"]


def decision_for(
    decision: str,
    *,
    decided_by: str,
    input: Any = None,
    reason: str | None = None,
    pending: Mapping[str, Any] | None,
    approval_id: str,
) -> dict[str, Any]:
    """The checked payload of a decision on ``approval_id``, timed now."""
    message = decision_message(
        decision, decided_by=decided_by, input=input, reason=reason, decided_at=datetime.now(UTC)
    )
    check_edit(pending, approval_id, message)
    return message


def check_edit(
    pending: Mapping[str, Any] | None, approval_id: str, message: Mapping[str, Any]
) -> None:
    """Refuse an edit its approval's input type does not accept, naming every error."""
    if message["decision"] != "edit":
        return
    if pending is None:
        raise DurableEventPayloadError(
            f"approval {approval_id!r} has not been requested yet, so an edit cannot be "
            "checked against its input type; approve or reject it now, or edit it once "
            "`durable approvals` lists it"
        )
    schema = pending.get("input_schema")
    if schema is None:
        return
    errors = sorted(
        Draft202012Validator(schema).iter_errors(message["input"]),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    if errors:
        said = "; ".join(
            "$" + "".join(f".{part}" for part in error.absolute_path) + f": {error.message}"
            for error in errors
        )
        raise DurableEventPayloadError(
            f"the edited input of approval {approval_id!r} does not match its input type: "
            f"{said}; fix the edit and send it again (the run keeps waiting)"
        )


def pending_in(run_id: str, agent: str, steps: Sequence[StepRecord]) -> list[PendingApproval]:
    """The approvals a run's recorded steps show it waiting for."""
    by_index = {step.step_index: step for step in steps}
    found = []
    for step in steps:
        wait = by_index.get(step.step_index + 1)
        if (
            step.kind != "approval"
            or step.status != "completed"
            or wait is None
            or wait.status != "running"
            or wait.intent != f"await_event:{approval_key(step.step_index)}"
        ):
            continue
        found.append(pending_from(run_id, agent, step.result, step.completed_at, wait.deadline))
    return found


def pending_from(
    run_id: str,
    agent: str,
    record: Mapping[str, Any],
    requested_at: datetime | None,
    deadline: datetime | None,
) -> PendingApproval:
    """A pending approval from the request a run recorded."""
    return PendingApproval(
        approval_id=record["approval_id"],
        run_id=run_id,
        agent=agent,
        action=record["action"],
        summary=record["summary"],
        tool=record.get("tool"),
        input=record.get("input"),
        input_schema=record.get("input_schema"),
        requested_at=requested_at,
        deadline=deadline,
    )
