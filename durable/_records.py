"""Run, step and event records: what every store keeps and every substrate reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

__all__ = [
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
]

StepKind = Literal[
    "logic", "llm", "tool", "readiness", "deterministic", "event", "timer", "conversation"
]
"""What a step did: user code (``logic``), a model or tool call, a checkpointed
clock or uuid read (``deterministic``), an event wait or emit (``event``), or a
durable sleep (``timer``)."""

StepStatus = Literal["running", "completed", "failed"]
"""``running`` covers a step that has begun and may be retrying; ``failed`` is final."""

RunStatus = Literal["running", "completed", "failed"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskSpec(_Record):
    """What the run is for; ``metadata`` is informative and not part of the identity."""

    id: str = Field(min_length=1)
    intent: str
    domain: str
    metadata: dict[str, Any] | None = None


class DurableRunManifest(_Record):
    """Everything that identifies a run; hashed into ``RunRecord.manifest_hash``."""

    project_id: str = Field(min_length=1)
    scenario_id: str | None = None
    task: TaskSpec
    input: dict[str, Any]
    tags: dict[str, str] | None = None


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
