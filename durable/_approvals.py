"""Approvals, written once: ``ctx.approval`` is a typed wait on top of events.

An approval takes two positions of its run. At the first, the request is
recorded as a step of kind ``approval`` whose result is the request as a
reviewer reads it (with the JSON schema of its input, when the input is a
pydantic model). At the second, the run waits for the decision: the event
``approval:<position>``, under the durable deadline of ``await_event``. So the
approval's id, ``<run id>:approval-<position>``, is the same on every replay,
and a decision sent before the wait, or while no worker runs, is kept like any
event and applied when the run gets there.

Each substrate supplies only ``_record_value`` (a value recorded at the next
position, returned unchanged on replay), ``await_event`` with ``waiting_as``
(the run's state while it waits), ``publish`` and ``_show_approval`` (where
the substrate lists pending approvals: a memo on Temporal; the run's own
records locally, so nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._canonical import canonical_json
from ._codec import event_payload
from ._errors import (
    DurableApprovalNotFoundError,
    DurableAwaitEventTimeoutError,
    DurableEventPayloadError,
)
from ._failures import event_payload_error
from ._live import LiveEvent
from ._names import check_name
from ._records import StepKind, WaitingState
from ._retry import as_timedelta

__all__ = [
    "APPROVAL_KEY_PREFIX",
    "DECISIONS",
    "ApprovalDecision",
    "ApprovalRequest",
    "Approvals",
    "Decision",
    "DecisionOutcome",
    "OnTimeout",
    "PendingApproval",
    "approval_id",
    "approval_key",
    "check_decision_event",
    "decision_message",
    "parse_approval_id",
    "pick_for_run",
    "timeout_decision",
]

Decision = Literal["approve", "edit", "reject"]
DECISIONS: tuple[Decision, ...] = get_args(Decision)
OnTimeout = Literal["reject", "approve", "raise"]

APPROVAL_KEY_PREFIX = "approval:"
"""Event keys ``approval:<position>`` carry decisions; agents leave the prefix to approvals."""

_ID_MARK = ":approval-"


def approval_id(run_id: str, position: int) -> str:
    """The approval's id: its run and position, so replay gives the same id."""
    return f"{run_id}{_ID_MARK}{position}"


def approval_key(position: int) -> str:
    """The event key the run waits on for the decision of the approval at ``position``."""
    return f"{APPROVAL_KEY_PREFIX}{position}"


def parse_approval_id(value: str) -> tuple[str, int]:
    """``(run_id, position)`` of an approval id; ``DurableApprovalNotFoundError`` if it is none."""
    run_id, mark, position = value.rpartition(_ID_MARK)
    if not mark or not run_id or not position.isdigit():
        raise DurableApprovalNotFoundError(
            f"{value!r} is not an approval id; an approval id reads "
            f"'<run id>{_ID_MARK}<position>' (see `durable approvals`), or pass the run id"
        )
    return run_id, int(position)


