"""Step heartbeats on a real dev server: a killed worker's step is retried within seconds.

Without heartbeats Temporal retries a step whose worker died only when the
attempt's timeout (5 minutes by default) runs out.
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
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from durable import DEFAULT_HEARTBEAT_TIMEOUT
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.temporal import heartbeat_agents

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("tests.temporal.heartbeat_agents",)
SLACK = 5.0
"""Seconds beyond the heartbeat timeout a retry may take: the retry's 1 s backoff and dispatch."""


@pytest.fixture
async def agents(client: Client, task_queue: str) -> AsyncIterator[AgentClient]:
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        yield AgentClient(client, task_queue=task_queue)


def _executions(journal: Path) -> list[tuple[int, int, float]]:
    if not journal.exists():
        return []
    lines = journal.read_text().splitlines()
    return [(int(a), int(p), float(t)) for a, p, t in (line.split() for line in lines)]


async def _execution(journal: Path, attempt: int, *, within: float) -> tuple[int, int, float]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for execution in _executions(journal):
            if execution[0] == attempt:
                return execution
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"attempt {attempt} did not start within {within} s: {_executions(journal)}"
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_step_whose_worker_is_killed_runs_again_within_its_heartbeat_timeout(
    temporal_server: DevServer, client: Client, task_queue: str, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "executions.txt"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": ",".join(MODULES),
        "DURABLE_DATA": str(tmp_path),
    }
    with (tmp_path / "worker.log").open("w") as log:
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        agents = AgentClient(client, task_queue=task_queue)
        await agents.start(heartbeat_agents.crash, {"path": str(journal)}, run_id=run_id)
        first = await _execution(journal, 1, within=60)
        assert first[1] == doomed.pid
        # Mid-step, past its first heartbeat (a third of the timeout in).
        await asyncio.sleep(DEFAULT_HEARTBEAT_TIMEOUT.total_seconds() / 2)

        async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
            doomed.send_signal(signal.SIGKILL)
            killed_at = time.time()
            await asyncio.wait_for(doomed.wait(), 10)
            bound = DEFAULT_HEARTBEAT_TIMEOUT.total_seconds() + SLACK
            second = await _execution(journal, 2, within=bound + 30)
            recovery = second[2] - killed_at
            print(f"\nthe step ran again {recovery:.1f} s after its worker was killed")
            assert second[1] == os.getpid()  # on the surviving worker
            assert recovery < bound, f"recovery took {recovery:.1f} s, over {bound} s"
            assert await agents.result(run_id) == os.getpid()
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await asyncio.wait_for(doomed.wait(), 10)


async def test_a_step_keeps_its_heartbeat_while_it_blocks_the_event_loop(
    agents: AgentClient, run_id: str
) -> None:
    # Each nap lasts three heartbeat timeouts: one missed beat would retry it.
    await agents.start(heartbeat_agents.naps, {"seconds": 3}, run_id=run_id)

    blocking, busy, quiet, threaded = await agents.result(run_id)

    assert (blocking, busy, quiet) == (1, 1, 1)  # first attempts, never timed out
    assert threaded is True  # this SDK's core takes heartbeats from a thread


async def test_a_steps_own_checkpoint_is_not_overwritten(agents: AgentClient, run_id: str) -> None:
    await agents.start(heartbeat_agents.details, {"seconds": 5}, run_id=run_id)

    # The background heartbeat stopped at the checkpoint: the step went quiet,
    # timed out after 1 s and its retry found the checkpoint.
    assert await agents.result(run_id) == [2, "checkpoint"]


async def test_activities_carry_the_default_or_an_explicit_heartbeat_timeout(
    agents: AgentClient, client: Client, run_id: str
) -> None:
    await agents.start(heartbeat_agents.options, {}, run_id=run_id)
    assert await agents.result(run_id) == ["plain", "own", "own", "local"]

    scheduled: list[tuple[str, timedelta]] = []
    local_activities = 0
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            heartbeat = attributes.heartbeat_timeout.ToTimedelta()
            scheduled.append((attributes.activity_type.name, heartbeat))
        marker = event.marker_recorded_event_attributes.marker_name
        local_activities += marker == "core_local_activity"
    assert scheduled == [
        ("plain", DEFAULT_HEARTBEAT_TIMEOUT),
        ("own_heartbeat", timedelta(seconds=4)),
        ("own_heartbeat", timedelta(seconds=6)),
    ]
    assert local_activities == 1  # it takes no heartbeat timeout, and still runs
