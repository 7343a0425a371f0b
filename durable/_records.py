"""Run, step and event records: what every store keeps and every substrate reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

__all__ = [
    "ACTIVE_STATUSES",
    "ENDED_STATUSES",
    "RUN_STATUSES",
    "CancelOutcome",
    "DelegationPolicy",
    "DurableRunManifest",
    "EventRecord",
    "Lease",
    "RunOutcome",
    "RunRecord",
    "RunStatus",
    "StepError",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "TaskSpec",
    "WaitingState",
]

StepKind = Literal[
    "logic",
    "llm",
    "tool",
    "readiness",
    "deterministic",
    "event",
    "timer",
    "conversation",
    "agent",
    "approval",
    "checkpoint",
]
"""What a step did: user code (``logic``), a model or tool call, a checkpointed
clock or uuid read (``deterministic``), an event wait or emit (``event``), or a
durable sleep (``timer``), a conversation or another agent run as a child
(``conversation``, ``agent``), or the request of an approval (``approval``), or
the write or delete of a context checkpoint (``checkpoint``)."""

StepStatus = Literal["running", "completed", "failed"]
"""``running`` covers a step that has begun and may be retrying; ``failed`` is final."""

RunStatus = Literal[
    "running", "waiting", "waiting_for_approval", "completed", "failed", "cancelled"
]
"""A run is ``running``, or ``waiting`` for an event with nothing else of it under
way, or ``waiting_for_approval`` (``ctx.approval``); these three are active. It ends
``completed``, ``failed`` or ``cancelled``, and an ended run is never resumed."""

WaitingState = Literal["waiting", "waiting_for_approval"]
"""The active states of a run that waits: what a store records beside ``running``."""

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
ENDED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES: frozenset[str] = frozenset({"running", "waiting", "waiting_for_approval"})

CancelOutcome = Literal["requested", "cancelled", "already_ended"]
"""What a cancel did: asked the worker holding the run, ended the run at once (no
worker held it), or found it already ended (not an error)."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskSpec(_Record):
    """What the run is for; ``metadata`` is informative and not part of the identity."""

    id: str = Field(min_length=1)
    intent: str
    domain: str
    metadata: dict[str, Any] | None = None


class DelegationPolicy(_Record):
    """What a run may delegate to child agents with ``ctx.call_agent``.

    Checked in this order, before anything is started or spent: the run is not
    cancelled, delegation is ``enabled``, the agent is in ``allowed_agents``
    (``None``: any registered agent), the child's depth is within ``max_depth``,
    fewer than ``max_calls`` calls were made, and fewer than ``max_parallel``
    are in flight. ``max_depth=0`` disables delegation; the default 1 lets a
    run delegate and its children not.
    """

    enabled: bool = True
    allowed_agents: tuple[str, ...] | None = None
    max_calls: int = Field(default=32, ge=0)
    max_parallel: int = Field(default=8, ge=1)
    max_depth: int = Field(default=1, ge=0)


class DurableRunManifest(_Record):
    """Everything that identifies a run; hashed into ``RunRecord.manifest_hash``.

    Only project, scenario, task and input are hashed: ``tags`` and the child-run
    fields (``parent_run_id``, ``depth``, ``max_depth``, ``delegation``) travel
    with the run without changing its identity.
    """

    project_id: str = Field(min_length=1)
    scenario_id: str | None = None
    task: TaskSpec
    input: dict[str, Any]
    tags: dict[str, str] | None = None
    parent_run_id: str | None = None
    """The run that started this one as a child; ``None`` for a run started by a caller."""
    depth: int = Field(default=0, ge=0)
    """Delegation depth: 0 for a run started by a caller, the parent's plus one for a child."""
    max_depth: int | None = Field(default=None, ge=0)
    """The deepest delegation any ancestor's policy allows; a child never exceeds it."""
    delegation: DelegationPolicy | None = None
    """This run's delegation policy when passed per run; else the agent's own."""


class StepError(_Record):
    """A step failure as recorded; the stack is for diagnosis and never replayed."""

    message: str
    type: str
    code: str | None = None
    stack: str | None = None


class RunOutcome(_Record):
    """A free-form verdict on a finished run, surfaced to telemetry."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    passed: bool | None = Field(default=None, alias="pass")
    score: float | None = None
    notes: str | None = None
    metadata: dict[str, Any] | None = None


class Lease(_Record):
    """Proof of holding a run: every write is fenced by ``holder`` and ``generation``.

    ``generation`` increases on every acquisition, so a worker that was taken
    over holds a stale generation and every write it attempts is refused.
    """

    run_id: str
    holder: str
    generation: int
    expires_at: datetime


class RunRecord(_Record):
    run_id: str
    agent: str
    manifest_hash: str
    project_id: str
    scenario_id: str | None = None
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    lease_holder: str | None = None
    lease_generation: int = 0
    lease_expires_at: datetime | None = None
    outcome: RunOutcome | None = None
    result: Any = None
    error: StepError | None = None
    step_count: int = 0
    parent_run_id: str | None = None
    """The run that started this one as a child run."""
    cancel_requested: str | None = None
    """The reason of a cancellation asked for while a worker held the run; the
    holder cancels it, its children first, and ends it ``cancelled``."""
    recoveries: int = 0
    """How many times a worker took the run over after its holder's lease lapsed
    (the holder crashed or was killed); counted with the takeover itself."""
    recovered_from: str | None = None
    """The worker whose lapsed lease the last of those takeovers took over."""

    @property
    def active(self) -> bool:
        """Not ended: ``running``, ``waiting`` or ``waiting_for_approval``."""
        return self.status not in ENDED_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True, config=ConfigDict(extra="forbid"))
class StepRecord:
    """One step of a run as recorded.

    A validated pydantic dataclass with slots rather than a model: a resumed run
    holds one per completed step, and the lighter record keeps loading 10,000 of
    them linear in time. Change it with ``dataclasses.replace``.
    """

    run_id: str
    step_index: int
    intent: str
    kind: StepKind
    input_hash: str
    status: StepStatus
    attempts: int
    result: Any = None
    error: StepError | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    """Wake-up time of a sleep or deadline of an event wait, fixed at the first attempt."""


class EventRecord(_Record):
    run_id: str
    key: str
    payload: Any
    emitted_at: datetime