def pick_for_run(run_id: str, pending: list[int], asked: list[int]) -> int:
    """The approval a run id stands for: its one pending approval or, with none
    pending, the last one it asked (so a retried decision answers "already decided")."""
    if len(pending) == 1:
        return pending[0]
    if pending:
        ids = ", ".join(approval_id(run_id, p) for p in pending)
        raise DurableApprovalNotFoundError(
            f"run {run_id!r} waits for {len(pending)} approvals; pass one of their ids: {ids}"
        )
    if asked:
        return max(asked)
    raise DurableApprovalNotFoundError(
        f"run {run_id!r} has asked for no approval yet; to decide one before the run asks, "
        "pass the approval's id ('<run id>:approval-<position>')"
    )


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApprovalRequest(_Model):
    """What a person is asked to approve.

    ``input`` is the proposed input of the action: plain JSON, or a pydantic model,
    whose type then validates an edited input and types the decision's ``input``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    action: str = Field(min_length=1)
    """The action or tool the run wants to take, such as ``issue_refund``."""
    input: Any = None
    summary: str = ""
    """Free text for the reviewer: why, and what happens on approval."""
    tool: str | None = None


class ApprovalDecision(_Model):
    """A person's decision, as the run receives it and its steps record it.

    ``input`` is what to act on: the request's input when approved, the edited
    input when edited (both of the request's input type), ``None`` when rejected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    decision: Decision
    input: Any = None
    decided_by: str
    reason: str | None = None
    decided_at: datetime | None = None
    """When it was decided; ``None`` for a decision taken by the run's ``on_timeout``."""

    @property
    def approved(self) -> bool:
        """Approved as asked or as edited."""
        return self.decision != "reject"


class PendingApproval(_Model):
    """An approval a run waits for, with its request, as callers list them."""

    approval_id: str
    run_id: str
    agent: str
    action: str
    summary: str
    tool: str | None = None
    input: Any = None
    input_schema: dict[str, Any] | None = None
    """The JSON schema an edited input must match; ``None``: any JSON."""
    requested_at: datetime | None = None
    deadline: datetime | None = None


DecisionStatus = Literal["decided", "already_decided", "delivered"]


class DecisionOutcome(_Model):
    """What sending a decision did.

    ``decided``: this decision is the approval's. ``already_decided``: another came
    first, and ``decision`` is that first one. ``delivered`` (Temporal, no worker
    answered): it is kept and applied when a worker runs the run, first one wins.
    """

    approval_id: str
    run_id: str
    status: DecisionStatus
    decision: dict[str, Any]


def decision_message(
    decision: str,
    *,
    decided_by: str,
    input: Any = None,
    reason: str | None = None,
    decided_at: datetime,
) -> dict[str, Any]:
    """The decision event's payload, checked at the sender; raises ``ValueError`` saying why."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    check_name(decided_by, what="decided_by")
    if decision == "edit" and input is None:
        raise ValueError("an edit needs the edited input; pass input=... (--edit JSON)")
    if decision != "edit" and input is not None:
        raise ValueError(f"only an edit carries an input; to change it, edit instead of {decision}")
    if decision == "reject" and not reason:
        raise ValueError("a rejection needs a reason, for the audit and for the run")
    message = {
        "decision": decision,
        "input": input,
        "decided_by": decided_by,
        "reason": reason,
        "decided_at": decided_at.isoformat(),
    }
    event_payload(message, what=f"the {decision} decision")
    return message


def timeout_decision(record: dict[str, Any]) -> dict[str, Any]:
    """The decision a run takes itself when no person decided in time."""
    on_timeout = record.get("on_timeout", "reject")
    return {
        "decision": "timed_out" if on_timeout == "raise" else on_timeout,
        "input": None,
        "decided_by": "timeout",
        "reason": f"no decision within {record.get('timeout')}s",
        "decided_at": None,
    }


def check_decision_event(key: str, payload: Any) -> None:
    """Refuse an ``approval:*`` event whose payload is no decision, before it reaches a run.

    Whoever sends a decision as a plain event (``durable event``, a signal) gets
    the same check the run applies, so a malformed one never fails the run.
    """
    if not key.startswith(APPROVAL_KEY_PREFIX):
        return
    try:
        ApprovalDecision.model_validate(payload)
    except ValidationError as exc:
        raise DurableEventPayloadError(
            f"event {key!r} carries the decision of an approval, but "
            f"{exc.errors(include_url=False, include_input=False)}; send decisions with "
            "`durable approve` / `durable reject` (or decide_approval / AgentClient.decide)"
        ) from None


def _request_record(
    request: ApprovalRequest, identity: str, timeout: timedelta | None, on_timeout: OnTimeout
) -> dict[str, Any]:
    """The request as recorded and listed: JSON, with its input's schema and its timeout."""
    value = request.input
    schema: dict[str, Any] | None = None
    if isinstance(value, BaseModel):
        schema = type(value).model_json_schema()
        value = value.model_dump(mode="json")
    record = {
        "approval_id": identity,
        "action": request.action,
        "summary": request.summary,
        "tool": request.tool,
        "input": value,
        "input_schema": schema,
        "timeout": None if timeout is None else timeout.total_seconds(),
        "on_timeout": on_timeout,
    }
    canonical_json(record)  # a request that cannot be recorded fails here, before the wait
    return record


class Approvals:
    """The approval half of ``DurableContext``, shared by every substrate's context."""

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    def _next_position(self) -> int:
        raise NotImplementedError

    async def _record_value(self, intent: str, kind: StepKind, produce: Callable[[], Any]) -> Any:
        """Record ``produce()`` at the next position; replay returns what was recorded."""
        raise NotImplementedError

    def _await_decision(
        self, key: str, timeout: timedelta | None, waiting_as: WaitingState
    ) -> Awaitable[Any]:
        raise NotImplementedError

    def publish(self, event: LiveEvent) -> bool:
        raise NotImplementedError

    def _show_approval(self, position: int, request: Any, decision: Any = None) -> None:
        """Keep the approval's request, and a decision the run took itself (a timeout),
        where callers find them; by default the run's own records already hold both."""

    async def approval(
        self,
        request: ApprovalRequest,
        *,
        timeout: timedelta | float | None = None,
        on_timeout: OnTimeout = "reject",
    ) -> ApprovalDecision:
        """Ask a person to approve ``request``; wait for the decision and return it.

        While it waits, the run's state is ``waiting_for_approval``. With
        ``timeout``, a run that gets no decision in time gets a rejection (or an
        approval) decided by ``timeout``; ``on_timeout="raise"`` raises
        ``DurableAwaitEventTimeoutError`` instead. An edited input is validated
        against the request's input type before the run sees it.
        """
        if not isinstance(request, ApprovalRequest):
            raise TypeError(
                f"ctx.approval takes a durable.ApprovalRequest, got {type(request).__name__}"
            )
        if on_timeout not in get_args(OnTimeout):
            raise ValueError(f"on_timeout must be one of {get_args(OnTimeout)}, not {on_timeout!r}")
        wait = None if timeout is None else as_timedelta(timeout, what="approval timeout")
        position = self._next_position()
        identity = approval_id(self.run_id, position)
        record = await self._record_value(
            f"approval:{request.action}",
            "approval",
            lambda: _request_record(request, identity, wait, on_timeout),
        )
        self.publish(
            LiveEvent(
                kind="approval_requested",
                step=position,
                key=identity,
                intent=request.action,
                text=request.summary,
            )
        )
        self._show_approval(position, record)
        try:
            payload = await self._await_decision(
                approval_key(position), wait, "waiting_for_approval"
            )
        except DurableAwaitEventTimeoutError:
            payload = timeout_decision(record)
            self._show_approval(position, record, payload)
            if on_timeout == "raise":
                raise
        decision = self._decision(identity, request, payload)
        self.publish(
            LiveEvent(
                kind="approval_resolved",
                step=position + 1,
                key=identity,
                intent=request.action,
                text=decision.decision,
                detail={"decided_by": decision.decided_by, "reason": decision.reason},
            )
        )
        return decision

    def _decision(self, identity: str, request: ApprovalRequest, payload: Any) -> ApprovalDecision:
        """The recorded decision, its input restored to the request's input type."""
        label = f"the decision of approval {identity!r}"
        try:
            decision = ApprovalDecision.model_validate(payload)
        except ValidationError as exc:
            raise event_payload_error(
                label, ApprovalDecision, exc.errors(include_url=False, include_input=False)
            ) from None
        if decision.decision == "reject":
            return decision
        if decision.decision == "approve":
            return decision.model_copy(update={"input": request.input})
        model = type(request.input) if isinstance(request.input, BaseModel) else None
        if model is None:
            return decision
        try:
            edited = model.model_validate(decision.input)
        except ValidationError as exc:
            raise event_payload_error(
                label, model, exc.errors(include_url=False, include_input=False)
            ) from None
        return decision.model_copy(update={"input": edited})
