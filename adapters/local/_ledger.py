"""The rules of a run's state, kept once for the memory and file stores.

A ``RunState`` is one run's record, steps and events. The functions below apply
one store operation to it and return what changed, so the memory store can keep
states in a dict and the file store can persist exactly the changed records.

Cancelling a run with its descendants (``cancel_tree``) is kept here once for
every store, the SQL stores included: each store provides only the atomic
change of one run (``cancel`` here, one conditional ``UPDATE`` in SQL).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from durable import (
    CancelOutcome,
    CheckpointInfo,
    DurableRunInputMismatchError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableRunManifest,
    DurableStoreError,
    EventRecord,
    Lease,
    RunOutcome,
    RunRecord,
    StepError,
    StepKind,
    StepRecord,
    WaitingState,
    manifest_hash,
)
from durable._failures import (
    cancelled_error as cancelled,
)
from durable._failures import (
    manifest_mismatch_error,
    parent_cancelled_reason,
)

from ._store import RETRIED_STATUSES, EndStatus, ResumeKind, run_ended, run_not_found

__all__ = [
    "RunState",
    "acquire",
    "begin_step",
    "cancel",
    "cancel_tree",
    "cancelled_error",
    "check_fence",
    "creation_order",
    "emit_event",
    "end_run",
    "finish_step",
    "lease_free",
    "new_run",
    "parent_cancelled_reason",
    "recoverable",
    "renew",
    "restart",
    "restartable",
    "resume_kind",
    "set_waiting",
]


@dataclass
class RunState:
    run: RunRecord
    manifest: DurableRunManifest | None = None
    steps: dict[int, StepRecord] = field(default_factory=dict)
    events: dict[str, EventRecord] = field(default_factory=dict)
    checkpoints: dict[str, tuple[CheckpointInfo, str]] = field(default_factory=dict)
    """The run's context checkpoints, each with its canonical JSON (memory store only)."""

    def snapshot(self) -> RunRecord:
        return self.run.model_copy(update={"step_count": len(self.steps)})


def new_run(*, run_id: str, agent: str, manifest: DurableRunManifest, now: datetime) -> RunState:
    return RunState(
        RunRecord(
            run_id=run_id,
            agent=agent,
            manifest_hash=manifest_hash(manifest),
            project_id=manifest.project_id,
            scenario_id=manifest.scenario_id,
            status="running",
            created_at=now,
            updated_at=now,
            parent_run_id=manifest.parent_run_id,
        ),
        manifest=manifest,
    )


def creation_order(run: RunRecord) -> tuple[datetime, str]:
    """The key ``list_runs`` and ``list_children`` sort by; ties go by run id."""
    return (run.created_at, run.run_id)


def listed(
    run: RunRecord,
    *,
    status: str | None,
    agent: str | None,
    before: tuple[datetime, str] | None,
) -> bool:
    """Whether ``list_runs`` lists ``run``: in ``status``, of ``agent`` and created
    before the run whose ``creation_order`` is ``before``, each when given."""
    return (
        status in (None, run.status)
        and agent in (None, run.agent)
        and (before is None or creation_order(run) < before)
    )


def lease_free(run: RunRecord, now: datetime) -> bool:
    """Whether a worker may take ``run`` over at ``now``: running, with no live lease.

    The SQL stores' ``list_expired_runs`` applies the same rule. A lease never has
    a holder without an expiry nor the reverse: every write sets or clears both.
    """
    return run.active and (run.lease_expires_at is None or run.lease_expires_at <= now)


def recoverable(run: RunRecord, now: datetime, agents: Collection[str] | None) -> bool:
    """What ``list_expired_runs`` lists: ``lease_free`` runs, of ``agents`` if given.

    Child runs never: their parent's worker resumes them with the parent, so a
    recovering worker that took a child on its own would race that worker.
    """
    return (
        run.parent_run_id is None
        and lease_free(run, now)
        and (agents is None or run.agent in agents)
    )


