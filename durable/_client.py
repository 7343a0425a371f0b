"""``DurableClient``: the one protocol callers speak, whatever runs the agents.

The CLI, the HTTP API and the tests drive runs only through it. Two
implementations keep it: ``durable_agents.adapters.local.LocalClient`` over a local store and
``durable_agents.adapters.temporal.AgentClient`` on Temporal. What differs between substrates
stays behind it; where an answer can differ (an event delivered while no
worker runs, on Temporal), the answer says so instead of the caller branching.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ._approvals import DecisionOutcome, PendingApproval
from ._live import LiveEvent
from ._records import CancelOutcome, DelegationPolicy, RunStatus, StepRecord

__all__ = ["DurableClient", "RunView", "Started"]


class RunView(BaseModel):
    """A run as a caller sees it, in the same words on every substrate.

    ``describe`` fills every field it can; ``runs`` and ``children`` give only what
    a listing holds (id, agent, status, parent, times), the rest ``None`` or empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    agent: str
    status: str
    """A ``RunStatus``; on Temporal also ``terminated``, ``timed_out`` or ``unknown``."""
    parent_run_id: str | None = None
    created_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    """Why a failed run failed, or why a cancelled one was cancelled."""
    waiting_for: list[str] | None = None
    """The event keys the run waits for (``approval:<position>`` for an approval); ``None``:
    unknown (on Temporal, no worker answered)."""
    step_count: int | None = None
    children: list[RunView] = Field(default_factory=list)
    """The child runs it started, oldest first, as ``runs`` lists runs."""
    attended: bool | None = None
    """Whether a worker executes the active run now (a live lease locally, a worker
    answering on Temporal); ``False``: it continues once one does; ``None``: it
    ended, or nobody can tell."""
    note: str | None = None
    """What the substrate adds for a person: who holds a local run's lease, that no
    Temporal worker answers the run's task queue, when a retrying step tries again."""


class Started(BaseModel):
    """What ``start`` did: started the run, or found the identical run already there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    created: bool


@runtime_checkable
class DurableClient(Protocol):
    async def start(
        self,
        agent: str | Callable[[Any, Any], Awaitable[Any]],
        input: Any,
        *,
        run_id: str | None = None,
        delegation: DelegationPolicy | None = None,
        retry_failed: bool = False,
    ) -> Started:
        """Start a run of ``agent`` (a registered agent or its name) on ``input``.

        ``run_id`` defaults to ``<agent>-<8 hex>``. The same id with the same input
        finds the existing run (``created=False``); with other input it raises
        ``DurableRunInputMismatchError``. With ``retry_failed``, an existing run that
        failed or was cancelled, and has no child runs, starts again fresh under the
        same id (``created=True``); a completed run never does (the run-id rule: the
        local store's ``RETRIED_STATUSES``, on Temporal ``ALLOW_DUPLICATE_FAILED_ONLY``).
        """
        ...

    async def result(self, run_id: str) -> Any:
        """Wait for the run to end and return its result, or raise its failure.

        The result has the type of the agent's return annotation when the agent is
        registered in this process, else it is plain JSON. A failure raises the
        run's durable error (``DurableStepFailedError``...) or
        ``DurableRunFailedError``; a cancelled run ``DurableRunCancelledError``;
        an unknown one ``DurableRunNotFoundError``.
        """
        ...

    async def describe(self, run_id: str) -> RunView:
        """The run's state now; ``DurableRunNotFoundError`` if there is none."""
        ...

    async def steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps in position order; ``DurableRunNotFoundError`` if there is no run."""
        ...

    async def runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunView]:
        """Runs, newest first; ``before`` (a run id from the previous page) pages on."""
        ...

    async def send_event(self, run_id: str, key: str, payload: Any) -> bool | None:
        """``True`` accepted, ``False`` already sent (first wins), ``None`` delivered but
        not yet acknowledged (Temporal, no worker answered in time)."""
        ...

    async def approvals(self, *, agent: str | None = None) -> list[PendingApproval]:
        """Every approval a run waits for (of ``agent``'s runs only, if given)."""
        ...

    async def decide(
        self,
        target: str,
        decision: str,
        *,
        decided_by: str,
        input: Any = None,
        reason: str | None = None,
    ) -> DecisionOutcome:
        """Approve, edit or reject the approval ``target`` (its id, or the id of a run
        waiting for one); the first decision stands (``already_decided``)."""
        ...

    async def cancel(self, run_id: str, reason: str = "") -> CancelOutcome:
        """Cancel the run, its children first; ``already_ended`` if it had ended."""
        ...

    def watch(self, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
        """The run's live stream after ``after``, as it comes, until the run ends."""
        ...

    async def usage(self, run_id: str) -> dict[str, float | None]:
        """Tokens and cost of the run's model calls so far (``None``: unknown)."""
        ...

    async def close(self) -> None:
        """Release what the client holds; runs go on (see each implementation)."""
        ...
