"""The request and response bodies of the API, one model each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from durable import MAX_NAME_LENGTH, CancelOutcome, DelegationPolicy, RunView
from durable._approvals import Decision

__all__ = [
    "CancelRequest",
    "Cancelled",
    "DecisionRequest",
    "EventOutcome",
    "EventRequest",
    "EventStatus",
    "Health",
    "RunPage",
    "RunResult",
    "ServerInfo",
    "StartRequest",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Body):
    """Start a run of ``agent`` on ``input``; the same ``run_id`` and input find the run again."""

    agent: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """A registered agent's name, hosted by the workers of this substrate."""
    input: Any = None
    run_id: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    """Defaults to ``<agent>-<8 hex>``; give one to make the start idempotent."""
    delegation: DelegationPolicy | None = None
    """This run's own delegation policy, instead of its agent's."""


class RunPage(_Body):
    """Runs, newest first; pass ``next_before`` as ``before`` for the next page."""

    runs: list[RunView]
    next_before: str | None = None


class RunResult(_Body):
    """What a completed run returned, as JSON."""

    run_id: str
    result: Any = None


class EventRequest(_Body):
    payload: Any = None
    """The event's payload: any JSON, checked against the type the run waits with."""


EventStatus = Literal["accepted", "already_accepted", "delivered"]


class EventOutcome(_Body):
    """``accepted``: this event is the key's. ``already_accepted``: an earlier one was
    (first wins). ``delivered``: handed to the substrate, not yet acknowledged by a
    worker (Temporal with no worker answering); the first one still wins."""

    run_id: str
    key: str
    status: EventStatus


class DecisionRequest(_Body):
    """A person's decision on an approval: approve, edit (with ``input``) or reject (with a
    ``reason``)."""

    decision: Decision
    decided_by: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """Who decides, for the audit: a person's or a service's name."""
    input: Any = None
    """An edit's input, checked against the approval's input type."""
    reason: str | None = None


class CancelRequest(_Body):
    reason: str = ""


class Cancelled(_Body):
    """``requested``: the run's worker was asked and ends it soon. ``cancelled``: it ended
    now. ``already_ended``: it had ended before."""

    run_id: str
    outcome: CancelOutcome


class Health(_Body):
    status: Literal["ok"] = "ok"


class ServerInfo(_Body):
    """What the web view needs to know about this server."""

    temporal_ui: str | None = None
    """The Temporal UI's workflows page, for runs on Temporal; ``None`` on a local store."""
    max_body_bytes: int
