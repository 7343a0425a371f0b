"""Acceptance: a run that kills every worker taking it fails with ``recovery_exhausted``
after the bound, while other runs on the same store complete; real processes throughout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from durable import agent_definition
from durable_agents.adapters.local import SqliteStore
from tests.adapters import poison
from tests.support.cli import ROOT, command, durable

FINE = [f"fine-{i}" for i in range(3)]


def _worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command(), "worker", "--local"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.timeout(180)
async def test_a_poison_run_fails_after_the_bound_while_the_others_complete(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_AGENT_MODULES": "tests.adapters.poison",
        "DURABLE_LEASE_SECONDS": "1",
        "DURABLE_MAX_RECOVERY_ATTEMPTS": "2",
    }
    # The poison run's first worker is `durable run` itself: its step kills the process.
    first = await asyncio.to_thread(
        durable, "run", "poison.kills", "--input", '{"n": 1, "delay": 0.5}',
        "--run-id", "poison", "--local", env=env,
    )  # fmt: skip
    assert first.returncode == 3, first.stderr
    store = SqliteStore(tmp_path / "durable.db")
    fine = agent_definition(poison.fine)
    for i, run_id in enumerate(FINE):  # runs whose starter died before running them
        await store.start_or_resume(
            run_id=run_id, agent="poison.fine", manifest=fine.manifest(poison.Job(n=i)),
            worker_id="starter", lease_for=timedelta(0),
        )  # fmt: skip

    deaths: list[int] = []
    worker = _worker(env)
    try:
        for _ in range(1200):  # a worker restarted each time one dies, as a supervisor would
            run = await store.load_run("poison")
            assert run is not None
            if run.status != "running":
                break
            if worker.poll() is not None:
                deaths.append(worker.returncode)
                worker.communicate()
                worker = _worker(env)
            await asyncio.sleep(0.1)
        for _ in range(100):
            if [r.status for r in await store.list_runs() if r.run_id in FINE] == [
                "completed"
            ] * len(FINE):
                break
            await asyncio.sleep(0.1)
    finally:
        survived = worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=30)

    assert deaths == [3, 3]  # two workers died of it; the third failed it and lives on
    assert survived
    run = await store.load_run("poison")
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.code == "recovery_exhausted"
    assert run.recoveries == 3
    assert run.recovered_from is not None
    assert f"lost its worker 3 times, the last time worker {run.recovered_from!r}" in (
        run.error.message
    )
    assert "start a new run" in run.error.message
    assert "lost its worker 3 times" in log
    steps = {s.intent: s for s in await store.load_steps("poison")}
    assert (steps["before the crash"].status, steps["before the crash"].attempts) == (
        "completed",
        1,
    )
    # Begun by `durable run` and the two workers that died; the third never ran it.
    assert (steps["crash the worker"].status, steps["crash the worker"].attempts) == (
        "running",
        3,
    )
    live = await store.read_live("poison")
    resumes = [e.detail for e in live if e.kind == "run_resumed"]
    assert [(d or {}).get("kind") for d in resumes] == ["crash", "crash"]
    assert [(d or {}).get("recoveries") for d in resumes] == [1, 2]
    assert live[-1].kind == "run_failed"

    for i, run_id in enumerate(FINE):
        done = await store.load_run(run_id)
        assert done is not None
        assert (done.status, done.result) == ("completed", i + 1)
        # Recovered from a dead worker, then past that point: its count started again.
        assert done.recovered_from is not None
        assert done.recoveries == 0
    await store.close()
