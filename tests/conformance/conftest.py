from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    PostgresStore,
    SqliteStore,
)
from durable_agents.adapters.temporal import DevServer
from tests.conformance import agents
from tests.conformance.substrates import LocalSubstrate, Substrate, TemporalSubstrate

LOCAL_SUBSTRATES = ["memory", "file", "sqlite", "postgres"]
SUBSTRATES = [*LOCAL_SUBSTRATES, "temporal"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_only(reason): the scenario exercises local-store machinery"
    )


@pytest.fixture(autouse=True)
def _fresh_agents() -> None:
    agents.reset()


def store_location(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    if kind == "file":
        return str(tmp_path / "runs")
    if kind == "sqlite":
        return str(tmp_path / "durable.db")
    if kind == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    return ""


async def open_store(kind: str, location: str) -> DurableRunStore:
    """Open the store ``kind`` at ``location``; also used by child processes."""
    if kind == "memory":
        return InMemoryStore()
    if kind == "file":
        return FileStore(location)
    if kind == "sqlite":
        return SqliteStore(location)
    return await PostgresStore.connect(location)


@pytest.fixture(params=SUBSTRATES)
async def substrate(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Substrate]:
    kind: str = request.param
    marker = request.node.get_closest_marker("local_only")
    if marker is not None and kind not in LOCAL_SUBSTRATES:
        pytest.skip(f"local-only: {marker.kwargs.get('reason', '')}")
    if kind == "temporal":
        server: DevServer = request.getfixturevalue("temporal_server")
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        temporal = TemporalSubstrate(client, task_queue=f"conformance-{uuid.uuid4().hex[:8]}")
        await temporal.start_worker()
        yield temporal
        await temporal.close()
        return
    store = await open_store(kind, location := store_location(request, kind, tmp_path))
    sub = LocalSubstrate(kind, store, location=location)
    yield sub
    await sub.close()