def lease_held_error(run: RunRecord, now: datetime) -> DurableRunLeaseHeldError:
    remaining = (run.lease_expires_at or now) - now
    return DurableRunLeaseHeldError(
        f"run {run.run_id!r} is held by worker {run.lease_holder!r} for another "
        f"{remaining.total_seconds():.1f}s; retry after the lease expires, or stop that worker"
    )


def mismatch_error(run: RunRecord, manifest: DurableRunManifest) -> DurableRunInputMismatchError:
    return manifest_mismatch_error(run.run_id, run.manifest_hash, manifest_hash(manifest))


def lease_lost_error(
    run_id: str, lease: Lease, run: RunRecord | None = None
) -> DurableRunLeaseLostError:
    """The fence refused ``lease``; ``run``, the run as it is now, says why when known."""
    lost = (
        f"worker {lease.holder!r} lost the lease on run {run_id!r} (generation {lease.generation})"
    )
    if run is not None and run.status == "cancelled":
        why = f"{lost}: the run was cancelled"
        if run.cancel_requested is not None:
            why += f" ({run.cancel_requested})"
        return DurableRunLeaseLostError(f"{why}; stop this attempt, the run is over")
    if run is not None and not run.active:
        return DurableRunLeaseLostError(
            f"{lost}: the run already ended {run.status}; stop this attempt, the run is over"
        )
    return DurableRunLeaseLostError(
        f"{lost} to another worker; stop this attempt, the new holder continues the run"
    )


def acquire(
    state: RunState,
    *,
    manifest: DurableRunManifest,
    worker_id: str,
    now: datetime,
    lease_for: timedelta,
) -> tuple[Lease, ResumeKind | None] | None:
    """Take the lease if it is free, expired or already ours; ``None`` if the run ended.

    Also returns how the run was taken (``None``: it was new). Taking over another
    worker's lapsed lease counts a recovery, in the same change as the takeover.
    """
    run = state.run
    if run.manifest_hash != manifest_hash(manifest):
        raise mismatch_error(run, manifest)
    if not run.active:
        return None
    live = run.lease_expires_at is not None and run.lease_expires_at > now
    if live and run.lease_holder not in (None, worker_id):
        raise lease_held_error(run, now)
    kind = resume_kind(run, now)
    lease = Lease(
        run_id=run.run_id,
        holder=worker_id,
        generation=run.lease_generation + 1,
        expires_at=now + lease_for,
    )
    update: dict[str, Any] = {
        "status": "running",  # a run that waited waits again once its code gets there
        "lease_holder": lease.holder,
        "lease_generation": lease.generation,
        "lease_expires_at": lease.expires_at,
        "updated_at": now,
    }
    if kind == "crash":
        update |= {"recoveries": run.recoveries + 1, "recovered_from": run.lease_holder}
    state.run = run.model_copy(update=update)
    return lease, kind


def restartable(run: RunRecord, manifest: DurableRunManifest, *, retry_failed: bool) -> bool:
    """Whether ``start_or_resume(retry_failed=...)`` starts ``run`` again fresh.

    Only with ``retry_failed``, only a run that failed or was cancelled, and only
    with the manifest it was started with (another one is ``mismatch_error``). The
    caller checks the last condition, that the run has no child runs, itself:
    only the store can see other runs.
    """
    if run.manifest_hash != manifest_hash(manifest):
        raise mismatch_error(run, manifest)
    return retry_failed and run.status in RETRIED_STATUSES


def restart(
    state: RunState,
    *,
    agent: str,
    manifest: DurableRunManifest,
    worker_id: str,
    now: datetime,
    lease_for: timedelta,
) -> Lease:
    """Start the ended run of ``state`` again fresh under a new lease; see ``restartable``.

    Its steps, events and checkpoints go, and its record starts over as a new run's
    would, but for the generation, which moves on: no lease of the old run fences.
    """
    fresh = new_run(run_id=state.run.run_id, agent=agent, manifest=manifest, now=now)
    lease = Lease(
        run_id=state.run.run_id,
        holder=worker_id,
        generation=state.run.lease_generation + 1,
        expires_at=now + lease_for,
    )
    state.run = fresh.run.model_copy(
        update={
            "lease_holder": lease.holder,
            "lease_generation": lease.generation,
            "lease_expires_at": lease.expires_at,
        }
    )
    state.manifest = manifest
    state.steps.clear()
    state.events.clear()
    state.checkpoints.clear()
    return lease


