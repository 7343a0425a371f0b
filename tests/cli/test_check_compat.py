"""``durable check-compat`` as a process: it gates a deploy on the runs in flight.

Runs start on the agent as it was (``tests.cli.compat.before``); then the command
runs with another version installed, as a deploy pipeline would run it before
rolling workers, locally and on a Temporal dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import SqliteStore, run_durable
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.cli.compat import before
from tests.support.cli import checked

BEFORE = "tests.cli.compat.before"
VERSIONS = {
    "unchanged": (BEFORE, 0),
    "patched": ("tests.cli.compat.patched", 0),
    "unguarded": ("tests.cli.compat.unguarded", 1),
}


def _env(tmp_path: Path, modules: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_AGENT_MODULES": modules,
        "DURABLE_DATA": str(tmp_path),
        **more,
    }


@contextlib.asynccontextmanager
async def _waiting_locally(tmp_path: Path, run_id: str) -> AsyncIterator[None]:
    """A run of the agent as it was, waiting for ``paid`` on the local store; its worker
    then stops, leaving the run in flight."""
    store = SqliteStore(tmp_path / "durable.db")
    task = asyncio.create_task(
        run_durable(before.order, before.Order(), store=store, run_id=run_id, poll_interval=0.01)
    )
    try:
        for _ in range(500):
            steps = await store.load_steps(run_id)
            if [s.intent for s in steps] == ["reserve stock", "await_event:paid"]:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        yield
    finally:
        await store.close()


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_local_runs_in_flight(tmp_path: Path, version: str) -> None:
    modules, status = VERSIONS[version]
    async with _waiting_locally(tmp_path, "order-1"):
        done = await asyncio.to_thread(
            checked, "check-compat", "--local", env=_env(tmp_path, modules)
        )

    assert done.returncode == status, done.stderr
    if status == 0:
        assert "checked 1 run in flight" in done.stdout
        assert "replays every one" in done.stdout
    else:
        assert "1 would diverge" in done.stdout
        row = next(line for line in done.stdout.splitlines() if line.startswith("order-1"))
        assert row.split()[:3] == ["order-1", "compat.order", "1"]
        assert "event 'await_event:paid'" in row
        assert "logic 'check fraud'" in row


async def test_local_report_as_json_and_by_agent(tmp_path: Path) -> None:
    async with _waiting_locally(tmp_path, "order-2"):
        env = _env(tmp_path, VERSIONS["unguarded"][0])
        done = await asyncio.to_thread(
            checked, "check-compat", "--local", "--json", "--agent", "compat.order", env=env
        )
        unknown = await asyncio.to_thread(
            checked, "check-compat", "--local", "--agent", "compat.nobody", env=env
        )

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["checked"] == ["order-2"]
    (found,) = report["diverging"]
    assert (found["run_id"], found["position"]) == ("order-2", 1)
    assert "check fraud" in found["error"]
    assert unknown.returncode == 2
    assert "no agent 'compat.nobody'" in unknown.stderr


async def test_local_runs_of_agents_not_installed_are_skipped(tmp_path: Path) -> None:
    async with _waiting_locally(tmp_path, "order-3"):
        env = _env(tmp_path, "tests.cli.answer_agents")
        done = await asyncio.to_thread(checked, "check-compat", "--local", env=env)

    assert done.returncode == 0, done.stderr
    assert "checked 0 runs in flight" in done.stdout
    assert "skipped order-3: agent 'compat.order' is not installed here" in done.stderr


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_temporal_runs_in_flight(
    client: Client, temporal_server: DevServer, task_queue: str, tmp_path: Path, version: str
) -> None:
    modules, status = VERSIONS[version]
    runs = AgentClient(client, task_queue=task_queue)
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin([BEFORE])]):
        await runs.start(before.order, before.Order(), run_id=f"order-{task_queue}")
        for _ in range(200):
            if (await runs.status(f"order-{task_queue}"))["waiting_for"] == ["paid"]:
                break
            await asyncio.sleep(0.05)
    env = _env(tmp_path, modules, TEMPORAL_ADDRESS=temporal_server.address, TASK_QUEUE=task_queue)

    try:
        done = await asyncio.to_thread(checked, "check-compat", env=env)
    finally:  # not left waiting on the shared server
        await client.get_workflow_handle(f"order-{task_queue}").terminate("the test ended")

    assert done.returncode == status, done.stdout + done.stderr
    assert "checked 1 run in flight on Temporal" in done.stdout
    if status:
        row = next(line for line in done.stdout.splitlines() if line.startswith("order-"))
        assert row.split()[1:3] == ["compat.order", "1"]
        assert "'check fraud'" in row


async def test_temporal_with_no_run_in_flight(
    temporal_server: DevServer, task_queue: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, BEFORE, TEMPORAL_ADDRESS=temporal_server.address, TASK_QUEUE=task_queue)

    done = await asyncio.to_thread(checked, "check-compat", env=env)

    assert done.returncode == 0, done.stderr
    assert "checked 0 runs in flight on Temporal" in done.stdout
