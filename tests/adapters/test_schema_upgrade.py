"""Databases left by earlier versions open in place: every record kept, new writes taken.

Each test builds a real old database from the frozen DDL in ``old_schemas``,
fills it as that version did, then opens it with the current store.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from durable import CheckpointInfo, DurableRunManifest, DurableStoreError, TaskSpec
from durable_agents.adapters.local import DurableRunStore, PostgresStore, SqliteStore
from durable_agents.adapters.local._schema import ADDED_RUN_COLUMNS, SCHEMA_VERSION
from tests.adapters import old_schemas
from tests.cli.test_stores import _as_plain_user, _seal
from tests.support.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)
JOURNAL = {"durable_conversations", "durable_conversation_turns"}
_BUILDS = {2: old_schemas.version_2, 3: old_schemas.version_3, 4: old_schemas.version_4}


def _old_sqlite(path: Path, version: int, *, conversations: tuple[bool, ...] = ()) -> None:
    """A SQLite database of ``version`` holding the run ``old``; a conversation per flag."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if version == 1:
            statements = old_schemas.version_1("INTEGER", " WITHOUT ROWID")
        else:
            build = _BUILDS[version]
            statements = build("INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT", " WITHOUT ROWID")
        for statement in statements:
            db.execute(statement)
        old_schemas.write_old_run(db.execute, "old", MANIFEST)
        if version >= 2:
            old_schemas.write_old_live_entry(db.execute, "old")
        if version >= 4:
            old_schemas.write_old_ended_run(db.execute, "old-ended", MANIFEST)
        for number, halted in enumerate(conversations):
            old_schemas.write_old_conversation(
                db.execute, f"old/conversation-{number}", halted=halted
            )
    finally:
        db.close()


def _tables(store: SqliteStore) -> set[str]:
    rows = store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def _version(store: SqliteStore) -> list[Any]:
    return store._db.execute("SELECT version FROM durable_schema").fetchall()


async def _check_upgraded(store: DurableRunStore, *, live: bool) -> None:
    """The old run reads as it was written, and every kind of write works on it."""
    run = await store.load_run("old")
    assert run is not None
    assert (run.status, run.step_count, run.lease_generation) == ("running", 2, 3)
    assert (run.parent_run_id, run.cancel_requested) == (None, None)
    assert (run.recoveries, run.recovered_from) == (0, None)
    steps = await store.load_steps("old")
    assert [(s.intent, s.status, s.result) for s in steps] == [
        ("step 0", "completed", {"i": 0}),
        ("step 1", "completed", {"i": 1}),
    ]
    event = await store.load_event("old", "approval")
    assert event is not None
    assert event.payload == {"ok": True}
    if live:
        assert [e.text for e in await store.read_live("old")] == ["hi"]
        assert await store.live_text_end("old", 1) == 2
    assert await store.list_children("old") == []
    expired = await store.list_expired_runs(now=datetime.now(UTC), limit=10_000)
    assert "old" in [r.run_id for r in expired]

    resumed = await store.start_or_resume(
        run_id="old", agent="a", manifest=MANIFEST, worker_id="new", lease_for=timedelta(30)
    )
    lease = resumed.lease
    assert lease is not None
    assert lease.generation == 4
    # Its worker died long ago: taking it over counts the first recovery, durably.
    assert resumed.resumed == "crash"
    assert (resumed.run.recoveries, resumed.run.recovered_from) == (1, "old-worker")
    stored = await store.load_run("old")
    assert stored is not None
    assert (stored.recoveries, stored.recovered_from) == (1, "old-worker")
    assert [s.result for s in resumed.steps] == [{"i": 0}, {"i": 1}]
    await store.begin_step(lease, step_index=2, intent="step 2", kind="agent", input_hash="")
    await store.complete_step(lease, step_index=2, result={"i": 2})
    # Context checkpoints, new in version 5, are kept for the run that was already there.
    info = CheckpointInfo(
        name="context", step=2, size_bytes=7, digest="0" * 64, written_at=datetime.now(UTC)
    )
    await store.write_checkpoint(lease, info, '{"i":2}')
    assert [c.name for c in await store.list_checkpoints("old")] == ["context"]
    found = await store.read_checkpoint("old", "context")
    assert found is not None
    assert found.payload == {"i": 2}
    child = await store.start_or_resume(
        run_id="old/child-1",
        agent="a",
        manifest=MANIFEST.model_copy(update={"parent_run_id": "old"}),
        worker_id="new",
        lease_for=timedelta(30),
    )
    assert [c.run_id for c in await store.list_children("old")] == ["old/child-1"]
    assert child.run.parent_run_id == "old"
    outcome, _ = await store.request_cancel("old", "upgrade tested")
    assert outcome == "requested"
    asked = await store.load_run("old/child-1")
    assert asked is not None
    assert asked.cancel_requested == "its parent run 'old' was cancelled: upgrade tested"
    ended = await store.end_run(lease, status="completed", result="done")
    assert (ended.status, ended.step_count, ended.cancel_requested) == (
        "completed",
        3,
        "upgrade tested",
    )