def resume_kind(run: RunRecord, now: datetime) -> ResumeKind | None:
    """How a worker takes ``run``, whose lease it may take: see ``ResumeKind``.

    A lapsed lease is a crash whoever held it, the same worker id included: a
    worker restarted under a fixed id must not escape the recovery bound.
    ``None`` for a run no worker ever held (generation 0: just created). The SQL
    stores apply the same rule in their takeover statements.
    """
    if run.lease_holder is not None:
        lapsed = run.lease_expires_at is None or run.lease_expires_at <= now
        return "crash" if lapsed else "explicit"
    return None if run.lease_generation == 0 else "explicit"


def check_fence(state: RunState, lease: Lease) -> None:
    run = state.run
    if (
        not run.active
        or run.lease_holder != lease.holder
        or run.lease_generation != lease.generation
    ):
        raise lease_lost_error(run.run_id, lease, run)


def clear_recoveries(state: RunState, lease: Lease, *, now: datetime) -> None:
    """The holder's run got past where its last worker died: count recoveries from 0."""
    check_fence(state, lease)
    if state.run.recoveries:
        state.run = state.run.model_copy(update={"recoveries": 0, "updated_at": now})


def set_waiting(
    state: RunState, lease: Lease, waiting: WaitingState | None, *, now: datetime
) -> None:
    """The holder's run waits (``waiting``, ``waiting_for_approval``) or runs again (``None``)."""
    check_fence(state, lease)
    status = waiting or "running"
    if state.run.status != status:
        state.run = state.run.model_copy(update={"status": status, "updated_at": now})


def renew(state: RunState, lease: Lease, *, now: datetime, lease_for: timedelta) -> Lease:
    check_fence(state, lease)
    renewed = lease.model_copy(update={"expires_at": now + lease_for})
    state.run = state.run.model_copy(
        update={"lease_expires_at": renewed.expires_at, "updated_at": now}
    )
    return renewed


def begin_step(
    state: RunState,
    lease: Lease,
    *,
    step_index: int,
    intent: str,
    kind: StepKind,
    input_hash: str,
    deadline: datetime | None,
    now: datetime,
) -> StepRecord:
    check_fence(state, lease)
    previous = state.steps.get(step_index)
    if previous is None:
        record = StepRecord(
            run_id=state.run.run_id,
            step_index=step_index,
            intent=intent,
            kind=kind,
            input_hash=input_hash,
            status="running",
            attempts=1,
            started_at=now,
            deadline=deadline,
        )
    else:
        record = replace(
            previous,
            status="running",
            attempts=previous.attempts + 1,
            deadline=previous.deadline or deadline,
        )
    state.steps[step_index] = record
    return record


def finish_step(
    state: RunState,
    lease: Lease,
    *,
    step_index: int,
    now: datetime,
    result: Any = None,
    error: StepError | None = None,
    final: bool = True,
) -> StepRecord:
    """Complete the step (``error is None``) or record a failed attempt."""
    check_fence(state, lease)
    previous = state.steps.get(step_index)
    if previous is None:
        raise DurableStoreError(
            f"step {step_index} of run {state.run.run_id!r} was never begun; "
            "call begin_step before completing or failing it"
        )
    if error is None:
        update: dict[str, Any] = {
            "status": "completed",
            "result": result,
            "error": None,
            "completed_at": now,
        }
    else:
        update = {"status": "failed" if final else "running", "error": error}
        if final:
            update["completed_at"] = now
    record = replace(previous, **update)
    state.steps[step_index] = record
    return record


def end_run(
    state: RunState,
    lease: Lease,
    *,
    status: EndStatus,
    result: Any,
    error: StepError | None,
    outcome: RunOutcome | None,
    now: datetime,
) -> RunRecord:
    check_fence(state, lease)
    state.run = state.run.model_copy(
        update={
            "status": status,
            "result": result,
            "error": error,
            "outcome": outcome,
            "completed_at": now,
            "updated_at": now,
            "lease_holder": None,
            "lease_expires_at": None,
        }
    )
    return state.snapshot()


