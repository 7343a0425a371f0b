"""What ``durable status`` and ``durable event`` answer: live attempts, spent retries, no worker.

Each test drives the real command as a process and asserts its exit status, that
no traceback appears, and the words of the answer, on Temporal and locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable import DurableRegistrationError, DurableRunEndedError
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.llm._client import classify_status
from durable_agents.adapters.local import SqliteStore, run_durable
from durable_agents.adapters.temporal import EVENT_SIGNAL, AgentClient, DevServer
from tests.cli import answer_agents
from tests.support.cli import checked

MODULES = ("tests.cli.answer_agents",)


@pytest.fixture
def env(temporal_server: DevServer, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": ",".join(MODULES),
        "DURABLE_DATA": str(tmp_path),
    }


@pytest.fixture
async def answers(client: Client, task_queue: str) -> AsyncIterator[AgentClient]:
    """A client whose task queue a worker hosting the answer agents serves."""
    async with Worker(
        client,
        task_queue=task_queue,
        plugins=[DurableAgentsPlugin(MODULES)],
        max_cached_workflows=0,
    ):
        yield AgentClient(client, task_queue=task_queue)


@pytest.fixture
def nobody(client: Client) -> AgentClient:
    """A client of a task queue no worker polls."""
    return AgentClient(client, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")


run = checked


async def arun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, env=env)


async def _pending_attempt(client: Client, run_id: str, at_least: int) -> int:
    handle = client.get_workflow_handle(run_id)
    for _ in range(200):
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].attempt >= at_least:
            return int(pending[0].attempt)
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached attempt {at_least}")


# 1. status shows the live attempt and the last failure


async def test_status_on_temporal_shows_the_live_attempt_and_last_failure(
    answers: AgentClient, env: dict[str, str], run_id: str
) -> None:
    await answers.start(answer_agents.flaky, answer_agents.Job(), run_id=run_id)
    try:
        attempt = await _pending_attempt(answers.client, run_id, at_least=4)

        status = await arun("status", run_id, env=env)

        assert status.returncode == 0, status.stderr
        line = next(text for text in status.stdout.splitlines() if text.startswith("step 0:"))
        shown = int(line.split("attempt ")[1].split(",")[0])
        assert shown >= attempt >= 4
        assert "last failure PartnerDownError: the partner answered 503" in line
    finally:
        await answers.client.get_workflow_handle(run_id).terminate("test over")


async def test_status_locally_shows_the_attempt_and_last_failure(
    env: dict[str, str], tmp_path: Path, run_id: str
) -> None:
    store = SqliteStore(tmp_path / "durable.db")
    task = asyncio.create_task(
        run_durable(answer_agents.flaky, answer_agents.Job(), store=store, run_id=run_id)
    )
    try:
        for _ in range(200):
            steps = await store.load_steps(run_id)
            if steps and steps[0].attempts >= 3 and steps[0].error is not None:
                break
            await asyncio.sleep(0.05)

        status = await arun("status", run_id, "--local", env=env)

        assert status.returncode == 0, status.stderr
        assert "step 0: attempt " in status.stdout
        assert "last failure PartnerDownError: the partner answered 503" in status.stdout
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


# 3. a final failure says the attempts are spent


def _spent(text: str) -> None:
    assert "all 3 attempt(s) its retry policy allows are spent" in text, text
    assert "another attempt" not in text


async def test_a_final_failure_on_temporal_says_the_attempts_are_spent(
    answers: AgentClient, env: dict[str, str], run_id: str
) -> None:
    done = await arun(
        "run", "answers.flaky", "--input", '{"attempts": 3}', "--run-id", run_id, "--wait", env=env
    )

    assert done.returncode == 1, done.stdout + done.stderr
    _spent(done.stderr)
    status = await arun("status", run_id, env=env)
    assert status.returncode == 0, status.stderr
    assert "failed with" in status.stdout
    _spent(status.stdout)


async def test_a_final_failure_locally_says_the_attempts_are_spent(
    env: dict[str, str], run_id: str
) -> None:
    done = await arun(
        "run", "answers.flaky", "--input", '{"attempts": 3}', "--run-id", run_id, "--local", env=env
    )

    assert done.returncode == 1, done.stdout + done.stderr
    _spent(done.stderr)
    status = await arun("status", run_id, "--local", env=env)
    assert "step 0: attempt 3, failed with PartnerDownError" in status.stdout


def test_a_model_error_promises_no_other_attempt() -> None:
    error = classify_status(503, b'{"error": "overloaded"}', httpx.Headers(), "http://model")

    assert error.retryable
    assert "another attempt" not in str(error)


# 8. an event with no worker is delivered, never a hang


async def test_an_event_with_no_worker_is_delivered_by_signal(
    nobody: AgentClient, client: Client, env: dict[str, str], run_id: str
) -> None:
    await nobody.start(answer_agents.versioned, answer_agents.Job(), run_id=run_id)

    sent = await arun("event", run_id, "go", env=env)

    assert sent.returncode == 0, sent.stderr
    assert "delivered, not yet acknowledged" in sent.stdout
    assert f"task queue {nobody.task_queue!r}" in sent.stdout
    # The event waits in the run's history and is applied once a worker comes.
    async with Worker(client, task_queue=nobody.task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        assert await asyncio.wait_for(nobody.result(run_id), 30) == "done"


# 9. status with no worker, and of a run that failed by nondeterminism


async def test_status_with_no_worker_names_the_missing_worker(
    nobody: AgentClient, env: dict[str, str], run_id: str
) -> None:
    await nobody.start(answer_agents.versioned, answer_agents.Job(), run_id=run_id)

    status = await arun("status", run_id, env=env)

    assert status.returncode == 0, status.stderr
    assert f"run {run_id}: running (agent answers.versioned)" in status.stdout
    assert f"no worker polls task queue {nobody.task_queue!r}" in status.stdout
    assert "waiting for unknown" in status.stdout


@pytest.fixture
def knobs() -> Iterator[dict[str, str]]:
    saved = dict(answer_agents.KNOBS)
    yield answer_agents.KNOBS
    answer_agents.KNOBS.clear()
    answer_agents.KNOBS.update(saved)


async def test_status_of_a_nondeterministic_run_prints_its_failure(
    client: Client, task_queue: str, env: dict[str, str], run_id: str, knobs: dict[str, str]
) -> None:
    agents = AgentClient(client, task_queue=task_queue)
    async with Worker(
        client,
        task_queue=task_queue,
        plugins=[DurableAgentsPlugin(MODULES)],
        max_cached_workflows=0,
    ):
        await agents.start(answer_agents.versioned, answer_agents.Job(), run_id=run_id)
        for _ in range(200):
            if (await agents.status(run_id))["waiting_for"] == ["go"]:
                break
            await asyncio.sleep(0.05)
    knobs["intent"] = "renamed"  # the next deploy renames the first step
    async with Worker(
        client,
        task_queue=task_queue,
        plugins=[DurableAgentsPlugin(MODULES)],
        max_cached_workflows=0,
    ):
        await client.get_workflow_handle(run_id).signal(EVENT_SIGNAL, {"key": "go"})
        with pytest.raises(Exception, match="no longer matches the code"):
            await asyncio.wait_for(agents.result(run_id), 30)

        status = await arun("status", run_id, env=env)

    assert status.returncode == 0, status.stderr
    assert f"run {run_id}: failed" in status.stdout
    assert "failed with [step_divergence] the recorded history" in status.stdout
    assert "'0:first'" in status.stdout
    assert "its steps come from the run's history" in status.stdout


# 14. an event to a run that ends during the update


async def test_an_event_to_a_run_that_ends_during_the_update_says_run_ended(
    nobody: AgentClient, run_id: str
) -> None:
    await nobody.start(answer_agents.versioned, answer_agents.Job(), run_id=run_id)
    sending = asyncio.create_task(nobody.send_event(run_id, "go", None))
    await asyncio.sleep(1)  # the update waits for a worker

    await nobody.client.get_workflow_handle(run_id).terminate("closed by hand")

    with pytest.raises(DurableRunEndedError, match="has already ended"):
        await asyncio.wait_for(sending, 30)


# 13. search attributes the server never registered


@pytest.fixture(scope="module")
def bare_server() -> Iterator[DevServer]:
    """A dev server without the custom search attributes, like a fresh cluster."""
    with DevServer(search_attributes={}) as server:
        yield server


async def test_unregistered_search_attributes_are_named_with_the_fix(
    bare_server: DevServer, env: dict[str, str], run_id: str
) -> None:
    client = await Client.connect(bare_server.address, data_converter=pydantic_data_converter)
    with pytest.raises(DurableRegistrationError) as caught:
        await AgentClient(client, task_queue="q").start(
            answer_agents.versioned, answer_agents.Job(), run_id=run_id
        )
    assert "AgentName" in str(caught.value)
    assert "register_search_attributes.py" in str(caught.value)
    assert "search_attributes=False" in str(caught.value)

    done = await arun(
        "run",
        "answers.versioned",
        "--input",
        "{}",
        env={**env, "TEMPORAL_ADDRESS": bare_server.address},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "AgentName" in done.stderr
    assert "register_search_attributes.py" in done.stderr
