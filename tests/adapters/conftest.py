"""The fixture giving each test one local store of every kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    PostgresStore,
    SqliteStore,
)
from tests.support.postgres import drop_database, fresh_database


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableRunStore]:
    """A store of each kind; on PostgreSQL a database of its own, which no other
    test's runs share (a purge would delete them, a listing would count them)."""
    kind: str = request.param
    if kind != "postgres":
        opened: DurableRunStore
        if kind == "memory":
            opened = InMemoryStore()
        elif kind == "file":
            opened = FileStore(tmp_path / "runs")
        else:
            opened = SqliteStore(tmp_path / "durable.db")
        yield opened
        await opened.close()
        return
    dsn = fresh_database(request.getfixturevalue("postgres_dsn"), f"t_{uuid.uuid4().hex}")
    try:
        postgres = await PostgresStore.connect(dsn)
        try:
            yield postgres
        finally:
            await postgres.close()
    finally:
        drop_database(dsn)  # the server keeps no database of a test that ended