# SQLite


async def test_sqlite_upgrades_a_version_2_database_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _old_sqlite(tmp_path / "db", 2, conversations=(True, True))

    with caplog.at_level(logging.WARNING, logger="durable.local"):
        store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)]
    # Every journaled conversation had halted: their results live in their parents' steps.
    assert not _tables(store) & JOURNAL
    assert caplog.records == []
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(durable_runs)")}
    assert {"parent_run_id", "cancel_requested", "recoveries", "recovered_from"} <= columns
    await _check_upgraded(store, live=True)
    await store.close()


async def test_sqlite_keeps_the_journal_of_conversations_still_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _old_sqlite(tmp_path / "db", 2, conversations=(True, False))
    db = sqlite3.connect(tmp_path / "db")
    before = {table: db.execute(f"SELECT * FROM {table}").fetchall() for table in JOURNAL}
    db.close()

    with caplog.at_level(logging.WARNING, logger="durable.local"):
        store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)]
    after = {table: store._db.execute(f"SELECT * FROM {table}").fetchall() for table in JOURNAL}
    assert after == before  # untouched
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert str(tmp_path / "db") in message
    assert "1 journaled conversation(s) had not halted" in message
    assert "restart their turns" in message
    await _check_upgraded(store, live=True)
    await store.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="durable.local"):
        reopened = SqliteStore(tmp_path / "db")  # upgraded already: nothing more to say
    assert caplog.records == []
    assert _tables(reopened) & JOURNAL == JOURNAL
    await reopened.close()


async def test_sqlite_upgrades_a_version_2_database_made_before_the_journal(
    tmp_path: Path,
) -> None:
    _old_sqlite(tmp_path / "db", 2)
    db = sqlite3.connect(tmp_path / "db")
    for table in JOURNAL:  # version 2 had a live stream before it had a journal
        db.execute(f"DROP TABLE {table}")
    db.close()

    store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)]
    await _check_upgraded(store, live=True)
    await store.close()


async def test_sqlite_upgrades_a_version_3_database_in_place(tmp_path: Path) -> None:
    _old_sqlite(tmp_path / "db", 3)

    store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)]
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(durable_runs)")}
    assert {"recoveries", "recovered_from"} <= columns
    await _check_upgraded(store, live=True)
    await store.close()

    reopened = SqliteStore(tmp_path / "db")  # upgraded already: opens as it is
    assert _version(reopened) == [(SCHEMA_VERSION,)]
    run = await reopened.load_run("old")
    assert run is not None
    assert (run.status, run.recoveries, run.recovered_from) == ("completed", 1, "old-worker")
    await reopened.close()


async def test_sqlite_upgrades_a_version_4_database_in_place(tmp_path: Path) -> None:
    _old_sqlite(tmp_path / "db", 4)

    store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)] == [(5,)]
    assert "durable_checkpoints" in _tables(store)
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(durable_runs)")}
    assert {name for name, _ in ADDED_RUN_COLUMNS} <= columns
    await _check_purgeable(store)
    await _check_upgraded(store, live=True)
    await store.close()


async def _check_purgeable(store: DurableRunStore) -> None:
    """The run version 4 left ended is found, and deleted, by a purge."""
    later = datetime.now(UTC)
    [ended] = await store.list_purgeable_runs(ended_before=later, statuses={"completed"})
    assert (ended.run_id, ended.result) == ("old-ended", "done")
    counts = await store.delete_runs(["old-ended", "old"])  # "old" is still active: kept
    assert (counts.runs, counts.steps) == (1, 1)
    assert await store.load_run("old-ended") is None
    assert await store.load_run("old") is not None


async def test_sqlite_upgrades_a_version_1_database_in_place(tmp_path: Path) -> None:
    _old_sqlite(tmp_path / "db", 1)

    store = SqliteStore(tmp_path / "db")

    assert _version(store) == [(SCHEMA_VERSION,)]
    assert "durable_live" in _tables(store)
    assert not _tables(store) & JOURNAL
    await _check_upgraded(store, live=False)
    await store.close()


async def test_sqlite_new_databases_have_no_journal_and_index_children(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    assert _version(store) == [(SCHEMA_VERSION,)]
    assert not _tables(store) & JOURNAL
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    await store.list_children("r")
    store._db.set_trace_callback(None)
    plan = store._db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}").fetchall()
    assert "USING INDEX durable_runs_parent" in str(plan)
    assert "TEMP B-TREE" not in str(plan)  # the index gives creation order
    await store.close()


