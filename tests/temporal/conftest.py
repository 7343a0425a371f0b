from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(temporal_server: DevServer) -> Client:
    return await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)


@pytest.fixture
async def agents_client(client: Client, task_queue: str) -> AsyncIterator[AgentClient]:
    """An ``AgentClient`` whose task queue a worker hosting every test agent serves."""
    modules = (
        "durable_agents.examples.refund",
        "tests.conformance.agents",
        "tests.temporal.agents",
    )
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(modules)]):
        yield AgentClient(client, task_queue=task_queue)
