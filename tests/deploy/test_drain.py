"""A worker told to stop (SIGTERM, as Kubernetes, systemd and Docker send it) drains.

On Temporal the worker stops polling, lets the steps (activities) in flight finish
within ``DURABLE_WORKER_DRAIN_SECONDS`` and exits 0; the run goes on on the next
worker. The local worker does the same with the steps of the runs it resumed: each
run stops once its steps in flight are recorded, and the next worker resumes it
from there. Past the drain time the step is cancelled and runs again elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable import StepRecord
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import (
    DurableRunStore,
    InMemoryStore,
    LocalWorker,
    SqliteStore,
    run_durable,
)
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.deploy import agents
from tests.deploy.agents import Nap

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.deploy.agents"
NAP = 4.0
"""Seconds the step runs: long enough to signal the worker while it is in flight."""
DRAIN = 20.0
SLACK = 10.0
"""Seconds a worker may take beyond its step or its drain time to exit."""


def _journal(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [
        (what, int(pid))
        for what, pid, _ in (line.split() for line in path.read_text().splitlines())
    ]


async def _logged(path: Path, entry: tuple[str, int], *, within: float) -> None:
    deadline = time.monotonic() + within
    while entry not in _journal(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{entry} not in the journal within {within} s: {_journal(path)}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def worker_process(tmp_path: Path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Worker processes the test starts, killed if a test leaves one running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


async def _start(
    started: list[asyncio.subprocess.Process], env: dict[str, str], log: Path, *args: str
) -> asyncio.subprocess.Process:
    with log.open("a") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", *args, cwd=ROOT, env=env, stdout=out, stderr=out
        )
    started.append(process)
    return process


async def _stop(process: asyncio.subprocess.Process, *, within: float, log: Path) -> float:
    """SIGTERM the worker; its exit status must be 0 within ``within`` seconds. Returns how long
    it took."""
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        status = await asyncio.wait_for(process.wait(), within)
    except TimeoutError:
        raise AssertionError(
            f"the worker did not exit within {within} s:\n{log.read_text()}"
        ) from None
    took = time.monotonic() - signalled
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    return took


def _temporal_env(
    server: DevServer, task_queue: str, tmp_path: Path, drain: float
) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": MODULE,
        "DURABLE_DATA": str(tmp_path / "data"),
        "DURABLE_WORKER_DRAIN_SECONDS": str(drain),
    }


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_temporal_worker_told_to_stop_lets_its_step_finish(
    temporal_server: DevServer,
    client: Client,
    task_queue: str,
    run_id: str,
    tmp_path: Path,
    worker_process: list[asyncio.subprocess.Process],
) -> None:
    journal, log = tmp_path / "journal.txt", tmp_path / "worker.log"
    env = _temporal_env(temporal_server, task_queue, tmp_path, DRAIN)
    first = await _start(worker_process, env, log)
    runs = AgentClient(client, task_queue=task_queue)
    await runs.start(agents.nap, Nap(journal=str(journal), seconds=NAP), run_id=run_id)
    await _logged(journal, ("start", first.pid), within=60)

    took = await _stop(first, within=DRAIN, log=log)

    # It waited for the step, and no longer than the step needed.
    assert ("end", first.pid) in _journal(journal), log.read_text()
    assert took < NAP + SLACK, took
    assert "the steps in flight have 20 s to finish" in log.read_text()
    # The step's outcome reached Temporal: the next worker finishes the run without running
    # it again, with the first worker's result.
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin([MODULE])]):
        assert await asyncio.wait_for(runs.result(run_id), 60) == first.pid
    assert _journal(journal) == [("start", first.pid), ("end", first.pid)]


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_step_longer_than_the_drain_is_cancelled_and_runs_again_elsewhere(
    temporal_server: DevServer,
    client: Client,
    task_queue: str,
    run_id: str,
    tmp_path: Path,
    worker_process: list[asyncio.subprocess.Process],
) -> None:
    journal, log = tmp_path / "journal.txt", tmp_path / "worker.log"
    first = await _start(
        worker_process, _temporal_env(temporal_server, task_queue, tmp_path, 1), log
    )
    runs = AgentClient(client, task_queue=task_queue)
    await runs.start(agents.nap, Nap(journal=str(journal), seconds=30), run_id=run_id)
    await _logged(journal, ("start", first.pid), within=60)

    took = await _stop(first, within=1 + SLACK, log=log)

    assert took < 1 + SLACK
    assert ("end", first.pid) not in _journal(journal)
    # Cancelled by the stop, the attempt is retried on the next worker.
    second = await _start(
        worker_process, _temporal_env(temporal_server, task_queue, tmp_path, 1), log
    )
    assert await asyncio.wait_for(runs.result(run_id), 90) == second.pid
    assert _journal(journal) == [("start", first.pid), ("start", second.pid), ("end", second.pid)]
    await _stop(second, within=1 + SLACK, log=log)


async def _abandoned_local_run(
    store: DurableRunStore, run_id: str, job: Nap, *, emit: bool = True
) -> None:
    """A local run whose worker died while it waited for ``job.wait_for``."""
    task = asyncio.create_task(run_durable(agents.nap, job, store=store, run_id=run_id, lease=0.5))
    while not any(s.kind == "event" for s in await store.load_steps(run_id)):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.wait_for is not None
    if emit:
        await store.emit_event(run_id, job.wait_for, None)


async def _hosting(log: Path, process: asyncio.subprocess.Process) -> None:
    """Wait until the local worker ``process`` is up (its signal handlers are then set)."""
    deadline = time.monotonic() + 60
    while f":{process.pid}:" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.05)


def _local_env(tmp_path: Path, drain: float) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_STORE": str(tmp_path / "durable.db"),
        "DURABLE_DATA": str(tmp_path / "data"),
        "DURABLE_AGENT_MODULES": MODULE,
        "DURABLE_LEASE_SECONDS": "1",
        "DURABLE_WORKER_DRAIN_SECONDS": str(drain),
    }


async def _local_result(store: SqliteStore, run_id: str, *, within: float) -> object:
    deadline = time.monotonic() + within
    while True:
        run = await store.load_run(run_id)
        assert run is not None
        if run.status == "completed":
            return run.result
        assert run.active, run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not complete within {within} s: {run}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_local_worker_told_to_stop_lets_its_step_finish(
    run_id: str, tmp_path: Path, worker_process: list[asyncio.subprocess.Process]
) -> None:
    journal, log = tmp_path / "journal.txt", tmp_path / "worker.log"
    store = SqliteStore(tmp_path / "durable.db")
    try:
        job = Nap(journal=str(journal), seconds=NAP, wait_for="go")
        await _abandoned_local_run(store, run_id, job)
        first = await _start(worker_process, _local_env(tmp_path, DRAIN), log, "--local")
        await _logged(journal, ("start", first.pid), within=60)

        took = await _stop(first, within=DRAIN, log=log)

        assert ("end", first.pid) in _journal(journal), log.read_text()
        assert took < NAP + SLACK, took
        steps = {s.intent: s for s in await store.load_steps(run_id)}
        assert steps["nap while the worker is told to stop"].status == "completed"
        # Finished already, or by the next worker from the recorded step.
        second = await _start(worker_process, _local_env(tmp_path, DRAIN), log, "--local")
        assert await _local_result(store, run_id, within=30) == first.pid
        assert _journal(journal) == [("start", first.pid), ("end", first.pid)]
        await _hosting(log, second)
        await _stop(second, within=SLACK, log=log)
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_local_step_longer_than_the_drain_is_cancelled_and_resumed_elsewhere(
    run_id: str, tmp_path: Path, worker_process: list[asyncio.subprocess.Process]
) -> None:
    journal, log = tmp_path / "journal.txt", tmp_path / "worker.log"
    store = SqliteStore(tmp_path / "durable.db")
    try:
        await _abandoned_local_run(
            store, run_id, Nap(journal=str(journal), seconds=30, wait_for="go")
        )
        first = await _start(worker_process, _local_env(tmp_path, 1), log, "--local")
        await _logged(journal, ("start", first.pid), within=60)

        took = await _stop(first, within=1 + SLACK, log=log)

        assert took < 1 + SLACK
        assert "stopping with steps still in flight after 1 s" in log.read_text()
        assert ("end", first.pid) not in _journal(journal)
        steps = {s.intent: s for s in await store.load_steps(run_id)}
        assert steps["nap while the worker is told to stop"].status == "running"
        # The next worker resumes the run once its lease expires, and runs the step again.
        second = await _start(worker_process, _local_env(tmp_path, 1), log, "--local")
        await _logged(journal, ("start", second.pid), within=30)
        await _stop(second, within=1 + SLACK, log=log)
    finally:
        await store.close()


async def test_a_local_run_that_only_waits_stops_at_once(run_id: str, tmp_path: Path) -> None:
    store = InMemoryStore()
    job = Nap(journal=str(tmp_path / "j"), seconds=1, wait_for="never")
    await _abandoned_local_run(store, run_id, job, emit=False)
    worker = LocalWorker(
        store, lease=timedelta(seconds=5), scan_interval=timedelta(milliseconds=50),
        drain=timedelta(seconds=DRAIN),
    )  # fmt: skip
    running = asyncio.create_task(worker.run())
    while (run := await store.load_run(run_id)) is None or run.lease_holder != worker.worker_id:
        await asyncio.sleep(0.02)
    assert run.status == "waiting"

    stopped = time.monotonic()
    worker.stop()
    await asyncio.wait_for(running, DRAIN)

    assert time.monotonic() - stopped < 2, "a run waiting for an event has no step to drain"
    run = await store.load_run(run_id)
    assert run is not None
    assert run.active  # left for the next worker


def test_a_negative_drain_is_refused() -> None:
    with pytest.raises(ValueError, match="drain must be 0 or more"):
        LocalWorker(InMemoryStore(), drain=timedelta(seconds=-1))


class _FailingReads(InMemoryStore):
    """A store whose step reads fail once ``failing`` is set (a database gone mid-stop)."""

    failing = False

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        if self.failing:
            raise OSError("the database went away")
        return await super().load_steps(run_id)


async def test_a_store_failing_while_draining_stops_the_runs_at_once(
    run_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingReads()
    job = Nap(journal=str(tmp_path / "journal.txt"), seconds=30, wait_for="go")
    await _abandoned_local_run(store, run_id, job)
    worker = LocalWorker(
        store, lease=timedelta(seconds=5), scan_interval=timedelta(milliseconds=50),
        drain=timedelta(seconds=DRAIN),
    )  # fmt: skip
    running = asyncio.create_task(worker.run())
    await _logged(tmp_path / "journal.txt", ("start", os.getpid()), within=30)

    store.failing = True
    stopped = time.monotonic()
    worker.stop()
    await asyncio.wait_for(running, DRAIN)

    assert time.monotonic() - stopped < 2
    assert "draining failed (the database went away); stopping every run now" in caplog.text
    assert ("end", os.getpid()) not in _journal(tmp_path / "journal.txt")
