"""What ``durable watch`` says when a step retries: the error and the delay, on both substrates.

Each test drives the real command as a process and asserts its exit status, that
no traceback appears, and the words of the answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.cli import answer_agents
from tests.support.cli import checked

MODULES = ("tests.cli.answer_agents",)
REASON = "after PartnerDownError: the partner answered 503: overloaded (waited "


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
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        yield AgentClient(client, task_queue=task_queue)


run = checked


def _retries(watched: str) -> list[str]:
    return [line for line in watched.splitlines() if "retrying" in line]


def test_watch_locally_says_why_a_step_retried(env: dict[str, str], run_id: str) -> None:
    failed = run(
        "run", "answers.flaky", "--input", '{"attempts": 3}', "--run-id", run_id, "--local", env=env
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr

    watched = run("watch", run_id, "--local", env=env)

    assert watched.returncode == 1, watched.stderr  # the run failed: its attempts are spent
    assert [line.split("  ", 1)[1] for line in _retries(watched.stdout)] == [
        f"step 0 retrying: attempt {n} of call the partner {REASON}0.05s)" for n in (2, 3)
    ]


async def test_watch_on_temporal_says_why_a_step_retried(
    answers: AgentClient, env: dict[str, str], run_id: str
) -> None:
    await answers.start(answer_agents.flaky, answer_agents.Job(attempts=3), run_id=run_id)

    watched = await asyncio.to_thread(run, "watch", run_id, env=env)

    assert watched.returncode == 1, watched.stderr  # the run failed: its attempts are spent
    retries = _retries(watched.stdout)
    assert len(retries) == 2
    for n, line in zip((2, 3), retries, strict=True):
        assert f"step 0 retrying: attempt {n} of call the partner {REASON}" in line
