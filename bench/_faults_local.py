"""Local fault scenarios: kill -9 under load, and processes racing for the same runs.

Workers are real processes: ``worker.py --local`` on SQLite, ``bench._faults_worker``
on the file and PostgreSQL stores. Runs are created in the store with a lease that
has already lapsed, so the workers' scans pick them up as they would a run whose
starter died; the scenario itself executes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from durable import RunRecord, agent_definition
from durable_agents.adapters.local import DurableRunStore, FileStore, PostgresStore, SqliteStore

from ._faults_agents import MODULE, Job, ledger_run
from ._faults_ledger import Kill, check, holders, read_ledger
from ._faults_procs import Processes, python

__all__ = [
    "KillPlan",
    "RacePlan",
    "ScenarioFailed",
    "in_time",
    "kill_local",
    "no_exits",
    "pick_victim",
    "postgres",
    "race_local",
]

STARTER = "faults-starter"
"""The worker id runs are created under, with a lease that lapsed at once."""

Say = Callable[[str], None]


class ScenarioFailed(Exception):
    """An invariant broke; the message says which and what was seen."""


@dataclass(frozen=True)
class KillPlan:
    workers: int
    runs: int
    steps: int
    nap: float
    """Seconds each step sleeps between its ``start`` and ``done`` lines."""
    every: float
    """Seconds between kills."""
    max_kills: int
    lease: float


@dataclass(frozen=True)
class RacePlan:
    racers: int
    runs: int
    steps: int
    nap: float


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server from the binaries installed here (as the tests start it)."""
    from tests.support.postgres import postgres_server

    with postgres_server() as dsn:
        yield dsn


@contextlib.asynccontextmanager
async def open_store(kind: str, location: str) -> AsyncIterator[DurableRunStore]:
    store: DurableRunStore
    if kind == "sqlite":
        store = SqliteStore(location)
    elif kind == "file":
        store = FileStore(location)
    else:
        store = await PostgresStore.connect(location)
    try:
        yield store
    finally:
        await store.close()


async def create_runs(store: DurableRunStore, jobs: list[Job]) -> None:
    """Each run exists, running, under a lease that already lapsed: a worker's to take."""
    definition = agent_definition(ledger_run)
    for job in jobs:
        await store.start_or_resume(
            run_id=job.run,
            agent=definition.name,
            manifest=definition.manifest(job),
            worker_id=STARTER,
            lease_for=timedelta(0),
        )


def _worker(kind: str, location: str, work: Path, lease: float) -> tuple[list[str], dict[str, str]]:
    if kind == "sqlite":
        env = {
            "DURABLE_STORE": location,
            "DURABLE_DATA": str(work / "data"),
            "DURABLE_AGENT_MODULES": MODULE,
            "DURABLE_LEASE_SECONDS": str(lease),
        }
        return python("worker.py", "--local"), env
    return python("-m", "bench._faults_worker", kind, location, str(lease)), {}


async def _runs(store: DurableRunStore, ids: list[str]) -> list[RunRecord]:
    found = []
    for run_id in ids:
        record = await store.load_run(run_id)
        if record is None:
            raise ScenarioFailed(f"run {run_id} is missing from the store: it was lost")
        found.append(record)
    return found


