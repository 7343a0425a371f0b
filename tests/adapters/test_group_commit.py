"""Group commit: concurrent runs' step writes share commits, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from durable import DurableContext, DurableStoreError, agent, step
from durable_agents.adapters.local import PostgresStore, SqliteStore, run_durable
from durable_agents.adapters.local._group_commit import GroupCommit, Write
from durable_agents.adapters.local._sql import SqlStore
from tests.support.postgres import fresh_database


class Count(BaseModel):
    steps: int


@step(name="group.echo")
async def echo(i: int) -> int:
    return i


@agent(name="group.counting")
async def counting(ctx: DurableContext, count: Count) -> int:
    return sum([await ctx.step(f"step {i}", echo, i) for i in range(count.steps)])


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        opened: SqlStore = SqliteStore(tmp_path / "group.db")
    else:
        dsn = fresh_database(request.getfixturevalue("postgres_dsn"), f"group_{tmp_path.name}")
        opened = await PostgresStore.connect(dsn)
    yield opened
    await opened.close()


async def test_concurrent_runs_share_commits(store: SqlStore) -> None:
    results = await asyncio.gather(
        *(run_durable(counting, Count(steps=10), store=store, run_id=f"run-{n}") for n in range(20))
    )

    assert [r.result for r in results] == [45] * 20
    for n in range(20):
        steps = await store.load_steps(f"run-{n}")
        assert [(s.step_index, s.status, s.result) for s in steps] == [
            (i, "completed", i) for i in range(10)
        ]
    group = store._group
    assert group is not None
    assert group.writes >= 400  # every step's begin and outcome, and the live stream
    assert group.batches * 4 <= group.writes  # shared: several writes a commit


async def test_a_failing_write_fails_alone_in_its_batch(store: SqlStore) -> None:
    await store._execute("CREATE TABLE grouped (k TEXT PRIMARY KEY, v INTEGER)", ())
    outcomes = await store._run_batch(
        [
            Write("INSERT INTO grouped (k, v) VALUES ('a', 1)", ()),
            Write("INSERT INTO grouped (k, v) VALUES ('a', 2)", ()),  # the key is taken
            Write("INSERT INTO grouped (k, v) VALUES ('b', 3) RETURNING v", (), returning=True),
        ]
    )

    assert outcomes[0] == 1
    assert isinstance(outcomes[1], DurableStoreError)
    assert [tuple(row) for row in outcomes[2]] == [(3,)]  # type: ignore[union-attr]
    rows = await store._fetch("SELECT k, v FROM grouped ORDER BY k", ())
    assert [tuple(row) for row in rows] == [("a", 1), ("b", 3)]  # both committed


async def test_writes_given_up_by_their_caller_still_commit_for_the_others(
    store: SqlStore,
) -> None:
    await store._execute("CREATE TABLE kept (k TEXT PRIMARY KEY)", ())
    group = GroupCommit(store._run_batch)  # as for runs sharing the store
    first = asyncio.ensure_future(group.submit(Write("INSERT INTO kept VALUES ('a')", ())))
    second = asyncio.ensure_future(group.submit(Write("INSERT INTO kept VALUES ('b')", ())))
    await asyncio.sleep(0)  # both are in the batch, which waits a turn for more
    first.cancel()

    assert await second == 1
    with pytest.raises(asyncio.CancelledError):
        await first
    rows = await store._fetch("SELECT k FROM kept ORDER BY k", ())
    assert [row[0] for row in rows] == ["a", "b"]  # the batch ran as one


async def test_a_sqlite_write_waits_for_another_process_holding_the_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "held.db", busy_timeout=5)
    await store._execute("CREATE TABLE waited (k TEXT)", ())
    other = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    try:
        assert await store._write(Write("INSERT INTO waited VALUES ('a')", ())) == 1
    finally:
        other.close()
        await store.close()


async def test_a_sqlite_write_gives_up_past_the_busy_timeout_saying_why(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "held.db", busy_timeout=0.2)
    await store._execute("CREATE TABLE waited (k TEXT)", ())
    other = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DurableStoreError, match="locked"):
            await store._write(Write("INSERT INTO waited VALUES ('a')", ()))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
