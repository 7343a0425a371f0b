"""``LocalWorker``: picks up local runs whose worker died, and finishes them.

A run whose lease expired while it was still running lost its worker (a crash,
a kill, a deploy). The worker scans the store, resumes each such run with
``resume_run`` and keeps it going under its own lease, the way DBOS recovers
pending workflows when a process starts. It looks only for runs of agents
registered in its process: runs of other agents are left to workers that host
them, and logged once each (``UnhostedRuns``).

Recovery is bounded: every takeover of a lapsed lease counts on the run, and a
run that has lost its worker more than ``max_recovery_attempts`` times is
failed with ``recovery_exhausted`` rather than run again (see ``_recovery``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import timedelta

from durable import (
    ACTIVE_STATUSES,
    DurableRunLeaseHeldError,
    derive_worker_id,
    registered_agents,
)

from ._recovery import UnhostedRuns
from ._retention import BlobDeleter, RetentionSweep
from ._runner import RunResult, resume_run
from ._slots import RunSlots
from ._store import DurableRunStore, utc_now

__all__ = ["LocalWorker"]

log = logging.getLogger("durable.local.worker")

_WAITS = frozenset({"event", "timer", "approval", "conversation", "agent"})
"""Step kinds that wait rather than run code (a child run's own steps are looked at in
the child): a stop drains every other kind, as Temporal drains activities."""
_DRAIN_POLL = 0.1
"""Seconds between reads of the store while draining."""


class LocalWorker:
    """Resume abandoned runs in ``store``; stop with ``stop()``.

    On stop it picks up no more runs and drains: a run with a step in flight (one that
    runs code, not a wait; its own or a child run's) keeps going until those steps have
    ended and been recorded, for up to ``drain``; then every run is cancelled without
    recording anything, so their leases expire and another worker (or this one,
    restarted) continues them from their recorded steps. A run that only waits (for an
    event, a timer, an approval) is cancelled at once. At most
    ``max_concurrent_runs`` execute at once; the others it picked up wait their
    turn, first come first served, without taking their leases; ``max_runs``
    bounds how many it picks up at all (by default 100, or ``max_concurrent_runs`` if
    more). A run waiting for an event or a timer keeps its slot while it waits.
    A run that lost its worker more than ``max_recovery_attempts`` times in a
    row is failed with ``recovery_exhausted`` instead of resumed. With ``retention``,
    it also purges runs that ended longer ago than that, at most once every
    ``retention_every`` (see ``_retention``), with their blobs when ``blobs`` is given.
    """

    def __init__(
        self,
        store: DurableRunStore,
        *,
        worker_id: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        scan_interval: timedelta = timedelta(seconds=2),
        max_runs: int | None = None,
        max_concurrent_runs: int | None = None,
        max_recovery_attempts: int = 5,
        retention: timedelta | None = None,
        retention_every: timedelta = timedelta(minutes=10),
        blobs: BlobDeleter | None = None,
        drain: timedelta = timedelta(0),
    ) -> None:
        if max_runs is None:  # picks up at least as many as it may execute at once
            max_runs = max(100, max_concurrent_runs or 0)
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        if max_recovery_attempts < 0:
            raise ValueError(
                f"max_recovery_attempts must be 0 or more, got {max_recovery_attempts}"
            )
        if drain < timedelta(0):
            raise ValueError(f"drain must be 0 or more, got {drain}")
        self.max_recovery_attempts = max_recovery_attempts
        self.drain = drain.total_seconds()
        self.retention = (
            None
            if retention is None
            else RetentionSweep(retention, every=retention_every, blobs=blobs)
        )
        self.unhosted = UnhostedRuns(limit=max_runs)
        self.slots = RunSlots(max_runs if max_concurrent_runs is None else max_concurrent_runs)
        self.store = store
        self.worker_id = worker_id or derive_worker_id()
        self.lease = lease
        self.scan_interval = scan_interval.total_seconds()
        self.max_runs = max_runs
        self.finished: dict[str, RunResult[object] | BaseException] = {}
        self._tasks: dict[str, asyncio.Task[RunResult[object]]] = {}
        self._stopping = asyncio.Event()

    async def scan(self) -> list[str]:
        """Resume every expired run of an agent registered here; return the ids started."""
        started: list[str] = []
        if len(self._tasks) >= self.max_runs:
            return started
        # The store skips live leases and agents this process does not host itself:
        # filtering here would let enough runs held by other workers, or enough runs
        # no worker here can start (resume_run refuses them before taking the lease,
        # so they stay expired), hide every abandoned run this worker could finish.
        hosted = registered_agents().keys()
        expired = await self.store.list_expired_runs(
            now=utc_now(), limit=self.max_runs, agents=hosted
        )
        for run in expired:
            if len(self._tasks) >= self.max_runs:
                break
            if run.run_id in self._tasks:
                continue
            task = asyncio.create_task(
                resume_run(
                    self.store,
                    run.run_id,
                    worker_id=self.worker_id,
                    lease=self.lease,
                    slots=self.slots,
                    max_recovery_attempts=self.max_recovery_attempts,
                ),
                name=f"durable-resume:{run.run_id}",
            )
            task.add_done_callback(functools.partial(self._done, run.run_id))
            self._tasks[run.run_id] = task
            started.append(run.run_id)
            log.info("resuming run %r of agent %r", run.run_id, run.agent)
        await self.unhosted.report(self.store, now=utc_now(), hosted=hosted)
        return started

    def _done(self, run_id: str, task: asyncio.Task[RunResult[object]]) -> None:
        self._tasks.pop(run_id, None)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, DurableRunLeaseHeldError):
            log.info("run %r was taken by another worker first", run_id)
            return
        self.finished[run_id] = error if error is not None else task.result()
        if error is not None:
            log.warning("run %r ended with %s", run_id, error)
        else:
            log.info("run %r completed", run_id)

    async def run(self) -> None:
        """Scan until ``stop()``; then drain the runs in flight, cancel them and return."""
        try:
            while not self._stopping.is_set():
                await self.scan()
                if self.retention is not None:
                    await self.retention.maybe_sweep(self.store)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.scan_interval)
            try:
                await self._drain()
            except Exception as exc:  # a store that fails now must not keep the runs going
                log.warning("draining failed (%s); stopping every run now", exc)
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self) -> None:
        """Let each run's steps in flight end, within ``drain``; cancel each run once its
        own have (a run that goes on to its next step meanwhile is cancelled in it, and
        that step runs again on the next worker, as after a crash)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain
        awaited: dict[str, set[tuple[str, int]]] = {}
        for run_id in list(self._tasks):
            awaited[run_id] = await self._steps_in_flight(run_id) if self.drain else set()
        while awaited:
            for run_id, steps in list(awaited.items()):
                task = self._tasks.get(run_id)
                if task is None:  # ended on its own meanwhile
                    del awaited[run_id]
                    continue
                if steps:
                    steps &= await self._steps_in_flight(run_id)
                if not steps:
                    task.cancel()
                    del awaited[run_id]
            if not awaited:
                break
            left = deadline - loop.time()
            if left <= 0:
                log.warning(
                    "stopping with steps still in flight after %g s (drain): %s; they run "
                    "again on the next worker",
                    self.drain,
                    ", ".join(f"{r} step {i}" for s in awaited.values() for r, i in sorted(s)),
                )
                return
            await asyncio.sleep(min(_DRAIN_POLL, left))

    async def _steps_in_flight(self, run_id: str) -> set[tuple[str, int]]:
        """The user-code steps now running in ``run_id`` and in its child runs (which run
        inside the parent's task)."""
        found: set[tuple[str, int]] = set()
        pending = [run_id]
        while pending:
            current = pending.pop()
            for record in await self.store.load_steps(current):
                if record.status == "running" and record.kind not in _WAITS:
                    found.add((current, record.step_index))
            children = await self.store.list_children(current)
            pending.extend(c.run_id for c in children if c.status in ACTIVE_STATUSES)
        return found

    @property
    def stopping(self) -> bool:
        """``stop()`` was called: no more runs are picked up."""
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
