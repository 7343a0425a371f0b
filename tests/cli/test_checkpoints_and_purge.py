"""``durable checkpoints`` and ``durable purge``, run as real processes.

Purge takes ended runs from the local store and reports what it removed; a run
still running is never touched. Checkpoints are read from a local store and from
a run on a real Temporal dev server.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable import DurableRunManifest, TaskSpec
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.blobs import BLOBS_ENV
from durable_agents.adapters.local import SqliteStore, run_durable
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance import checkpoint_agents
from tests.conformance.checkpoint_agents import Task
from tests.support.cli import checked

MODULES = "tests.conformance.checkpoint_agents"
MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The local store in ``tmp_path``; no Temporal server is reachable."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The store ``durable --local`` uses under ``local_env``."""
    sqlite = SqliteStore(tmp_path / "durable.db")
    yield sqlite
    await sqlite.close()


async def test_checkpoints_of_a_local_run(local_env: dict[str, str], store: SqliteStore) -> None:
    await run_durable(checkpoint_agents.round_trip, Task(), store=store, run_id="notes-1")

    listed = checked("checkpoints", "notes-1", "--local", env=local_env)
    payload = checked("checkpoints", "notes-1", "context", "--local", env=local_env)
    missing = checked("checkpoints", "notes-1", "plan", "--local", env=local_env)
    unknown = checked("checkpoints", "notes-9", "--local", env=local_env)

    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["name", "bytes", "step", "written"]
    assert row.split()[:3] == ["context", "37", "0"]
    assert payload.returncode == 0, payload.stderr
    assert json.loads(payload.stdout) == {"notes": ["a", "b"], "topic": "refunds"}
    assert missing.returncode == 2
    assert missing.stderr.startswith("durable checkpoints: [checkpoint_not_found] run 'notes-1'")
    assert "durable checkpoints notes-1" in missing.stderr
    assert unknown.returncode == 2
    assert "no run 'notes-9'" in unknown.stderr


async def _ended(store: SqliteStore, run_id: str, status: str = "completed") -> None:
    resumed = await store.start_or_resume(
        run_id=run_id, agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(30)
    )
    assert resumed.lease is not None
    await store.begin_step(resumed.lease, step_index=0, intent="s", kind="logic", input_hash="")
    await store.complete_step(resumed.lease, step_index=0, result=1)
    await store.end_run(resumed.lease, status=status)  # type: ignore[arg-type]


async def test_purge_removes_ended_runs_and_never_a_running_one(
    local_env: dict[str, str], store: SqliteStore
) -> None:
    await _ended(store, "done-1")
    await _ended(store, "broken-1", "failed")
    running = await store.start_or_resume(
        run_id="running-1", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(60)
    )
    assert running.lease is not None
    await store.begin_step(running.lease, step_index=0, intent="s", kind="logic", input_hash="")
    await asyncio.sleep(1.1)  # all three began over a second ago; two of them ended

    rehearsal = checked("purge", "--older-than", "1s", "--dry-run", "--local", env=local_env)
    failed_only = checked(
        "purge", "--older-than", "1s", "--status", "failed", "--local", env=local_env
    )
    rest = checked("purge", "--older-than", "1s", "--local", env=local_env)

    assert rehearsal.returncode == 0, rehearsal.stderr
    assert rehearsal.stdout.splitlines()[0].startswith("would purge 2 run(s) that ended before")
    assert failed_only.returncode == 0, failed_only.stderr
    assert failed_only.stdout.splitlines()[1:] == ["  broken-1"]
    assert rest.returncode == 0, rest.stderr
    first, *removed = rest.stdout.splitlines()
    assert first.startswith("purged 1 run(s) that ended before")
    assert first.endswith(": 1 steps, 0 events, 0 live entries, 0 checkpoints, 0 blobs")
    assert removed == ["  done-1"]
    assert [r.run_id for r in await store.list_runs()] == ["running-1"]
    still = await store.load_run("running-1")
    assert still is not None
    assert (still.status, still.step_count, still.lease_holder) == ("running", 1, "w")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--older-than", "soon", "--local"], "--older-than must be a duration such as 30d"),
        (["--older-than", "1d", "--status", "running", "--local"], "invalid choice: 'running'"),
        (["--older-than", "1d"], "namespace update --namespace default --retention 30d"),
    ],
    ids=["bad duration", "an active state", "on Temporal"],
)
def test_purge_refuses_what_it_cannot_do(
    local_env: dict[str, str], args: list[str], said: str
) -> None:
    done = checked("purge", *args, env=local_env)

    assert done.returncode == 2
    assert said in done.stderr


async def test_checkpoints_of_a_temporal_run(
    client: Client, temporal_server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = str(tmp_path / "blobs")
    monkeypatch.setenv(BLOBS_ENV, blobs)  # this test's worker and its command share them
    queue = "cli-checkpoints"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": queue,
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
        BLOBS_ENV: blobs,
    }
    runs = AgentClient(client, task_queue=queue)
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin((MODULES,))]):
        await runs.start(checkpoint_agents.round_trip, Task(), run_id="cli-notes")
        await runs.result("cli-notes")

    # The worker is gone: the run's memo and the blob store answer.
    listed = await asyncio.to_thread(checked, "checkpoints", "cli-notes", env=env)
    payload = await asyncio.to_thread(checked, "checkpoints", "cli-notes", "context", env=env)
    missing = await asyncio.to_thread(checked, "checkpoints", "cli-notes", "plan", env=env)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:3] == ["context", "37", "0"]
    assert json.loads(payload.stdout) == {"notes": ["a", "b"], "topic": "refunds"}
    assert missing.returncode == 2
    assert "has no checkpoint 'plan'" in missing.stderr
