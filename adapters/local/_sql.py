"""The SQL store shared by SQLite and PostgreSQL: one schema, one set of statements.

Every write made under a lease is a single statement whose ``WHERE`` clause
includes the fence (holder, generation, run still running), so a worker that
was taken over changes nothing and learns it from the row count. Takeover is
one conditional ``UPDATE``. A run's steps load in one query.

Times are stored as integer milliseconds since the epoch (UTC) so leases and
deadlines compare numerically in both databases; JSON is stored as text. The
schema and its migration live in ``_schema``; the statements of context
checkpoints and of purges in ``_sql_checkpoints`` and ``_sql_purge``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import from_json

from durable import (
    CancelOutcome,
    DurableRunManifest,
    DurableStoreError,
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
    manifest_hash,
)
from durable._codec import dumps
from durable._live import live_position_error

from . import _ledger as ledger
from ._group_commit import GroupCommit, Outcome, Write
from ._lease_keeper import LeaseKeeper, renewal_timeout
from ._ledger import lease_held_error, lease_lost_error
from ._schema import Row
from ._sql_checkpoints import SqlCheckpoints
from ._sql_purge import SqlPurge
from ._store import (
    RETRIED_STATUSES,
    EmitResult,
    EndStatus,
    Resumed,
    ResumeKind,
    checked_event,
    cursor_not_found,
    gc_paused,
    run_ended,
    run_not_found,
    utc_now,
)

__all__ = ["SqlStore"]


_RENEW = (
    "UPDATE durable_runs SET lease_expires_at = ?, updated_at = ? WHERE run_id = ? "
    "AND lease_holder = ? AND lease_generation = ? AND status = 'running'"
)
# Takeover, as ledger.acquire decides it, in two conditional statements: each is
# atomic, and together they take exactly the runs acquire would. The first takes
# over another worker's lapsed lease and counts the recovery in the same change;
# the second takes a run no one holds or this worker holds already.
_TAKEOVER = (
    "UPDATE durable_runs SET lease_holder = ?, lease_generation = lease_generation + 1, "
    "lease_expires_at = ?, updated_at = ?, waiting = NULL{counted} "
    "WHERE run_id = ? AND status = 'running' "
    "AND {holder} RETURNING lease_generation, recoveries, recovered_from"
)
_RECOVER = _TAKEOVER.format(
    counted=", recoveries = recoveries + 1, recovered_from = lease_holder",
    holder="lease_holder IS NOT NULL AND (lease_expires_at IS NULL OR lease_expires_at <= ?)",
)
_RESUME = _TAKEOVER.format(
    counted="", holder="(lease_holder IS NULL OR (lease_holder = ? AND lease_expires_at > ?))"
)
_FENCE = (
    "EXISTS (SELECT 1 FROM durable_runs WHERE run_id = ? AND lease_holder = ? "
    "AND lease_generation = ? AND status = 'running')"
)
_RUN_COLUMNS = (
    "run_id, agent, manifest_hash, project_id, scenario_id, status, created_at, updated_at, "
    "completed_at, lease_holder, lease_generation, lease_expires_at, outcome, result, error, "
    "parent_run_id, cancel_requested, recoveries, recovered_from, waiting, "
    "(SELECT COUNT(*) FROM durable_steps s WHERE s.run_id = durable_runs.run_id)"
)
_STEP_COLUMNS = (
    "run_id, step_index, intent, kind, input_hash, status, attempts, result, error, "
    "started_at, completed_at, deadline"
)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _at(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _time(value: int | None) -> datetime | None:
    return None if value is None else _at(value)


def _json(text: str | None) -> Any:
    # pydantic-core's parser costs a fraction of json.loads per call on small values.
    return None if text is None else from_json(text)


def _fence(lease: Lease) -> tuple[str, str, int]:
    return (lease.run_id, lease.holder, lease.generation)


def _status_filter(status: RunStatus | None) -> tuple[str, tuple[Any, ...]]:
    """The condition finding runs in ``status``; see ``_run_record`` for the columns."""
    if status is None:
        return "", ()
    if status == "running":
        return "status = 'running' AND waiting IS NULL", ()
    if status in ("waiting", "waiting_for_approval"):
        return "status = 'running' AND waiting = ?", (status,)
    return "status = ?", (status,)


def _run_record(row: Row) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        agent=row[1],
        manifest_hash=row[2],
        project_id=row[3],
        scenario_id=row[4],
        # A live run is 'running' in its row, and what it waits for beside it, so the
        # lease statements and the expiry index read one column.
        status=row[19] if row[5] == "running" and row[19] else row[5],
        created_at=_at(row[6]),
        updated_at=_at(row[7]),
        completed_at=_time(row[8]),
        lease_holder=row[9],
        lease_generation=row[10],
        lease_expires_at=_time(row[11]),
        outcome=None if row[12] is None else RunOutcome.model_validate_json(row[12]),
        result=_json(row[13]),
        error=None if row[14] is None else StepError.model_validate_json(row[14]),
        parent_run_id=row[15],
        cancel_requested=row[16],
        recoveries=row[17],
        recovered_from=row[18],
        step_count=row[20],
    )


def _step_record(row: Row) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        step_index=row[1],
        intent=row[2],
        kind=row[3],
        input_hash=row[4],
        status=row[5],
        attempts=row[6],
        result=_json(row[7]),
        error=None if row[8] is None else StepError.model_validate_json(row[8]),
        started_at=_time(row[9]),
        completed_at=_time(row[10]),
        deadline=_time(row[11]),
    )


_CANCEL_ATTEMPTS = 16
"""How many times a run may change under one cancellation, or one start, before
it is refused."""

_RETRIED = ", ".join(f"'{status}'" for status in sorted(RETRIED_STATUSES))
_RUN_RECORDS = ("durable_steps", "durable_events", "durable_live", "durable_checkpoints")
"""The tables holding a run's records besides its row: what a restart discards."""

