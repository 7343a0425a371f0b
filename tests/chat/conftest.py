"""Fixtures of the chat-turn tests: every local store, the Temporal dev server, a model server.

``chat`` runs each scenario on the four local stores (the turn runs in the test's
process, ``StoreTurns``), through ``LocalClient`` on SQLite (``ClientTurns``, as
``durable serve --local`` runs turns) and on the dev server (a worker runs it,
``ClientTurns`` over ``AgentClient``); ``local_chat`` on the local stores only.
``runs()`` is a new caller, as another process would be: a second store (and
client) opened on the same location (the one memory store is shared), or the
same Temporal client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable import DurableClient, DurableContext, StepRecord
from durable.chat import ChatTurnEngine, ChatTurnHooks, ChatTurnIdentity, ClientTurns, TurnRuns
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.chat import StoreTurns
from durable_agents.adapters.local import DurableRunStore, LocalClient, run_durable
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance.conftest import LOCAL_SUBSTRATES, open_store, store_location
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on

OpenStore = Callable[[], Awaitable[DurableRunStore]]
Agent = Callable[[DurableContext, Any], Awaitable[Any]]

MODELS = ("ok", "flaky", "hang-stream-once")


class ChatSubstrate:
    """Where a scenario's runs execute, and how it makes callers of chat turns."""

    def __init__(
        self,
        name: str,
        location: str = "",
        agents: AgentClient | None = None,
        *,
        kind: str | None = None,
        clients: bool = False,
    ) -> None:
        self.name = name
        self.local = agents is None
        self.agents = agents
        self._kind = kind or name
        self._location = location
        self._clients = clients
        self._stores: list[DurableRunStore] = []
        self._opened: list[LocalClient] = []

    async def store(self) -> DurableRunStore:
        """A store of a local substrate opened anew, as another process would open it."""
        if self._kind != "memory" or not self._stores:
            self._stores.append(await open_store(self._kind, self._location))
        return self._stores[-1]

    async def client(self) -> DurableClient:
        """A client of runs, as another process would open one."""
        if self.agents is not None:
            return self.agents
        opened = LocalClient(await self.store(), lease=0.6, poll_interval=0.02)
        self._opened.append(opened)
        return opened

    async def runs(self) -> TurnRuns:
        """A caller of turns, as a separate process would be."""
        if self.agents is not None or self._clients:
            return ClientTurns(await self.client())
        return StoreTurns(await self.store(), lease=0.6, poll_interval=0.02)

    async def engine(self, hooks: ChatTurnHooks | None = None) -> ChatTurnEngine[Any]:
        return ChatTurnEngine(await self.runs(), hooks=hooks)

    async def steps(self, run_id: str) -> list[StepRecord]:
        """The steps of a run, as recorded."""
        if self.agents is not None:
            return await self.agents.steps(run_id)
        return await (await self.store()).load_steps(run_id)

    async def run(self, agent: Agent, job: Any, *, run_id: str, retry_failed: bool) -> Any:
        """Start run ``run_id`` (or find it), wait for it, and return its result."""
        if self.agents is not None or self._clients:
            client = await self.client()
            await client.start(agent, job, run_id=run_id, retry_failed=retry_failed)
            return await asyncio.wait_for(client.result(run_id), 30)
        outcome = await run_durable(
            agent, job, store=await self.store(), run_id=run_id, retry_failed=retry_failed
        )
        return outcome.result

    async def close(self) -> None:
        for client in self._opened:
            await client.close()
        for store in self._stores:
            await store.close()


@contextlib.asynccontextmanager
async def substrate(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ChatSubstrate]:
    if kind == "sqlite-client":
        through = ChatSubstrate(
            kind, store_location(request, "sqlite", tmp_path), kind="sqlite", clients=True
        )
        try:
            yield through
        finally:
            await through.close()
        return
    if kind != "temporal":
        local = ChatSubstrate(kind, store_location(request, kind, tmp_path))
        try:
            yield local
        finally:
            await local.close()
        return
    server: DevServer = request.getfixturevalue("temporal_server")
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    queue = f"chat-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        plugins=[DurableAgentsPlugin(("durable_agents.agents.chat", "tests.chat.agents"))],
        max_cached_workflows=0,
    )
    running = asyncio.create_task(worker.run())
    try:
        yield ChatSubstrate(kind, agents=AgentClient(client, task_queue=queue))
    finally:
        await worker.shutdown()
        await running


@pytest.fixture(params=[*LOCAL_SUBSTRATES, "sqlite-client", "temporal"])
async def chat(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChatSubstrate]:
    async with substrate(request.param, request, tmp_path) as chosen:
        yield chosen


@pytest.fixture(params=LOCAL_SUBSTRATES)
async def local_chat(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ChatSubstrate]:
    """A local store only: where a turn runs in its caller's process."""
    async with substrate(request.param, request, tmp_path) as chosen:
        yield chosen


@pytest.fixture(params=LOCAL_SUBSTRATES)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens stores of one kind, all at the same location (one shared store for memory),
    as separate processes would; every store opened is closed at the end."""
    async with substrate(request.param, request, tmp_path) as chosen:
        yield chosen.store


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    """A real local model server; ``DURABLE_MODELS`` names its models for every worker."""
    async with model_server() as server:
        catalog = models_on(server, MODELS)
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(catalog))
        yield server


@pytest.fixture
def identity(run_id: str) -> ChatTurnIdentity:
    """Turn 0 of a session unique to the test."""
    return ChatTurnIdentity(tenant_id="acme", session_id=run_id, turn_index=0, user_id="ana")
