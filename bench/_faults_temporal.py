"""Temporal fault scenarios: workers killed under load, and the server restarted mid-run.

Workers are ``worker.py`` processes on a dev server from
``durable_agents.adapters.temporal.DevServer``;
runs are started with ``AgentClient``. A step's ledger lines carry the pid of the
worker that ran its activity.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from durable_agents.adapters.temporal import AgentClient, DevServer

from ._faults_agents import MODULE, Job, ledger_run
from ._faults_ledger import Kill, check, read_ledger
from ._faults_local import KillPlan, ScenarioFailed, in_time, no_exits, pick_victim
from ._faults_procs import Processes, python

__all__ = ["RestartPlan", "kill_temporal", "server_restart"]

Say = Callable[[str], None]

STALL = 45.0
"""Seconds without a new ledger line, once the server is back, after which a live worker
counts as stuck."""


@dataclass(frozen=True)
class RestartPlan:
    runs: int
    steps: int
    nap: float
    down: float
    """Seconds the server stays down each time."""


def _env(server: DevServer, task_queue: str, work: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": MODULE,
        "DURABLE_DATA": str(work / "data"),
    }


async def _start_runs(agents: AgentClient, jobs: list[Job]) -> None:
    for job in jobs:
        await agents.start(ledger_run, job, run_id=job.run)


async def _result(agents: AgentClient, run_id: str) -> Any:
    """The run's result, asking again while the server is away."""
    while True:
        try:
            return await agents.result(run_id)
        except Exception as exc:  # the server restarting: ask again
            if "unavailable" not in str(exc).lower() and "connect" not in str(exc).lower():
                raise
            await asyncio.sleep(0.5)


def _wrong(results: dict[str, Any], steps: int) -> list[str]:
    return [f"{r}: {v!r}" for r, v in results.items() if v != sum(range(steps))]


async def kill_temporal(plan: KillPlan, work: Path, say: Say, *, timeout: float) -> None:
    """Workers on a dev server finish every run while one is killed every ``every`` s."""
    ledger = work / "ledger.txt"
    ids = [f"temporal-{i:03d}" for i in range(plan.runs)]
    jobs = [Job(run=r, ledger=str(ledger), steps=plan.steps, nap=plan.nap) for r in ids]
    server = DevServer(log_file=work / "temporal.log")
    await asyncio.to_thread(server.start)
    kills: list[Kill] = []
    started = time.monotonic()
    try:
        env = _env(server, f"faults-{uuid.uuid4().hex[:8]}", work)
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        agents = AgentClient(client, task_queue=env["TASK_QUEUE"])
        with Processes(work) as processes:
            command = python("worker.py")
            workers = [processes.start("worker", command, env) for _ in range(plan.workers)]
            await _start_runs(agents, jobs)
            waits = {r: asyncio.create_task(agents.result(r)) for r in ids}
            try:
                while not ledger.exists():
                    no_exits(processes)
                    in_time(started, timeout, "no worker ran a step")
                    await asyncio.sleep(0.1)
                next_kill = time.monotonic() + plan.every
                while not all(w.done() for w in waits.values()):
                    no_exits(processes)
                    left = sum(not w.done() for w in waits.values())
                    in_time(started, timeout, f"{left} runs still active")
                    if len(kills) < plan.max_kills and time.monotonic() >= next_kill:
                        victim = pick_victim(workers, ledger, plan.steps)
                        kills.append(await asyncio.to_thread(processes.kill, victim))
                        workers.remove(victim)
                        workers.append(processes.start("worker", command, env))
                        next_kill += plan.every
                    await asyncio.sleep(0.1)
                results = {r: w.result() for r, w in waits.items()}
            finally:
                for wait in waits.values():
                    wait.cancel()
        elapsed = time.monotonic() - started
    finally:
        await asyncio.to_thread(server.stop)
    report = check(read_ledger(ledger), ids, plan.steps, kills)
    for line in report.lines(len(kills)):
        say(line)
    say(f"all runs ended after {elapsed:.1f} s")
    wrong = _wrong(results, plan.steps)
    if wrong:
        raise ScenarioFailed(f"{len(wrong)} runs returned wrong results: {wrong[:5]}")
    if report.problems:
        raise ScenarioFailed("; ".join(report.problems[:10]))


