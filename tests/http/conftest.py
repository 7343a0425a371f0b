"""The API served by a real uvicorn on a free port, over each substrate's real client."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

import tests.http.agents  # noqa: F401  (registers the agents the tests start, in every server)
from durable import DurableClient
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.http import ServerSettings
from durable_agents.adapters.local import LocalClient, SqliteStore
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.http.server import ClientFactory, ServerThread

TOKEN = f"test-token-{uuid.uuid4().hex}"
AGENTS = ("tests.http.agents", "durable_agents.agents.chat")


def local_client(path: Path) -> ClientFactory:
    async def make(stack: contextlib.AsyncExitStack) -> DurableClient:
        store = SqliteStore(path)
        stack.push_async_callback(store.close)
        return LocalClient(store)

    return make


def temporal_client(address: str) -> ClientFactory:
    async def make(stack: contextlib.AsyncExitStack) -> DurableClient:
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        task_queue = f"http-{uuid.uuid4().hex[:8]}"
        worker = Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(AGENTS)])
        await stack.enter_async_context(worker)
        return AgentClient(client, task_queue=task_queue)

    return make


def client_for(substrate: str, request: pytest.FixtureRequest, tmp_path: Path) -> ClientFactory:
    if substrate == "temporal":
        server: DevServer = request.getfixturevalue("temporal_server")
        return temporal_client(server.address)
    return local_client(tmp_path / "durable.db")


@pytest.fixture(params=["local", "temporal"])
def substrate(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings() -> ServerSettings:
    return ServerSettings(tokens=(TOKEN,))


@pytest.fixture
def served(
    substrate: str, settings: ServerSettings, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServerThread]:
    server = ServerThread(client_for(substrate, request, tmp_path), settings).start()
    yield server
    server.stop()


@pytest.fixture
async def http(served: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the served API, with a valid token."""
    async with httpx.AsyncClient(
        base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as client:
        yield client
