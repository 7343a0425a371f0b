"""The fixture giving each test one local store of every kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durable_agents.adapters.local import DurableRunStore
from tests.conformance.conftest import LOCAL_SUBSTRATES, open_store
from tests.support.postgres import drop_database, fresh_database


@pytest.fixture(params=LOCAL_SUBSTRATES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableRunStore]:
    """A store of each kind; on PostgreSQL a database of its own, which no other
    test's runs share (a purge would delete them, a listing would count them)."""
    kind: str = request.param
    dsn = None
    if kind == "postgres":
        dsn = fresh_database(request.getfixturevalue("postgres_dsn"), f"t_{uuid.uuid4().hex}")
    files = {"file": str(tmp_path / "runs"), "sqlite": str(tmp_path / "durable.db")}
    try:
        opened = await open_store(kind, dsn or files.get(kind, ""))
        try:
            yield opened
        finally:
            await opened.close()
    finally:
        if dsn is not None:
            drop_database(dsn)  # the server keeps no database of a test that ended
