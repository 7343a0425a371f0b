"""The store protocol every local store implements, and the lease fence it enforces."""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from durable import (
    CancelOutcome,
    Checkpoint,
    CheckpointInfo,
    DurableRunEndedError,
    DurableRunManifest,
    DurableRunNotFoundError,
    EventRecord,
    Lease,
    LiveEvent,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepError,
    StepKind,
    StepRecord,
    WaitingState,
    check_name,
    event_payload,
)
from durable._failures import run_ended_error

from ._lease_keeper import LeaseKeeper

__all__ = [
    "RETRIED_STATUSES",
    "DurableRunStore",
    "EmitResult",
    "EndStatus",
    "PurgeCounts",
    "ResumeKind",
    "Resumed",
    "cursor_not_found",
    "gc_paused",
    "utc_now",
]

EndStatus = Literal["completed", "failed", "cancelled"]
"""How a run may end; each is final."""

ResumeKind = Literal["crash", "explicit"]
"""How ``start_or_resume`` took an existing run: ``crash`` took over the lease of
another worker after it lapsed (that worker crashed or was killed), which counts
a recovery (``RunRecord.recoveries``); ``explicit`` took a run that had no
holder, or that this worker already held."""


RETRIED_STATUSES: frozenset[str] = frozenset({"failed", "cancelled"})
"""How a run may have ended for ``start_or_resume(retry_failed=True)`` to start it again.

The run-id rule, the same on Temporal (``WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY``):
a run started with ``retry_failed`` whose previous run under that id failed or was
cancelled starts again fresh, and the old run's records are discarded, so its
failure never replays. A completed run is never run again. Without ``retry_failed``
every ended run is final. A run that has child runs is not started again either:
its children's ids are taken, and a fresh run calling them would meet their old
outcomes (on Temporal, refused ids)."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while bulk-building acyclic records.

    Loading a long run creates thousands of records at once; the collector
    would rescan them again and again as they are created, which makes loading
    grow faster than the number of steps.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Resumed:
    """What ``start_or_resume`` hands the runner.

    ``lease`` is ``None`` when the run had already ended: nothing may be written.
    ``steps`` holds every step begun so far, in position order. ``resumed`` says
    how an existing run was taken; ``None`` when this call created the run or
    the run had ended. ``restarted``: the run had failed or was cancelled, and
    this call started it again fresh (``retry_failed``); ``resumed`` is ``None``.
    """

    run: RunRecord
    steps: list[StepRecord]
    lease: Lease | None
    resumed: ResumeKind | None = None
    restarted: bool = False


@dataclass(frozen=True, slots=True)
class EmitResult:
    accepted: bool
    """``False`` when the key had already been emitted: the first emit wins."""
    record: EventRecord


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """What ``delete_runs`` removed: runs, and the records they held."""

    runs: int = 0
    steps: int = 0
    events: int = 0
    live: int = 0
    """Entries of the runs' live streams."""
    checkpoints: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(
            runs=self.runs + other.runs,
            steps=self.steps + other.steps,
            events=self.events + other.events,
            live=self.live + other.live,
            checkpoints=self.checkpoints + other.checkpoints,
        )