def test_sqlite_store_refuses_to_read_an_older_schema_it_may_not_upgrade(
    tmp_path: Path,
) -> None:
    _old_sqlite(tmp_path / "db", 2)
    try:
        _seal(tmp_path)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\n"
                "from durable_agents.adapters.local import SqliteStore\n"
                "from durable import DurableStoreError\n"
                "try:\n"
                "    SqliteStore(sys.argv[1])\n"
                "except DurableStoreError as exc:\n"
                "    print(exc)\n",
                str(tmp_path / "db"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=_as_plain_user if os.geteuid() == 0 else None,
        )
    finally:
        for path in (tmp_path, *tmp_path.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)

    assert child.returncode == 0, child.stderr
    assert str(tmp_path / "db") in child.stdout
    assert "schema version 2" in child.stdout
    assert "open it once from a process that may write it" in child.stdout
    store = SqliteStore(tmp_path / "db")  # writable again: upgraded on open
    assert _version(store) == [(SCHEMA_VERSION,)]


async def test_sqlite_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store._db.execute(f"UPDATE durable_schema SET version = {SCHEMA_VERSION + 1}")
    await store.close()

    newer = rf"schema version {SCHEMA_VERSION + 1}.*upgrade the library"
    with pytest.raises(DurableStoreError, match=newer):
        SqliteStore(tmp_path / "db")


# PostgreSQL


def _old_postgres(dsn: str, version: int, *, conversations: tuple[bool, ...] = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:

        def execute(sql: str, params: tuple[Any, ...] = ()) -> object:
            return db.execute(sql.replace("?", "%s"), params)

        if version == 1:
            statements = old_schemas.version_1("BIGINT")
        else:
            statements = _BUILDS[version]("BIGINT", "BIGSERIAL PRIMARY KEY")
        for statement in statements:
            execute(statement)
        old_schemas.write_old_run(execute, "old", MANIFEST)
        if version >= 2:
            old_schemas.write_old_live_entry(execute, "old")
        if version >= 4:
            old_schemas.write_old_ended_run(execute, "old-ended", MANIFEST)
        for number, halted in enumerate(conversations):
            old_schemas.write_old_conversation(execute, f"old/talk-{number}", halted=halted)


def _pg_tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as db:
        rows = db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def _pg_version(dsn: str) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as db:
        return db.execute("SELECT version FROM durable_schema").fetchall()


async def test_postgres_upgrades_a_version_2_database_in_place(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(postgres_dsn, "upgrade_from_2")
    _old_postgres(dsn, 2, conversations=(True,))

    with caplog.at_level(logging.WARNING, logger="durable.local"):
        store = await PostgresStore.connect(dsn)

    assert caplog.records == []
    assert _pg_version(dsn) == [(SCHEMA_VERSION,)]
    assert not _pg_tables(dsn) & JOURNAL
    await _check_upgraded(store, live=True)
    await store.close()


async def test_postgres_keeps_the_journal_of_conversations_still_in_flight(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(postgres_dsn, "upgrade_in_flight")
    _old_postgres(dsn, 2, conversations=(False, False, True))

    with caplog.at_level(logging.WARNING, logger="durable.local"):
        store = await PostgresStore.connect(dsn)

    [warning] = caplog.records
    assert "2 journaled conversation(s) had not halted" in warning.getMessage()
    assert _pg_tables(dsn) & JOURNAL == JOURNAL
    assert _pg_version(dsn) == [(SCHEMA_VERSION,)]
    await _check_upgraded(store, live=True)
    await store.close()


async def test_postgres_upgrades_a_version_3_database_in_place(postgres_dsn: str) -> None:
    dsn = fresh_database(postgres_dsn, "upgrade_from_3")
    _old_postgres(dsn, 3)

    store = await PostgresStore.connect(dsn)

    assert _pg_version(dsn) == [(SCHEMA_VERSION,)]
    await _check_upgraded(store, live=True)
    await store.close()


async def test_postgres_upgrades_a_version_4_database_in_place(postgres_dsn: str) -> None:
    dsn = fresh_database(postgres_dsn, "upgrade_from_4")
    _old_postgres(dsn, 4)

    store = await PostgresStore.connect(dsn)

    assert _pg_version(dsn) == [(SCHEMA_VERSION,)]
    assert "durable_checkpoints" in _pg_tables(dsn)
    await _check_purgeable(store)
    await _check_upgraded(store, live=True)
    await store.close()


async def test_postgres_upgrades_a_version_1_database_in_place(postgres_dsn: str) -> None:
    dsn = fresh_database(postgres_dsn, "upgrade_from_1")
    _old_postgres(dsn, 1)

    store = await PostgresStore.connect(dsn)

    assert _pg_version(dsn) == [(SCHEMA_VERSION,)]
    assert "durable_live" in _pg_tables(dsn)
    await _check_upgraded(store, live=False)
    await store.close()