async def kill_local(
    kind: str, location: str, plan: KillPlan, work: Path, say: Say, *, timeout: float
) -> None:
    """Workers on ``kind`` finish every run while one is killed every ``plan.every`` s."""
    ledger = work / "ledger.txt"
    ids = [f"{kind}-{i:03d}" for i in range(plan.runs)]
    jobs = [Job(run=r, ledger=str(ledger), steps=plan.steps, nap=plan.nap) for r in ids]
    command, env = _worker(kind, location, work, plan.lease)
    kills: list[Kill] = []
    started = time.monotonic()
    async with open_store(kind, location) as store:
        await create_runs(store, jobs)
        with Processes(work) as processes:
            workers = [processes.start("worker", command, env) for _ in range(plan.workers)]
            while not ledger.exists():  # the kills start once the first step runs
                no_exits(processes)
                in_time(started, timeout, "no worker ran a step")
                await asyncio.sleep(0.1)
            next_kill = time.monotonic() + plan.every
            while True:
                no_exits(processes)
                records = await _runs(store, ids)
                if all(not r.active for r in records):
                    break
                in_time(started, timeout, f"{sum(r.active for r in records)} runs still active")
                if len(kills) < plan.max_kills and time.monotonic() >= next_kill:
                    victim = pick_victim(workers, ledger, plan.steps)
                    kills.append(await asyncio.to_thread(processes.kill, victim))
                    workers.remove(victim)
                    workers.append(processes.start("worker", command, env))
                    next_kill += plan.every
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            records = await _runs(store, ids)
    wrong = [
        f"{r.run_id}: {r.status} {r.result if r.error is None else r.error.message}"
        for r in records
        if r.status != "completed" or r.result != sum(range(plan.steps))
    ]
    report = check(read_ledger(ledger), ids, plan.steps, kills)
    for line in report.lines(len(kills)):
        say(line)
    say(f"all runs ended after {elapsed:.1f} s")
    if wrong:
        raise ScenarioFailed(f"{len(wrong)} runs did not complete right: {wrong[:5]}")
    if report.problems:
        raise ScenarioFailed("; ".join(report.problems[:10]))


async def race_local(
    kind: str, location: str, plan: RacePlan, work: Path, say: Say, *, timeout: float
) -> None:
    """``racers`` processes call ``run_durable`` on the same runs: each step runs exactly once."""
    ledger = work / "ledger.txt"
    ids = [f"race-{kind}-{i:03d}" for i in range(plan.runs)]
    started = time.monotonic()
    with Processes(work) as processes:
        go = work / "go"
        racers = [
            processes.start(
                "racer",
                python(
                    "-m",
                    "bench._faults_race",
                    kind,
                    location,
                    str(ledger),
                    str(plan.steps),
                    str(plan.nap),
                    str(go),
                    *ids,
                ),
                {},
            )
            for _ in range(plan.racers)
        ]
        names = [name for name, _ in processes.alive.values()]
        while not all("ready" in processes.log_tail(name, 5) for name in names):
            no_exits(processes)
            in_time(started, timeout, "racers still starting")
            await asyncio.sleep(0.05)
        go.touch()
        while any(r.poll() is None for r in racers):
            in_time(started, timeout, "racers still running")
            await asyncio.sleep(0.1)
        failed = [(name, code) for name, code in processes.exited() if code != 0]
        if failed:
            tails = "\n".join(f"{n} exited {c}:\n{processes.log_tail(n)}" for n, c in failed)
            raise ScenarioFailed(f"a racer failed:\n{tails}")
        held = [processes.log_tail(name, 1).rsplit(" ", 1)[-1] for name, _ in processes.ended]
    elapsed = time.monotonic() - started
    read = read_ledger(ledger)
    report = check(read, ids, plan.steps)
    executed = sorted(
        (len({e.run for e in read.entries if e.pid == racer.pid}) for racer in racers),
        reverse=True,
    )
    say(f"racers {plan.racers}, runs {plan.runs}, steps {report.steps}, attempts {report.attempts}")
    say(f"runs each racer executed steps of: {executed}; found held by another: {held}")
    say(f"all racers done after {elapsed:.1f} s")
    if report.duplicates:
        report.problems.append(f"steps run more than once: {report.duplicates[:5]}")
    if report.problems:
        raise ScenarioFailed("; ".join(report.problems[:10]))


def pick_victim(
    workers: list[subprocess.Popen[bytes]], ledger: Path, steps: int
) -> subprocess.Popen[bytes]:
    """A random worker among those running steps of unfinished runs, else any: a kill
    of an idle worker (the first to scan often takes every run) would test nothing."""
    busy = holders(read_ledger(ledger), steps)
    return random.choice([w for w in workers if w.pid in busy] or workers)


def no_exits(processes: Processes) -> None:
    for name, code in processes.exited():
        raise ScenarioFailed(
            f"{name} exited by itself with {code}, not killed:\n{processes.log_tail(name)}"
        )


def in_time(started: float, timeout: float, what: str) -> None:
    if time.monotonic() - started > timeout:
        raise ScenarioFailed(f"timed out after {timeout:g} s: {what}")
