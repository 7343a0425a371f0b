from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    PostgresStore,
    SqliteStore,
)
from tests.conformance import agents
from tests.conformance.substrates import LocalSubstrate, Substrate

LOCAL_SUBSTRATES = ["memory", "file", "sqlite", "postgres"]
SUBSTRATES = [*LOCAL_SUBSTRATES]


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
    store = await open_store(kind, location := store_location(request, kind, tmp_path))
    sub = LocalSubstrate(kind, store, location=location)
    yield sub
    await sub.close()