class DurableRunStore(Protocol):
    """Durable state of local runs.

    At most one worker holds a run's lease. Every write made under a lease
    (begin, complete, fail, emit, end) is fenced by the lease's holder and
    generation: once another worker takes over, the old holder's writes raise
    ``DurableRunLeaseLostError`` and change nothing.
    """

    async def start_or_resume(
        self,
        *,
        run_id: str,
        agent: str,
        manifest: DurableRunManifest,
        worker_id: str,
        lease_for: timedelta,
        retry_failed: bool = False,
    ) -> Resumed:
        """Create the run or take it over, and load all its steps in one read.

        Taking over a lease another worker let lapse counts a recovery on the
        run (``recoveries`` + 1, ``recovered_from`` = that worker) in the same
        atomic change as the takeover. Raises ``DurableRunInputMismatchError``
        if the run exists with another manifest, ``DurableRunLeaseHeldError`` if
        another worker holds a live lease.

        An ended run comes back with no lease, except with ``retry_failed``: a
        run that ended ``failed`` or ``cancelled`` (``RETRIED_STATUSES``) and has
        no child runs starts again fresh under this call's lease, in one change
        fenced by the ended run's generation. Its steps, events, live stream and
        checkpoints are discarded first, its ``created_at`` becomes now, and
        ``Resumed.restarted`` is ``True``. Of two callers retrying it together,
        one restarts it and the other gets ``DurableRunLeaseHeldError``.
        """
        ...

    async def clear_recoveries(self, lease: Lease) -> None:
        """Count the run's recoveries from 0 again: it got past where its worker died.

        Fenced like every write under the lease. Without it, a run that waits for
        days would be failed as a poison run after enough unrelated worker deaths.
        """
        ...

    async def set_waiting(self, lease: Lease, waiting: WaitingState | None) -> None:
        """Record that the holder's run waits (``waiting``, ``waiting_for_approval``)
        or runs again (``None``); fenced like every write under the lease.

        A takeover sets the run ``running`` again: its code waits anew when it
        gets back to the wait.
        """
        ...

    async def renew_lease(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """Extend the lease; raises ``DurableRunLeaseLostError`` if it was taken over."""
        ...

    def renew_lease_blocking(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """``renew_lease`` for the lease keeper's thread: blocking, thread-safe.

        It never goes through the event loop nor shares the loop's connection,
        so it works while a step blocks the loop. The same fence applies.
        """
        ...

    @property
    def lease_keeper(self) -> LeaseKeeper:
        """The thread that renews this store's leases while their runs execute."""
        ...

    async def begin_step(
        self,
        lease: Lease,
        *,
        step_index: int,
        intent: str,
        kind: StepKind,
        input_hash: str,
        deadline: datetime | None = None,
    ) -> datetime | None:
        """Record an attempt. Given a ``deadline``, return the step's: the first one
        recorded for it, kept across attempts and resumes; else return ``None``."""
        ...

    async def complete_step(self, lease: Lease, *, step_index: int, result: Any) -> None: ...

    async def fail_step(
        self, lease: Lease, *, step_index: int, error: StepError, final: bool
    ) -> None:
        """Record a failed attempt; ``final`` marks the step failed for good."""
        ...

    async def end_run(
        self,
        lease: Lease,
        *,
        status: EndStatus,
        result: Any = None,
        error: StepError | None = None,
        outcome: RunOutcome | None = None,
    ) -> RunRecord:
        """Finish the run and release the lease; every status is final.

        A run ends ``cancelled`` with ``error`` saying why (a ``StepError`` of
        type ``DurableRunCancelledError``, code ``cancelled``).
        """
        ...

    async def request_cancel(
        self, run_id: str, reason: str, *, now: datetime | None = None
    ) -> tuple[CancelOutcome, RunRecord]:
        """Cancel the run and every descendant still running; return what was done.

        An ended run is left as it is (``already_ended``). A run whose lease is
        live at ``now`` gets ``cancel_requested = reason`` (the first request's
        reason is kept) and its holder ends it (``requested``); a run no worker
        holds ends ``cancelled`` here, its lease fenced (``cancelled``). The
        same rule applies to each running descendant, whose reason names its
        parent (``parent_cancelled_reason``). Raises ``DurableRunNotFoundError``
        when no run has this id.
        """
        ...

    async def list_children(self, run_id: str) -> list[RunRecord]:
        """The runs started as children of ``run_id``, in creation order.

        Runs created in the same millisecond come in run id order.
        """
        ...

    async def emit_event(
        self, run_id: str, key: str, payload: Any, *, lease: Lease | None = None
    ) -> EmitResult:
        """Store an event once; fenced when emitted by the run itself under ``lease``.

        Raises ``DurableRunNotFoundError`` when no run has this id.
        """
        ...

    async def load_event(self, run_id: str, key: str) -> EventRecord | None: ...

    async def load_run(self, run_id: str) -> RunRecord | None: ...

    async def load_steps(self, run_id: str) -> list[StepRecord]: ...

    async def load_manifest(self, run_id: str) -> DurableRunManifest | None:
        """The manifest the run was started with, to resume it by id alone."""
        ...

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        newest: bool = False,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Runs in creation order (``created_at``, then run id), optionally only those in
        ``status`` and of ``agent``; with ``newest``, the ``limit`` newest runs, still
        oldest first.

        ``before`` (a run id) keeps only runs created before that run, so a caller
        pages back through runs with the oldest id of the page it has. Raises
        ``DurableRunNotFoundError`` when no run has that id.
        """
        ...

    async def list_expired_runs(
        self, *, now: datetime, limit: int = 100, agents: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Running runs whose lease has no expiry or expired at ``now``, in creation order.

        What a recovering worker may take over. Child runs are left out: the
        worker that resumes a parent resumes its children. The store filters out live
        leases itself, so no number of held runs can hide an abandoned one;
        ``agents``, when given, keeps only runs of those agents, so no number of
        runs the worker cannot host hides one it can.
        """
        ...

    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        """Append to the run's live stream, in order; each entry gets the next ``seq``.

        Not fenced and not synced: the stream is progress for watchers, never
        state a run replays from.
        """
        ...

    async def read_live(self, run_id: str, *, after: int = 0, limit: int = 500) -> list[LiveEvent]:
        """Up to ``limit`` live entries after position ``after``, each with its ``seq``.

        An entry's ``seq`` is its position in the run's stream: 1 for the first
        entry, on every store. ``after`` is 0 or a position the stream already
        holds; any other value raises ``ValueError`` (``durable._live.live_position_error``).
        """
        ...

    async def live_text_end(self, run_id: str, step_index: int) -> int:
        """How much of a step's text its token deltas already published (see ``TokenDeltas``)."""
        ...

    async def write_checkpoint(self, lease: Lease, info: CheckpointInfo, text: str) -> None:
        """Keep checkpoint ``info.name`` of the lease's run, replacing any of that name.

        ``text`` is the payload's canonical JSON. Fenced like every write under the lease.
        """
        ...

    async def delete_checkpoint(self, lease: Lease, name: str) -> bool:
        """Remove checkpoint ``name`` of the lease's run; ``False`` if it had none. Fenced."""
        ...

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints by name, without payloads; none for an unknown run."""
        ...

    async def read_checkpoint(self, run_id: str, name: str) -> Checkpoint | None:
        """Checkpoint ``name`` of the run with its payload; ``None`` if there is none."""
        ...

    async def list_purgeable_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[str],
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Ended runs a purge starts from, by ``(completed_at, run_id)`` after ``after``.

        A run qualifies when its status is one of ``statuses`` (ended ones only),
        it ended before ``ended_before``, and it has no parent in the store: a
        child run goes with its parent (``durable_agents.adapters.local._retention``).
        """
        ...

    async def delete_runs(self, run_ids: Sequence[str]) -> PurgeCounts:
        """Delete these runs with their steps, events, live streams and checkpoints.

        Only runs that ended are deleted; any other id is left as it is. A run's
        records go before the run itself, so an interrupted delete leaves an
        ended run that the next purge finishes, never records without their run.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...


def run_ended(run_id: str) -> DurableRunEndedError:
    return run_ended_error(run_id)


def run_not_found(run_id: str) -> DurableRunNotFoundError:
    return DurableRunNotFoundError(
        f"no run {run_id!r} exists in this store; start it first (run_durable, or "
        "`durable run --local`), or check the run id and the store location"
    )


def cursor_not_found(run_id: str) -> DurableRunNotFoundError:
    """``list_runs(before=run_id)`` named a run the store does not have."""
    return DurableRunNotFoundError(
        f"no run {run_id!r} to list the runs before; page with the id of a run the "
        "previous page listed, or start again from the newest runs"
    )


def checked_event(run_id: str, key: str, payload: Any) -> Any:
    """Validate an event at the store boundary; return a private JSON copy of its payload."""
    check_name(run_id, what="run_id")
    check_name(key, what="event key")
    return event_payload(payload, what=f"event {key!r}")
