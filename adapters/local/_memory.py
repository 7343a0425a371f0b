"""``InMemoryStore``: the durable-run store for tests and single-process development."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from durable import (
    ENDED_STATUSES,
    CancelOutcome,
    Checkpoint,
    CheckpointInfo,
    DurableRunManifest,
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
)
from durable._live import live_position_error, text_end

from . import _ledger as ledger
from ._lease_keeper import LeaseKeeper
from ._retention import ended_at, purge_root
from ._store import (
    EmitResult,
    EndStatus,
    PurgeCounts,
    Resumed,
    checked_event,
    cursor_not_found,
    run_not_found,
    utc_now,
)

__all__ = ["InMemoryStore"]


class InMemoryStore:
    """Keeps runs in dictionaries; leases and fences are enforced exactly as on disk."""

    def __init__(self) -> None:
        self._runs: dict[str, ledger.RunState] = {}
        self._live: dict[str, list[LiveEvent]] = {}
        # The lease keeper renews from its own thread. Every replacement of a run's
        # record (take over, renew, end, cancel) holds this lock, so a renewal that read the
        # record before a takeover or an end can never write it back over them.
        self._records = threading.Lock()
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="durable-memory-leases")

    def _state(self, run_id: str) -> ledger.RunState:
        state = self._runs.get(run_id)
        if state is None:
            raise run_not_found(run_id)
        return state

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
        now = utc_now()
        state = self._runs.get(run_id)
        if state is None:
            state = ledger.new_run(run_id=run_id, agent=agent, manifest=manifest, now=now)
            self._runs[run_id] = state
        with self._records:
            if ledger.restartable(state.run, manifest, retry_failed=retry_failed) and not any(
                s.run.parent_run_id == run_id for s in self._runs.values()
            ):
                fresh = ledger.restart(
                    state,
                    agent=agent,
                    manifest=manifest,
                    worker_id=worker_id,
                    now=now,
                    lease_for=lease_for,
                )
                self._live.pop(run_id, None)
                return Resumed(run=state.snapshot(), steps=[], lease=fresh, restarted=True)
            taken = ledger.acquire(
                state, manifest=manifest, worker_id=worker_id, now=now, lease_for=lease_for
            )
        steps = [state.steps[i] for i in sorted(state.steps)]
        lease, kind = taken or (None, None)
        return Resumed(run=state.snapshot(), steps=steps, lease=lease, resumed=kind)

    async def clear_recoveries(self, lease: Lease) -> None:
        state = self._state(lease.run_id)
        with self._records:
            ledger.clear_recoveries(state, lease, now=utc_now())

    async def set_waiting(self, lease: Lease, waiting: WaitingState | None) -> None:
        state = self._state(lease.run_id)
        with self._records:
            ledger.set_waiting(state, lease, waiting, now=utc_now())

    async def renew_lease(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        return self.renew_lease_blocking(lease, lease_for=lease_for)

    def renew_lease_blocking(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        state = self._state(lease.run_id)
        with self._records:
            return ledger.renew(state, lease, now=utc_now(), lease_for=lease_for)

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
        record = ledger.begin_step(
            self._state(lease.run_id),
            lease,
            step_index=step_index,
            intent=intent,
            kind=kind,
            input_hash=input_hash,
            deadline=deadline,
            now=utc_now(),
        )
        return None if deadline is None else record.deadline

    async def complete_step(self, lease: Lease, *, step_index: int, result: Any) -> None:
        ledger.finish_step(
            self._state(lease.run_id), lease, step_index=step_index, result=result, now=utc_now()
        )

    async def fail_step(
        self, lease: Lease, *, step_index: int, error: StepError, final: bool
    ) -> None:
        ledger.finish_step(
            self._state(lease.run_id),
            lease,
            step_index=step_index,
            error=error,
            final=final,
            now=utc_now(),
        )

    async def end_run(
        self,
        lease: Lease,
        *,
        status: EndStatus,
        result: Any = None,
        error: StepError | None = None,
        outcome: RunOutcome | None = None,
    ) -> RunRecord:
        state = self._state(lease.run_id)
        with self._records:
            return ledger.end_run(
                state,
                lease,
                status=status,
                result=result,
                error=error,
                outcome=outcome,
                now=utc_now(),
            )

    async def request_cancel(
        self, run_id: str, reason: str, *, now: datetime | None = None
    ) -> tuple[CancelOutcome, RunRecord]:
        return await ledger.cancel_tree(self, run_id, reason, now=now or utc_now())

    async def _cancel_one(
        self, run_id: str, reason: str, now: datetime
    ) -> tuple[CancelOutcome, RunRecord]:
        state = self._state(run_id)
        with self._records:
            return ledger.cancel(state, reason, now=now), state.snapshot()

    async def list_children(self, run_id: str) -> list[RunRecord]:
        runs = [s.snapshot() for s in self._runs.values() if s.run.parent_run_id == run_id]
        return sorted(runs, key=ledger.creation_order)

    async def emit_event(
        self, run_id: str, key: str, payload: Any, *, lease: Lease | None = None
    ) -> EmitResult:
        data = checked_event(run_id, key, payload)
        accepted, record = ledger.emit_event(
            self._state(run_id), key, data, lease=lease, now=utc_now()
        )
        return EmitResult(accepted=accepted, record=record)

    async def load_event(self, run_id: str, key: str) -> EventRecord | None:
        state = self._runs.get(run_id)
        return None if state is None else state.events.get(key)

    async def load_run(self, run_id: str) -> RunRecord | None:
        state = self._runs.get(run_id)
        return None if state is None else state.snapshot()

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        state = self._runs.get(run_id)
        return [] if state is None else [state.steps[i] for i in sorted(state.steps)]

    async def load_manifest(self, run_id: str) -> DurableRunManifest | None:
        state = self._runs.get(run_id)
        return None if state is None else state.manifest

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        newest: bool = False,
        before: str | None = None,
    ) -> list[RunRecord]:
        cursor = None
        if before is not None:
            if before not in self._runs:
                raise cursor_not_found(before)
            cursor = ledger.creation_order(self._runs[before].run)
        runs = [
            s.snapshot()
            for s in self._runs.values()
            if ledger.listed(s.run, status=status, agent=agent, before=cursor)
        ]
        ordered = sorted(runs, key=ledger.creation_order)
        return ordered[-limit:] if newest and limit else ordered[:limit]

    async def list_expired_runs(
        self, *, now: datetime, limit: int = 100, agents: Collection[str] | None = None
    ) -> list[RunRecord]:
        hosted = None if agents is None else frozenset(agents)
        runs = [s.snapshot() for s in self._runs.values() if ledger.recoverable(s.run, now, hosted)]
        return sorted(runs, key=ledger.creation_order)[:limit]

    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        self._state(run_id)
        log = self._live.setdefault(run_id, [])
        base = len(log)
        log.extend(e.model_copy(update={"seq": base + i}) for i, e in enumerate(events, 1))

    async def read_live(self, run_id: str, *, after: int = 0, limit: int = 500) -> list[LiveEvent]:
        log = self._live.get(run_id, [])
        if not 0 <= after <= len(log):
            raise live_position_error(run_id, after, len(log))
        return log[after : after + limit]

    async def live_text_end(self, run_id: str, step_index: int) -> int:
        return text_end(self._live.get(run_id, []), step_index)

    async def write_checkpoint(self, lease: Lease, info: CheckpointInfo, text: str) -> None:
        state = self._state(lease.run_id)
        ledger.check_fence(state, lease)
        state.checkpoints[info.name] = (info, text)

    async def delete_checkpoint(self, lease: Lease, name: str) -> bool:
        state = self._state(lease.run_id)
        ledger.check_fence(state, lease)
        return state.checkpoints.pop(name, None) is not None

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        state = self._runs.get(run_id)
        kept = {} if state is None else state.checkpoints
        return [kept[name][0] for name in sorted(kept)]

    async def read_checkpoint(self, run_id: str, name: str) -> Checkpoint | None:
        state = self._runs.get(run_id)
        found = None if state is None else state.checkpoints.get(name)
        if found is None:
            return None
        return Checkpoint.of(*found)

    async def list_purgeable_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[str],
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        runs = [
            s.snapshot()
            for s in self._runs.values()
            if purge_root(s.run, exists=self._runs, ended_before=ended_before, statuses=statuses)
        ]
        ordered = sorted(runs, key=lambda run: (ended_at(run), run.run_id))
        return [r for r in ordered if after is None or (ended_at(r), r.run_id) > after][:limit]

    async def delete_runs(self, run_ids: Sequence[str]) -> PurgeCounts:
        counts = PurgeCounts()
        for run_id in run_ids:
            state = self._runs.get(run_id)
            if state is None or state.run.status not in ENDED_STATUSES:
                continue
            del self._runs[run_id]
            counts += PurgeCounts(
                runs=1,
                steps=len(state.steps),
                events=len(state.events),
                live=len(self._live.pop(run_id, [])),
                checkpoints=len(state.checkpoints),
            )
        return counts

    async def close(self) -> None:
        self.lease_keeper.close()