def emit_event(
    state: RunState, key: str, payload: Any, *, lease: Lease | None, now: datetime
) -> tuple[bool, EventRecord]:
    if lease is not None:
        check_fence(state, lease)
    existing = state.events.get(key)
    if existing is not None:
        # Also after the end: a retried sender learns its key was taken, not an error.
        return False, existing
    if not state.run.active:
        raise run_ended(state.run.run_id)
    record = EventRecord(run_id=state.run.run_id, key=key, payload=payload, emitted_at=now)
    state.events[key] = record
    return True, record


def cancelled_error(run_id: str, reason: str) -> StepError:
    """The error a cancelled run ends with, on every store and in the runner."""
    error = cancelled(run_id, reason)
    return StepError(message=error.message, type=type(error).__name__, code=error.code)


def cancel(state: RunState, reason: str, *, now: datetime) -> CancelOutcome:
    """Apply a cancellation to one run; ``state.run`` is replaced only if it changed.

    A holder with a live lease is asked (``cancel_requested``, the first reason
    kept); a run no one holds ends here, and the generation moves on so a
    holder that comes back is fenced even if it still thinks its lease live.
    """
    run = state.run
    if not run.active:
        return "already_ended"
    if not lease_free(run, now):
        if run.cancel_requested is None:
            state.run = run.model_copy(update={"cancel_requested": reason, "updated_at": now})
        return "requested"
    kept = run.cancel_requested or reason
    state.run = run.model_copy(
        update={
            "status": "cancelled",
            "error": cancelled_error(run.run_id, kept),
            "cancel_requested": kept,
            "completed_at": now,
            "updated_at": now,
            "lease_holder": None,
            "lease_expires_at": None,
            "lease_generation": run.lease_generation + 1,
        }
    )
    return "cancelled"


class Cancellable(Protocol):
    """What ``cancel_tree`` needs of a store."""

    async def load_run(self, run_id: str) -> RunRecord | None: ...

    async def list_children(self, run_id: str) -> list[RunRecord]: ...

    async def _cancel_one(
        self, run_id: str, reason: str, now: datetime
    ) -> tuple[CancelOutcome, RunRecord]:
        """Apply ``cancel`` to one run atomically; ``run_not_found`` if it does not exist."""
        ...


async def cancel_tree(
    store: Cancellable, run_id: str, reason: str, *, now: datetime
) -> tuple[CancelOutcome, RunRecord]:
    """``request_cancel`` for every store: the run's descendants first, the run last.

    Each run changes atomically on its own; the tree does not. Descendants go
    first, deepest first, so a crash part way leaves the run itself running,
    and asking again finishes the job instead of finding it ``already_ended``.
    """
    run = await store.load_run(run_id)
    if run is None:
        raise run_not_found(run_id)
    if not run.active:
        return "already_ended", run
    descendants: list[tuple[RunRecord, str]] = []
    pending = [(run_id, run.cancel_requested or reason)]
    seen = {run_id}
    while pending:
        parent, parent_reason = pending.pop(0)
        child_reason = parent_cancelled_reason(parent, parent_reason)
        for child in await store.list_children(parent):
            if child.run_id in seen:
                continue  # a hand-edited store could hold a cycle; never loop on it
            seen.add(child.run_id)
            descendants.append((child, child_reason))
            # Ended children are walked too: a run of theirs still running is an orphan.
            pending.append((child.run_id, child.cancel_requested or child_reason))
    # One worker executes a run and its children. When the run's lease has lapsed,
    # that worker is gone: a child lease of its that outlives the run's by moments
    # is just as dead, so the child ends now too instead of waiting for no one.
    unheld = run.lease_expires_at is None or run.lease_expires_at <= now
    for child, child_reason in reversed(descendants):
        if child.active:
            when = now
            if unheld and child.lease_holder == run.lease_holder and child.lease_expires_at:
                when = max(now, child.lease_expires_at)
            await store._cancel_one(child.run_id, child_reason, when)
    return await store._cancel_one(run_id, reason, now)
