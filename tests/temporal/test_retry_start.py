"""A retried step starts as soon as Temporal retries it, even when the worker that held
its run is dead.

A retried step activity reads how much text earlier attempts published, by a query
the run's worker answers. After a kill that worker is usually the dead one, and the
query waits 5 s for nobody; the step used to wait with it (3.7 s after the kill with
a 3 s heartbeat became 8.7 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from bench._faults_agents import MODULE, Job, ledger_run
from bench._faults_ledger import Entry, read_ledger
from durable import LiveEvent
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from durable_agents.adapters.temporal._live import ANSWER_WITHIN, ActivityTokens, _beyond

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 3.0
"""The ledger step's heartbeat timeout."""
SLACK = 3.5
"""Seconds beyond the heartbeat a retry may take to start: backoff, dispatch, a busy machine;
under the 5 s the step used to wait on the query."""


def test_text_a_retry_already_showed_is_trimmed_from_what_waited() -> None:
    def token(offset: int, text: str) -> LiveEvent:
        return LiveEvent(kind="token", step=0, offset=offset, text=text)

    assert _beyond(token(0, "hello"), 5) is None
    assert _beyond(token(3, "lo world"), 5) == token(5, " world")
    assert _beyond(token(6, "world"), 5) == token(6, "world")
    entry = LiveEvent(kind="step_started", step=0)
    assert _beyond(entry, 5) is entry


@pytest.fixture
async def unattended(client: Client, run_id: str) -> AsyncIterator[ActivityEnvironment]:
    """An activity environment for attempt 2 of step 0 of a run no worker serves: a query
    to it waits ``ANSWER_WITHIN`` for nobody, as one to a killed worker's run does."""
    handle = await client.start_workflow(
        "faults.ledger", {}, id=run_id, task_queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    env = ActivityEnvironment(client)
    env.info = dataclasses.replace(
        env.info,
        attempt=2,
        activity_id="0:step 0",
        workflow_id=run_id,
        workflow_run_id=handle.result_run_id,
        workflow_type="faults.ledger",
    )
    try:
        yield env
    finally:
        await handle.terminate()


async def _timed(push: str | None) -> tuple[float, float]:
    """Seconds until a retried step's body began, and until its block was left."""
    began = time.monotonic()
    async with ActivityTokens(0, "step 0") as deltas:
        entered = time.monotonic() - began
        if push is not None:
            assert deltas is not None
            deltas.push(push)
    return entered, time.monotonic() - began


async def test_a_retried_step_starts_without_waiting_for_its_runs_worker(
    unattended: ActivityEnvironment,
) -> None:
    entered, left = await unattended.run(_timed, None)
    assert entered < 1.0, f"the step began {entered:.1f} s late"
    assert left < 2.0, f"a step with no text waited {left:.1f} s for the query"


async def test_a_retried_step_with_text_waits_for_the_query_only_so_long(
    unattended: ActivityEnvironment, client: Client, run_id: str
) -> None:
    entered, left = await unattended.run(_timed, "hello")
    assert entered < 1.0
    assert left < ANSWER_WITHIN.total_seconds() + 3.0
    history = await client.get_workflow_handle(run_id).fetch_history()
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals, "the retry entry and the text went out"


async def _first(ledger: Path, step: int, *, within: float, besides: int = 0) -> Entry:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ledger.exists():
            for entry in read_ledger(ledger).entries:
                if entry.kind == "start" and entry.step == step and entry.pid != besides:
                    return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"step {step} did not start within {within} s")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_step_whose_worker_was_killed_starts_again_within_its_heartbeat(
    temporal_server: DevServer, client: Client, task_queue: str, run_id: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": MODULE,
        "DURABLE_DATA": str(tmp_path),
    }
    with (tmp_path / "worker.log").open("w") as log:
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        agents = AgentClient(client, task_queue=task_queue)
        job = Job(run=run_id, ledger=str(ledger), steps=2, nap=4.0)
        await agents.start(ledger_run, job, run_id=run_id)
        first = await _first(ledger, 0, within=60)
        assert first.pid == doomed.pid
        await asyncio.sleep(1.0)  # mid-step, its run held by the doomed worker
        plugins = [DurableAgentsPlugin((MODULE,))]
        async with Worker(client, task_queue=task_queue, plugins=plugins):
            killed_at = time.time()
            doomed.send_signal(signal.SIGKILL)
            await asyncio.wait_for(doomed.wait(), 10)
            again = await _first(ledger, 0, within=30, besides=doomed.pid)
            waited = again.at - killed_at
            assert again.pid == os.getpid()
            assert waited < HEARTBEAT + SLACK, f"the step started again {waited:.1f} s after"
            assert await agents.result(run_id) == 1
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await asyncio.wait_for(doomed.wait(), 10)
