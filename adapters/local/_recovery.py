"""Bounded recovery: how a resume is announced, when a run is given up, foreign runs.

Every store counts a recovery when a worker takes a run over after its holder's
lease lapsed (``RunRecord.recoveries``, with the takeover itself). A run whose
count passes the worker's ``max_recovery_attempts`` most likely kills whatever
worker runs it (a step that crashes the process, exhausts its memory, or gets
it killed), so the worker fails it with ``recovery_exhausted`` instead of
running it again, the way seed 003's harness bounds its saved recovery intents.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection
from datetime import datetime
from typing import Any

from durable import DurableRunRecoveryExhaustedError, LiveEvent, RunRecord

from ._store import DurableRunStore, Resumed

__all__ = ["UnhostedRuns", "recovery_exhausted_error", "resumed_entry"]

log = logging.getLogger("durable.local.worker")


def recovery_exhausted_error(run: RunRecord, limit: int) -> DurableRunRecoveryExhaustedError:
    """Why a worker failed ``run`` instead of recovering it once more."""
    last = run.recovered_from or "unknown"
    return DurableRunRecoveryExhaustedError(
        f"run {run.run_id!r} of agent {run.agent!r} lost its worker {run.recoveries} "
        f"times, the last time worker {last!r}, and recovery stops after {limit} "
        "(max_recovery_attempts, DURABLE_MAX_RECOVERY_ATTEMPTS), so it was failed "
        "instead of resumed again; find why the run kills its worker (the step it was "
        "running when the worker died, and that worker's log), fix it, then start a new run",
        recoveries=run.recoveries,
        last_worker=last,
    )


def resumed_entry(resumed: Resumed) -> LiveEvent:
    """The ``run_resumed`` entry of a run taken by ``start_or_resume``.

    ``detail["kind"]`` is ``crash`` (another worker's lease lapsed and was taken
    over; ``recoveries`` counts them, ``previous_worker`` names that worker) or
    ``explicit`` (no one held the run, or its own worker resumed it).
    """
    run = resumed.run
    detail: dict[str, Any] = {"kind": resumed.resumed, "worker": run.lease_holder}
    if resumed.resumed == "crash":
        detail |= {"recoveries": run.recoveries, "previous_worker": run.recovered_from}
    return LiveEvent(kind="run_resumed", detail=detail)


class UnhostedRuns:
    """Logs once each abandoned run of an agent this worker does not host.

    Such a run is left for a worker that hosts its agent. The worker's scan for
    work never sees it: it asks the store only for runs of hosted agents, so no
    number of foreign runs can crowd out one this worker can finish. This report
    is a separate read that cannot delay that scan: it runs after it, one scan in
    ``every``, and reads at most ``limit`` runs (foreign runs beyond the first
    ``limit`` are reported once those ahead of them are taken). The ids already
    logged are remembered, the last ``remembered`` of them, so each run is logged
    once per worker while memory stays bounded.
    """

    def __init__(self, *, every: int = 30, limit: int = 100, remembered: int = 10_000) -> None:
        self.every = every
        self.limit = limit
        self.remembered = remembered
        self._scans = 0
        self._logged: OrderedDict[str, None] = OrderedDict()

    async def report(
        self, store: DurableRunStore, *, now: datetime, hosted: Collection[str]
    ) -> list[str]:
        """Log the foreign runs not logged before, on one scan in ``every``; return their ids."""
        self._scans += 1
        if (self._scans - 1) % self.every:
            return []
        found = await store.list_expired_runs(now=now, limit=self.limit)
        new = [r for r in found if r.agent not in hosted and r.run_id not in self._logged]
        for run in new:
            self._logged[run.run_id] = None
            log.warning(
                "run %r of agent %r has no worker: its agent is not hosted here (this worker "
                "hosts %s), so it is left for a worker that hosts it; start one with the "
                "agent's module in DURABLE_AGENT_MODULES",
                run.run_id,
                run.agent,
                ", ".join(sorted(hosted)) or "no agents",
            )
        while len(self._logged) > self.remembered:
            self._logged.popitem(last=False)
        return [run.run_id for run in new]