async def server_restart(plan: RestartPlan, work: Path, say: Say, *, timeout: float) -> None:
    """The dev server is stopped (SIGTERM) and restarted, then killed (SIGKILL) and
    restarted, on its database file; one ``worker.py`` carries every run to its end."""
    ledger = work / "ledger.txt"
    ids = [f"restart-{i:03d}" for i in range(plan.runs)]
    jobs = [Job(run=r, ledger=str(ledger), steps=plan.steps, nap=plan.nap) for r in ids]
    db = work / "temporal.db"
    server = DevServer(db_file=db, log_file=work / "temporal.log")
    await asyncio.to_thread(server.start)
    port = server.port
    started = time.monotonic()
    notes: list[str] = []
    outages: list[tuple[float, float]] = []
    try:
        env = _env(server, f"faults-{uuid.uuid4().hex[:8]}", work)
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        agents = AgentClient(client, task_queue=env["TASK_QUEUE"])
        with Processes(work) as processes:
            worker = processes.start("worker", python("worker.py"), env)
            await _start_runs(agents, jobs)
            await _progress(ledger, after=time.time(), started=started, timeout=timeout)
            for how in (signal.SIGTERM, signal.SIGKILL):
                down_at = time.time()
                await asyncio.to_thread(_stop, server, how)
                await asyncio.sleep(plan.down)
                server = DevServer(port=port, db_file=db, log_file=work / "temporal.log")
                await asyncio.to_thread(server.start)
                up_at = time.time()
                outages.append((down_at, up_at))
                moved = await _progress(
                    ledger, after=up_at, started=started, timeout=timeout, worker=worker
                )
                gone = processes.exited()
                if gone:
                    name, code = gone[0]
                    raise ScenarioFailed(
                        f"the worker exited with {code} after the server's "
                        f"{how.name}; it should reconnect by itself:\n{processes.log_tail(name)}"
                    )
                notes.append(
                    f"{how.name}: server down {up_at - down_at:.1f} s; the worker ran its "
                    f"next step {moved - up_at:.1f} s after the server was back"
                )
            results = {}
            for run_id in ids:
                results[run_id] = await _result(agents, run_id)
                in_time(started, timeout, "runs still active")
            if worker.poll() is not None:
                raise ScenarioFailed(f"the worker exited with {worker.returncode}")
        elapsed = time.monotonic() - started
    finally:
        await asyncio.to_thread(server.stop)
    report = check(read_ledger(ledger), ids, plan.steps, outages=outages)
    for note in notes:
        say(note)
    say(f"runs {report.runs}, steps {report.steps}, step attempts {report.attempts}")
    say(f"all runs completed after {elapsed:.1f} s, the worker never restarted")
    twice = f"steps run twice: {len(report.duplicates)}"
    say(twice if report.problems else f"{twice}, every one in flight when the server went down")
    wrong = _wrong(results, plan.steps)
    if wrong:
        raise ScenarioFailed(f"{len(wrong)} runs returned wrong results: {wrong[:5]}")
    if report.problems:
        raise ScenarioFailed("; ".join(report.problems[:10]))


def _stop(server: DevServer, how: signal.Signals) -> None:
    if how == signal.SIGTERM:
        server.stop()
        return
    process = server._process
    if process is not None:
        process.kill()
        process.wait(timeout=10)
    server._process = None


async def _progress(
    ledger: Path,
    *,
    after: float,
    started: float,
    timeout: float,
    worker: Any = None,
) -> float:
    """The time of the first ledger line written after ``after``; a stuck worker fails."""
    deadline = time.monotonic() + STALL
    while True:
        if ledger.exists():
            later = [
                e.at for e in read_ledger(ledger).entries if e.at > after and e.kind == "start"
            ]
            if later:
                return min(later)
        if worker is not None and worker.poll() is not None:
            raise ScenarioFailed(
                f"the worker exited with {worker.returncode} after the server came back"
            )
        if time.monotonic() > deadline:
            raise ScenarioFailed(
                f"no step ran within {STALL:g} s after the server came back: the worker "
                "is alive but does not reconnect"
            )
        in_time(started, timeout, "waiting for the worker to run a step")
        await asyncio.sleep(0.1)