_LIVE_CURSORS = 1024
"""How many stream positions a store remembers, for watchers reading on."""


class SqlStore(SqlCheckpoints, SqlPurge, ABC):
    """Store logic over two primitives a dialect provides: ``_fetch`` and ``_execute``.

    Statements are written with ``?`` placeholders; a dialect that uses another
    style rewrites them in ``_fetch`` / ``_execute``.
    """

    _cursors: OrderedDict[tuple[str, int], int] | None = None

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one statement and return its rows."""

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement and return the number of rows it changed."""

    @abstractmethod
    def _execute_blocking(self, sql: str, params: Sequence[Any], *, timeout: float) -> int:
        """Run one statement on the lease keeper's own connection, from any thread.

        Waits for locks and the server at most ``timeout`` seconds, then raises.
        """

    @abstractmethod
    async def close(self) -> None: ...

    lease_keeper: LeaseKeeper
    """Renews leases through ``renew_lease_blocking``; a dialect creates it."""

    @abstractmethod
    async def _run_batch(self, writes: Sequence[Write]) -> list[Outcome]:
        """Run ``writes`` in one transaction, in order, and commit once; an outcome each.

        A write that fails gives its error as its outcome and the others go on; a
        batch that cannot commit gives its error to every write. The commit waits
        for the disk unless no write is ``synced``.
        """

    _group: GroupCommit | None = None

    async def _write(self, write: Write) -> list[Row] | int:
        """A write committed with the other writes of this store made at the same time."""
        if self._group is None:
            self._group = GroupCommit(self._run_batch)
        # One run in this process (or none: a caller outside runs) has no one to share with.
        return await self._group.submit(write, alone=self.lease_keeper.holding <= 1)

    async def _execute_unsynced(self, sql: str, params: Sequence[Any]) -> int:
        """``_execute`` for writes a crash may lose, such as the live stream: grouped with
        the step writes made at the same time, and not waiting for the disk alone."""
        changed = await self._write(Write(sql, params, synced=False))
        assert isinstance(changed, int)
        return changed

    async def _explain(self, lease: Lease, *, step_index: int | None = None) -> Exception:
        """Why a fenced write changed no row: no run, a lost lease, or a step never begun."""
        run = await self.load_run(lease.run_id)
        if run is None:
            return run_not_found(lease.run_id)
        if (
            not run.active
            or run.lease_holder != lease.holder
            or run.lease_generation != lease.generation
        ):
            return lease_lost_error(lease.run_id, lease, run)
        return DurableStoreError(
            f"step {step_index} of run {lease.run_id!r} was never begun; "
            "call begin_step before completing or failing it"
        )

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
        for _ in range(_CANCEL_ATTEMPTS):
            resumed = await self._start_or_resume(
                run_id, agent, manifest, worker_id, lease_for, retry_failed
            )
            if resumed is not None:
                return resumed
        raise DurableStoreError(
            f"run {run_id!r} changed {_CANCEL_ATTEMPTS} times while it was being started "
            "again; try again, and check for callers retrying it in a loop"
        )

    async def _start_or_resume(
        self,
        run_id: str,
        agent: str,
        manifest: DurableRunManifest,
        worker_id: str,
        lease_for: timedelta,
        retry_failed: bool,
    ) -> Resumed | None:
        """``start_or_resume`` once; ``None`` when a restart found the run changed meanwhile."""
        now = utc_now()
        expires = now + lease_for
        digest = manifest_hash(manifest)
        created = await self._execute(
            "INSERT INTO durable_runs (run_id, agent, manifest_hash, manifest, project_id, "
            "scenario_id, parent_run_id, status, created_at, updated_at, lease_holder, "
            "lease_generation, lease_expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, 1, ?) "
            "ON CONFLICT (run_id) DO NOTHING",
            (
                run_id,
                agent,
                digest,
                manifest.model_dump_json(),
                manifest.project_id,
                manifest.scenario_id,
                manifest.parent_run_id,
                _ms(now),
                _ms(now),
                worker_id,
                _ms(expires),
            ),
        )
        run = await self.load_run(run_id)
        if run is None:
            raise DurableStoreError(
                f"run {run_id!r} vanished right after it was created; "
                "check that nothing else deletes rows from durable_runs"
            )
        resumed: ResumeKind | None = None
        if not created:
            restartable = ledger.restartable(run, manifest, retry_failed=retry_failed)
            if restartable and not await self._has_children(run_id):
                return await self._restart(run, agent, manifest, worker_id, now, expires)
            if not run.active:
                return Resumed(run=run, steps=await self.load_steps(run_id), lease=None)
            taken = (worker_id, _ms(expires), _ms(now), run_id)
            resumed = "crash"
            rows = await self._fetch(_RECOVER, (*taken, _ms(now)))
            if not rows:
                resumed = "explicit"
                rows = await self._fetch(_RESUME, (*taken, worker_id, _ms(now)))
            if not rows:
                latest = await self.load_run(run_id)
                if latest is not None and not latest.active:
                    if retry_failed and latest.status in RETRIED_STATUSES:
                        return None  # it ended just now: decide again
                    return Resumed(run=latest, steps=await self.load_steps(run_id), lease=None)
                raise lease_held_error(latest or run, now)
            run = run.model_copy(
                update={
                    "status": "running",
                    "lease_holder": worker_id,
                    "lease_generation": rows[0][0],
                    "lease_expires_at": _time(_ms(expires)),
                    "recoveries": rows[0][1],
                    "recovered_from": rows[0][2],
                }
            )
        lease = Lease(
            run_id=run_id,
            holder=worker_id,
            generation=run.lease_generation,
            expires_at=run.lease_expires_at or expires,
        )
        steps = await self.load_steps(run_id)
        return Resumed(run=run, steps=steps, lease=lease, resumed=resumed)

    async def _has_children(self, run_id: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM durable_runs WHERE parent_run_id = ? LIMIT 1", (run_id,)
        )
        return bool(rows)

    async def _restart(
        self,
        run: RunRecord,
        agent: str,
        manifest: DurableRunManifest,
        worker_id: str,
        now: datetime,
        expires: datetime,
    ) -> Resumed | None:
        """Start the ended ``run`` again fresh (``ledger.restart``); ``None`` if it changed.

        Every statement holds only while the run is still the one read: ended, at
        the generation read. The records go first, each table in one statement, and
        the run's row changes last, so a crash in between leaves the run ended as it
        was, only with fewer records, and a retry finishes the job. Of two callers
        restarting it together, the second finds the generation moved on.
        """
        ended = (
            "EXISTS (SELECT 1 FROM durable_runs WHERE run_id = ? AND status IN "
            f"({_RETRIED}) AND lease_generation = ?)"
        )
        fence = (run.run_id, run.run_id, run.lease_generation)
        for table in _RUN_RECORDS:
            await self._execute(f"DELETE FROM {table} WHERE run_id = ? AND {ended}", fence)
        rows = await self._fetch(
            "UPDATE durable_runs SET agent = ?, manifest = ?, status = 'running', "
            "created_at = ?, updated_at = ?, completed_at = NULL, lease_holder = ?, "
            "lease_generation = lease_generation + 1, lease_expires_at = ?, outcome = NULL, "
            "result = NULL, error = NULL, cancel_requested = NULL, recoveries = 0, "
            "recovered_from = NULL, waiting = NULL "
            f"WHERE run_id = ? AND status IN ({_RETRIED}) AND lease_generation = ? "
            f"RETURNING {_RUN_COLUMNS}",
            (
                agent,
                manifest.model_dump_json(),
                _ms(now),
                _ms(now),
                worker_id,
                _ms(expires),
                run.run_id,
                run.lease_generation,
            ),
        )
        if not rows:
            return None
        self._forget_live(run.run_id)
        fresh = _run_record(rows[0])
        lease = Lease(
            run_id=run.run_id,
            holder=worker_id,
            generation=fresh.lease_generation,
            expires_at=fresh.lease_expires_at or expires,
        )
        return Resumed(run=fresh, steps=[], lease=lease, restarted=True)

    async def clear_recoveries(self, lease: Lease) -> None:
        cleared = await self._execute(
            "UPDATE durable_runs SET recoveries = 0, updated_at = ? WHERE run_id = ? "
            "AND lease_holder = ? AND lease_generation = ? AND status = 'running'",
            (_ms(utc_now()), *_fence(lease)),
        )
        if not cleared:
            raise await self._explain(lease)

    async def set_waiting(self, lease: Lease, waiting: WaitingState | None) -> None:
        marked = await self._execute(
            "UPDATE durable_runs SET waiting = ?, updated_at = ? WHERE run_id = ? "
            "AND lease_holder = ? AND lease_generation = ? AND status = 'running'",
            (waiting, _ms(utc_now()), *_fence(lease)),
        )
        if not marked:
            raise await self._explain(lease)

    async def renew_lease(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        # Runs renew from the keeper's thread; delegating keeps one home for the renewal.
        return await asyncio.to_thread(self.renew_lease_blocking, lease, lease_for=lease_for)

    def renew_lease_blocking(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        now = utc_now()
        expires = now + lease_for
        params = (_ms(expires), _ms(now), *_fence(lease))
        if not self._execute_blocking(_RENEW, params, timeout=renewal_timeout(lease_for)):
            # Taken over, ended or gone: this worker must stop in every case.
            raise lease_lost_error(lease.run_id, lease)
        return lease.model_copy(update={"expires_at": _time(_ms(expires))})

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
        now = _ms(utc_now())
        # Committed without waiting for the disk (the step's outcome waits for it, and
        # syncs this with it): a power cut before then loses only that the step began,
        # which runs it again as a crash would. Waits keep their deadline durable.
        rows = await self._write(
            Write(
                f"INSERT INTO durable_steps (run_id, step_index, intent, kind, input_hash, status, "
                f"attempts, started_at, deadline) SELECT CAST(? AS TEXT), CAST(? AS INTEGER), "
                f"CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), 'running', 1, "
                f"CAST(? AS BIGINT), CAST(? AS BIGINT) "
                f"WHERE {_FENCE} ON CONFLICT (run_id, step_index) DO UPDATE SET "
                f"attempts = durable_steps.attempts + 1, status = 'running', "
                f"deadline = COALESCE(durable_steps.deadline, excluded.deadline)"
                # Only a wait asks for its deadline back; a step needs only the row count.
                + ("" if deadline is None else " RETURNING deadline"),
                (
                    lease.run_id,
                    step_index,
                    intent,
                    kind,
                    input_hash,
                    now,
                    None if deadline is None else _ms(deadline),
                    *_fence(lease),
                ),
                returning=deadline is not None,
                synced=deadline is not None,
            )
        )
        if not rows:  # no row, or a count of 0
            raise await self._explain(lease)
        return None if isinstance(rows, int) else _time(rows[0][0])

    async def _finish_step(
        self, lease: Lease, step_index: int, assignments: str, params: Sequence[Any]
    ) -> None:
        changed = await self._write(
            Write(
                f"UPDATE durable_steps SET {assignments} WHERE run_id = ? AND step_index = ? "
                f"AND {_FENCE}",
                (*params, lease.run_id, step_index, *_fence(lease)),
            )
        )
        if not changed:
            raise await self._explain(lease, step_index=step_index)

    async def complete_step(self, lease: Lease, *, step_index: int, result: Any) -> None:
        await self._finish_step(
            lease,
            step_index,
            "status = 'completed', result = ?, error = NULL, completed_at = ?",
            (dumps(result), _ms(utc_now())),
        )

    async def fail_step(
        self, lease: Lease, *, step_index: int, error: StepError, final: bool
    ) -> None:
        await self._finish_step(
            lease,
            step_index,
            "status = ?, error = ?, completed_at = ?",
            (
                "failed" if final else "running",
                error.model_dump_json(),
                _ms(utc_now()) if final else None,
            ),
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
        now = _ms(utc_now())
        rows = await self._fetch(
            f"UPDATE durable_runs SET status = ?, result = ?, error = ?, outcome = ?, "
            f"completed_at = ?, updated_at = ?, lease_holder = NULL, lease_expires_at = NULL "
            f"WHERE run_id = ? AND lease_holder = ? AND lease_generation = ? "
            f"AND status = 'running' RETURNING {_RUN_COLUMNS}",
            (
                status,
                None if result is None else dumps(result),
                None if error is None else error.model_dump_json(),
                None if outcome is None else outcome.model_dump_json(by_alias=True),
                now,
                now,
                *_fence(lease),
            ),
        )
        if not rows:
            raise await self._explain(lease)
        return _run_record(rows[0])

    async def request_cancel(
        self, run_id: str, reason: str, *, now: datetime | None = None
    ) -> tuple[CancelOutcome, RunRecord]:
        return await ledger.cancel_tree(self, run_id, reason, now=now or utc_now())

    async def _cancel_one(
        self, run_id: str, reason: str, now: datetime
    ) -> tuple[CancelOutcome, RunRecord]:
        """``ledger.cancel`` as conditional ``UPDATE``s on the row as it was read.

        Each ``UPDATE`` holds only if the run is still what was read (its lease
        live or not, its generation, its first reason); a run that changed in
        between is read and decided again.
        """
        at = _ms(now)
        for _ in range(_CANCEL_ATTEMPTS):
            run = await self.load_run(run_id)
            if run is None:
                raise run_not_found(run_id)
            if not run.active:
                return "already_ended", run
            if not ledger.lease_free(run, now):
                rows = await self._fetch(
                    f"UPDATE durable_runs SET cancel_requested = COALESCE(cancel_requested, ?), "
                    f"updated_at = CASE WHEN cancel_requested IS NULL THEN ? ELSE updated_at END "
                    f"WHERE run_id = ? AND status = 'running' AND lease_expires_at > ? "
                    f"RETURNING {_RUN_COLUMNS}",
                    (reason, at, run_id, at),
                )
                if rows:
                    return "requested", _run_record(rows[0])
                continue
            kept = run.cancel_requested or reason
            same_reason, reason_params = (
                ("cancel_requested IS NULL", ())
                if run.cancel_requested is None
                else ("cancel_requested = ?", (run.cancel_requested,))
            )
            rows = await self._fetch(
                f"UPDATE durable_runs SET status = 'cancelled', error = ?, cancel_requested = ?, "
                f"completed_at = ?, updated_at = ?, lease_holder = NULL, lease_expires_at = NULL, "
                f"lease_generation = lease_generation + 1 "
                f"WHERE run_id = ? AND status = 'running' AND lease_generation = ? "
                f"AND (lease_expires_at IS NULL OR lease_expires_at <= ?) AND {same_reason} "
                f"RETURNING {_RUN_COLUMNS}",
                (
                    ledger.cancelled_error(run_id, kept).model_dump_json(),
                    kept,
                    at,
                    at,
                    run_id,
                    run.lease_generation,
                    at,
                    *reason_params,
                ),
            )
            if rows:
                return "cancelled", _run_record(rows[0])
        raise DurableStoreError(
            f"run {run_id!r} changed {_CANCEL_ATTEMPTS} times while it was being cancelled; "
            "ask again, and check for workers taking it over in a loop"
        )

    async def list_children(self, run_id: str) -> list[RunRecord]:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM durable_runs WHERE parent_run_id = ? "
            "ORDER BY created_at, run_id",
            (run_id,),
        )
        return [_run_record(row) for row in rows]

    async def emit_event(
        self, run_id: str, key: str, payload: Any, *, lease: Lease | None = None
    ) -> EmitResult:
        data = checked_event(run_id, key, payload)
        now = utc_now()
        guard_params: tuple[Any, ...]
        if lease is None:
            guard = "EXISTS (SELECT 1 FROM durable_runs WHERE run_id = ? AND status = 'running')"
            guard_params = (run_id,)
        else:
            guard, guard_params = _FENCE, _fence(lease)
        inserted = await self._execute(
            f"INSERT INTO durable_events (run_id, key, payload, emitted_at) "
            f"SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT) "
            f"WHERE {guard} ON CONFLICT (run_id, key) DO NOTHING",
            (run_id, key, dumps(data), _ms(now), *guard_params),
        )
        if inserted:
            record = EventRecord(run_id=run_id, key=key, payload=data, emitted_at=_at(_ms(now)))
            return EmitResult(accepted=True, record=record)
        if lease is None:
            run = await self.load_run(run_id)
            if run is None:
                raise run_not_found(run_id)
            if not run.active:
                # A retried sender (a webhook, say) learns its key was taken, not an error.
                existing = await self.load_event(run_id, key)
                if existing is None:
                    raise run_ended(run_id)
                return EmitResult(accepted=False, record=existing)
        else:
            # A fenced emit from a worker that lost its lease fails even if the key exists.
            run = await self.load_run(run_id)
            if (
                run is None
                or run.lease_generation != lease.generation
                or run.lease_holder != lease.holder
            ):
                raise await self._explain(lease)
        existing = await self.load_event(run_id, key)
        if existing is None:
            raise run_not_found(run_id)
        return EmitResult(accepted=False, record=existing)

    async def load_event(self, run_id: str, key: str) -> EventRecord | None:
        rows = await self._fetch(
            "SELECT run_id, key, payload, emitted_at FROM durable_events "
            "WHERE run_id = ? AND key = ?",
            (run_id, key),
        )
        if not rows:
            return None
        row = rows[0]
        return EventRecord(
            run_id=row[0], key=row[1], payload=from_json(row[2]), emitted_at=_at(row[3])
        )

    async def load_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM durable_runs WHERE run_id = ?", (run_id,)
        )
        return _run_record(rows[0]) if rows else None

    async def load_manifest(self, run_id: str) -> DurableRunManifest | None:
        rows = await self._fetch("SELECT manifest FROM durable_runs WHERE run_id = ?", (run_id,))
        return DurableRunManifest.model_validate_json(rows[0][0]) if rows else None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        newest: bool = False,
        before: str | None = None,
    ) -> list[RunRecord]:
        where, params = _status_filter(status)
        clauses = [where] if where else []
        if agent is not None:
            clauses.append("agent = ?")
            params += (agent,)
        if before is not None:
            found = await self._fetch(
                "SELECT created_at FROM durable_runs WHERE run_id = ?", (before,)
            )
            if not found:
                raise cursor_not_found(before)
            # A keyset on (created_at, run_id), the listing's order: a page costs the
            # same however far back it is, and runs created meanwhile never shift it.
            clauses.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params += (found[0][0], found[0][0], before)
        filtered = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        order = "DESC" if newest else "ASC"
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM durable_runs {filtered}"
            f"ORDER BY created_at {order}, run_id {order} LIMIT ?",
            (*params, limit),
        )
        runs = [_run_record(row) for row in rows]
        return runs[::-1] if newest else runs

    async def list_expired_runs(
        self, *, now: datetime, limit: int = 100, agents: Collection[str] | None = None
    ) -> list[RunRecord]:
        names = None if agents is None else sorted(set(agents))
        if names == []:
            return []
        hosted = "" if names is None else f" AND agent IN ({', '.join(['?'] * len(names))})"
        # Two searches of durable_runs_expiry, so live leases are never read: an OR of
        # both conditions makes SQLite scan every running run instead. Every write sets
        # or clears the expiry, so the NULL search finds nothing unless a row was edited.
        # Child runs are left out (see ledger.recoverable).
        select = (
            f"SELECT {_RUN_COLUMNS} FROM durable_runs WHERE status = 'running'{hosted} "
            "AND parent_run_id IS NULL AND "
        )
        rows = await self._fetch(
            f"{select}lease_expires_at <= ? UNION ALL {select}lease_expires_at IS NULL "
            "ORDER BY created_at, run_id LIMIT ?",
            (*(names or ()), _ms(now), *(names or ()), limit),
        )
        return [_run_record(row) for row in rows]

    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        if not events:
            return
        params: list[Any] = []
        for event in events:
            end = None
            if event.kind == "token" and event.text is not None:
                end = (event.offset or 0) + len(event.text)
            data = event.model_dump_json(exclude={"seq"}, exclude_none=True)
            params += (run_id, event.step, end, data)
        values = ", ".join(["(?, ?, ?, ?)"] * len(events))
        await self._execute_unsynced(
            f"INSERT INTO durable_live (run_id, step_index, text_end, event) VALUES {values}",
            params,
        )

    async def read_live(self, run_id: str, *, after: int = 0, limit: int = 500) -> list[LiveEvent]:
        # The table's seq is store-wide; an entry's position in its run's stream is its
        # rank among the run's rows, which the (run_id, seq) index walks in order.
        if after < 0:
            raise live_position_error(run_id, after, 0)
        cursors = self._live_cursors()
        known = cursors.get((run_id, after))
        if known is not None:
            # A watcher reading on from where it stopped: a range search, not a walk from 1.
            # The entry at the cursor comes too, proving the cursor still stands: the stream
            # of a run started again (another process may have done it) begins anew.
            rows = await self._fetch(
                "SELECT seq, event FROM durable_live WHERE run_id = ? AND seq >= ? "
                "ORDER BY seq LIMIT ?",
                (run_id, known, limit + 1),
            )
            if rows and int(rows[0][0]) == known:
                rows = rows[1:]
            else:
                cursors.pop((run_id, after), None)
                known = None
        if known is None:
            rows = await self._fetch(
                "SELECT seq, event FROM durable_live WHERE run_id = ? "
                "ORDER BY seq LIMIT ? OFFSET ?",
                (run_id, limit, after),
            )
        if rows:
            cursors[(run_id, after + len(rows))] = int(rows[-1][0])
            while len(cursors) > _LIVE_CURSORS:
                cursors.popitem(last=False)
        if not rows and after and known is None:
            counted = await self._fetch(
                "SELECT COUNT(*) FROM durable_live WHERE run_id = ?", (run_id,)
            )
            end = int(counted[0][0])
            if after > end:
                raise live_position_error(run_id, after, end)
        return [
            LiveEvent.model_validate_json(row[1]).model_copy(update={"seq": after + i})
            for i, row in enumerate(rows, 1)
        ]

    def _forget_live(self, run_id: str) -> None:
        """Drop the stream positions of ``run_id``: its stream begins anew."""
        cursors = self._live_cursors()
        for key in [key for key in cursors if key[0] == run_id]:
            del cursors[key]

    def _live_cursors(self) -> OrderedDict[tuple[str, int], int]:
        """Positions in runs' streams this store gave out, mapped to the table's seq there.

        Bounded; a position not found here is counted from the run's first row.
        """
        if self._cursors is None:
            self._cursors = OrderedDict()
        return self._cursors

    async def live_text_end(self, run_id: str, step_index: int) -> int:
        rows = await self._fetch(
            "SELECT MAX(text_end) FROM durable_live WHERE run_id = ? AND step_index = ?",
            (run_id, step_index),
        )
        return int(rows[0][0] or 0) if rows else 0

    async def _fetch_bulk(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """``_fetch`` for queries returning thousands of rows; a dialect may speed it up."""
        return await self._fetch(sql, params)

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._fetch_bulk(
            f"SELECT {_STEP_COLUMNS} FROM durable_steps WHERE run_id = ? ORDER BY step_index",
            (run_id,),
        )
        with gc_paused():
            return [_step_record(row) for row in rows]
