"""The local worker resumes abandoned runs; worker.py validates its settings."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable import DurableRunInputInvalidError, DurableRunManifest, RunRecord, TaskSpec
from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    LocalWorker,
    PostgresStore,
    SqliteStore,
    run_durable,
)
from tests.conformance import agents
from tests.conformance.agents import Job

ROOT = Path(__file__).resolve().parents[2]


async def _abandon(store: DurableRunStore, run_id: str, lease: float) -> None:
    """Start a run and crash its worker while it waits for 'go'."""
    task = asyncio.create_task(
        run_durable(agents.two_phase, Job(), store=store, run_id=run_id, lease=lease)
    )
    while not any(s.intent == "await_event:go" for s in await store.load_steps(run_id)):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_worker_resumes_only_runs_whose_lease_expired() -> None:
    agents.reset()
    store = InMemoryStore()
    await _abandon(store, "abandoned", lease=0.2)
    await _abandon(store, "still-held", lease=30)
    await store.emit_event("abandoned", "go", None)
    await asyncio.sleep(0.25)
    worker = LocalWorker(store, scan_interval=timedelta(milliseconds=20))

    assert await worker.scan() == ["abandoned"]
    assert await worker.scan() == []  # already in hand

    running = asyncio.create_task(worker.run())
    while "abandoned" not in worker.finished:
        await asyncio.sleep(0.01)
    worker.stop()
    await running
    result = worker.finished["abandoned"]
    assert not isinstance(result, BaseException)
    assert result.result == 4
    run = await store.load_run("still-held")
    assert run is not None
    assert run.status == "waiting"  # untouched: still waiting under its live lease


async def test_worker_finds_an_expired_lease_behind_a_thousand_live_ones(
    store: DurableRunStore,
) -> None:
    agents.reset()
    held = DurableRunManifest(
        project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
    )
    for i in range(1000):  # older than the abandoned run, so first in creation order
        await store.start_or_resume(
            run_id=f"held-{i:04}",
            agent="conformance.two_phase",
            manifest=held,
            worker_id="elsewhere",
            lease_for=timedelta(minutes=10),
        )
    await asyncio.sleep(0.01)
    await _abandon(store, "abandoned", lease=0.2)
    await store.emit_event("abandoned", "go", None)
    await asyncio.sleep(0.25)
    worker = LocalWorker(store, worker_id="recovery", scan_interval=timedelta(milliseconds=20))

    assert await worker.scan() == ["abandoned"]

    running = asyncio.create_task(worker.run())
    while "abandoned" not in worker.finished:
        await asyncio.sleep(0.01)
    worker.stop()
    await running
    result = worker.finished["abandoned"]
    assert not isinstance(result, BaseException)
    assert result.result == 4
    assert [r.run_id for r in await store.list_expired_runs(now=result.run.updated_at)] == []


async def test_runs_of_agents_hosted_elsewhere_do_not_hide_one_hosted_here(
    store: DurableRunStore,
) -> None:
    agents.reset()
    manifest = DurableRunManifest(
        project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
    )
    # resume_run refuses an agent this process never registered before taking the lease,
    # so these stay expired; older, they come first in creation order.
    for i in range(3):
        await store.start_or_resume(
            run_id=f"elsewhere-{i}", agent="not.hosted.here", manifest=manifest,
            worker_id="gone", lease_for=timedelta(0),
        )  # fmt: skip
        await asyncio.sleep(0.01)
    await store.start_or_resume(
        run_id="hosted", agent="conformance.two_phase", manifest=manifest,
        worker_id="gone", lease_for=timedelta(0),
    )  # fmt: skip
    worker = LocalWorker(store, worker_id="recovery", max_runs=2)

    assert await worker.scan() == ["hosted"]

    worker.stop()
    await worker.run()  # cancels the resumed run
    now = datetime.now(UTC)
    elsewhere = await store.list_expired_runs(now=now, agents=["not.hosted.here", "other"])
    assert [r.run_id for r in elsewhere] == ["elsewhere-0", "elsewhere-1", "elsewhere-2"]
    assert await store.list_expired_runs(now=now, agents=()) == []


async def _forget_expiry(store: DurableRunStore, run_id: str) -> None:
    """Leave a running run with a holder but no lease expiry, as a hand-edited row would."""
    if isinstance(store, InMemoryStore):
        state = store._runs[run_id]
        state.run = state.run.model_copy(update={"lease_expires_at": None})
    elif isinstance(store, FileStore):
        path = store._dir(run_id) / "run.json"
        run = RunRecord.model_validate_json(path.read_bytes())
        path.write_text(run.model_copy(update={"lease_expires_at": None}).model_dump_json())
    else:
        assert isinstance(store, SqliteStore | PostgresStore)
        await store._execute(
            "UPDATE durable_runs SET lease_expires_at = NULL WHERE run_id = ?", (run_id,)
        )


async def test_a_running_run_without_a_lease_expiry_is_found_and_taken_over(
    store: DurableRunStore,
) -> None:
    manifest = DurableRunManifest(
        project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
    )
    for run_id in ("no-expiry", "held"):
        await store.start_or_resume(
            run_id=run_id, agent="conformance.two_phase", manifest=manifest,
            worker_id="gone", lease_for=timedelta(minutes=10),
        )  # fmt: skip
    await _forget_expiry(store, "no-expiry")

    expired = await store.list_expired_runs(now=datetime.now(UTC))

    assert [r.run_id for r in expired] == ["no-expiry"]
    resumed = await store.start_or_resume(
        run_id="no-expiry", agent="conformance.two_phase", manifest=manifest,
        worker_id="recovery", lease_for=timedelta(seconds=30),
    )  # fmt: skip
    assert resumed.lease is not None
    assert (resumed.lease.holder, resumed.lease.generation) == ("recovery", 2)


def test_worker_reports_an_agent_module_it_cannot_import(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DURABLE_AGENT_MODULES": "no.such.module",
        "DURABLE_STORE": str(tmp_path / "db"),
    }
    out = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "cannot import agent module 'no.such.module'" in out.stderr


@pytest.mark.slow
def test_the_demo_survives_a_killed_worker(tmp_path: Path) -> None:
    env = {**os.environ, "DURABLE_DEMO_DATA": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "durable_agents.examples.local_demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "worker A exited with -9" in out.stdout
    decided = {line.split()[1]: line.split()[2:] for line in out.stdout.splitlines()[-30:]
               if re.match(r"\s+refund-\w+-(approve|edit|reject)\s", line)}  # fmt: skip
    assert decided == {
        "approve": ["refunded", "2500"], "edit": ["refunded", "2000"], "reject": ["declined", "0"]
    }  # fmt: skip
    ledger = (tmp_path / "refunds.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["amount_cents"] for line in ledger) == [2000, 2500]  # once each


async def test_a_run_whose_input_no_longer_decodes_fails_once(store: DurableRunStore) -> None:
    # Recorded before the input type gained its required field `by`.
    stale = DurableRunManifest(
        project_id="p",
        task=TaskSpec(id="t", intent="i", domain="d"),
        input={"approved": True},
    )
    await store.start_or_resume(
        run_id="stale", agent="conformance.strict", manifest=stale, worker_id="gone",
        lease_for=timedelta(0),
    )  # fmt: skip
    worker = LocalWorker(store, scan_interval=timedelta(milliseconds=20))

    running = asyncio.create_task(worker.run())
    while "stale" not in worker.finished:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # ten more scans: none may pick the run up again
    worker.stop()
    await running

    error = worker.finished["stale"]
    assert isinstance(error, DurableRunInputInvalidError)
    assert "no longer matches the input type of agent 'conformance.strict'" in str(error)
    assert "'by'" in str(error)
    run = await store.load_run("stale")
    assert run is not None
    assert (run.status, run.error and run.error.code) == ("failed", "input_invalid")
    assert await worker.scan() == []
