"""What each store guarantees beyond the shared conformance scenarios."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from durable import (
    MAX_NAME_LENGTH,
    DurableRunManifest,
    DurableStoreError,
    ErrorCode,
    Lease,
    LiveEvent,
)
from durable_agents.adapters.local import FileStore, PostgresStore, SqliteStore, Synchronous
from tests.support.leases import MANIFEST, hold


async def _steps(store: Any, lease: Lease, count: int) -> None:
    for i in range(count):
        await store.begin_step(lease, step_index=i, intent=f"s{i}", kind="logic", input_hash="")
        await store.complete_step(lease, step_index=i, result={"i": i})


# FileStore


async def test_file_store_cuts_off_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    lease = await hold(store)
    await _steps(store, lease, 2)
    await store.close()
    log = next(tmp_path.glob("r_*")) / "steps.jsonl"
    intact = log.read_bytes()
    log.write_bytes(intact + b'{"run_id":"r","step_ind')  # a write cut short by SIGKILL

    reopened = FileStore(tmp_path)
    steps = await reopened.load_steps("r")

    assert [s.result for s in steps] == [{"i": 0}, {"i": 1}]
    assert log.read_bytes() == intact
    lease = await hold(reopened)
    await _steps(reopened, lease, 3)  # appends after the cut land on a clean line
    assert len(await FileStore(tmp_path).load_steps("r")) == 3


async def test_file_store_reports_a_corrupt_record(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    lease = await hold(store)
    await _steps(store, lease, 1)
    log = next(tmp_path.glob("r_*")) / "steps.jsonl"
    log.write_bytes(log.read_bytes() + b'{"not": "a step"}\n')

    with pytest.raises(DurableStoreError) as caught:
        await FileStore(tmp_path).load_steps("r")

    assert caught.value.code == ErrorCode.STORE_ERROR
    assert "steps.jsonl" in str(caught.value)
    assert "restore the file" in str(caught.value)


async def test_file_store_detects_a_log_rewritten_under_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    lease = await hold(store)
    await _steps(store, lease, 2)
    log = next(tmp_path.glob("r_*")) / "steps.jsonl"
    log.write_bytes(b"")

    with pytest.raises(DurableStoreError, match="shrank"):
        await store.load_steps("r")


async def test_file_store_keeps_odd_run_ids_inside_its_root(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    for run_id in ("..", "a/b", "../escape", "ü 😀"):
        await hold(store, run_id=run_id)
    runs = [p.parent.parent for p in (tmp_path / "root").rglob("run.json")]
    assert runs == [tmp_path / "root"] * 4
    assert not (tmp_path / "escape").exists()


async def test_file_store_hashes_only_the_ids_too_long_to_quote(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    short, long = "order ü-1", "😀" * MAX_NAME_LENGTH
    for run_id in (short, long):
        await hold(store, run_id=run_id)

    # A short id keeps the directory every earlier version made, so those stay readable.
    assert (tmp_path / ("r_" + quote(short, safe="")) / "run.json").exists()
    hashed = tmp_path / ("r_=" + hashlib.sha256(long.encode()).hexdigest())
    assert json.loads((hashed / "run.json").read_bytes())["run_id"] == long
    reopened = FileStore(tmp_path)
    assert sorted(r.run_id for r in await reopened.list_runs()) == sorted([short, long])


async def test_file_store_reads_a_directory_written_by_an_earlier_version(
    tmp_path: Path,
) -> None:
    old = tmp_path / "r_order%2F1"  # the quoted name FileStore has always used
    old.mkdir()
    record = {
        "run_id": "order/1",
        "agent": "a",
        "status": "completed",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "manifest_hash": "",
        "project_id": "p",
        "result": 7,
    }
    (old / "run.json").write_text(json.dumps(record))

    store = FileStore(tmp_path)
    run = await store.load_run("order/1")

    assert run is not None
    assert (run.status, run.result) == ("completed", 7)
    assert (run.parent_run_id, run.cancel_requested) == (None, None)
    assert await store.list_children("order/1") == []
    assert await store.request_cancel("order/1", "late") == ("already_ended", run)


async def test_a_file_stores_live_stream_refuses_a_position_it_never_gave(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "runs")
    (tmp_path / "runs" / "r_run").mkdir(parents=True)
    await store.append_live("run", [LiveEvent(kind="token", step=0, offset=0, text="hello")])

    with pytest.raises(ValueError, match="after=3 is not a position in the live stream"):
        await store.read_live("run", after=3)
    await store.close()


# SqliteStore


async def test_sqlite_store_uses_wal_and_the_chosen_synchronous_level(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", synchronous="NORMAL")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    await store.close()
    with pytest.raises(ValueError, match="synchronous must be"):
        SqliteStore(tmp_path / "db", synchronous="SOMETIMES")  # type: ignore[arg-type]


async def test_sqlite_resume_loads_steps_in_one_query(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    lease = await hold(store)
    await _steps(store, lease, 50)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    resumed = await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(30)
    )

    assert len(resumed.steps) == 50
    step_reads = [s for s in statements if "FROM durable_steps" in s and "COUNT" not in s]
    assert len(step_reads) == 1
    await store.close()


@pytest.mark.parametrize("synchronous", ["OFF", "NORMAL", "FULL", "EXTRA"])
async def test_sqlite_skips_the_disk_wait_only_for_a_step_begin_under_full(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    store = SqliteStore(tmp_path / "db", synchronous=synchronous)
    lease = await hold(store)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    await store.begin_step(lease, step_index=0, intent="s", kind="logic", input_hash="")
    begin = [s for s in statements if s.startswith("PRAGMA")]
    statements.clear()
    await store.complete_step(lease, step_index=0, result=None)
    await store.begin_step(
        lease, step_index=1, intent="sleep", kind="timer", input_hash="",
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    store._db.set_trace_callback(None)

    # Under FULL and EXTRA every commit waits for the disk, except a step's begin:
    # the outcome's commit syncs it. A wait's begin keeps its deadline durable.
    # Under NORMAL and OFF no commit waits, so there is nothing to skip.
    relaxed = ["PRAGMA synchronous = NORMAL", f"PRAGMA synchronous = {synchronous}"]
    assert begin == (relaxed if synchronous in ("FULL", "EXTRA") else [])
    assert [s for s in statements if s.startswith("PRAGMA")] == []
    await store.close()


async def test_sqlite_store_refuses_a_path_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(DurableStoreError, match="directory exists and is writable"):
        SqliteStore(tmp_path / "missing" / "db")


async def test_sqlite_schema_is_versioned(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    assert store._db.execute("SELECT version FROM durable_schema").fetchall() == [(5,)]
    await store.close()
    SqliteStore(tmp_path / "db")  # reopening keeps a single version row
    reopened = SqliteStore(tmp_path / "db")
    assert reopened._db.execute("SELECT version FROM durable_schema").fetchall() == [(5,)]
    await reopened.close()


async def test_sqlite_finds_expired_leases_by_index_also_in_an_older_database(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db")
    store._db.execute("DROP INDEX durable_runs_expiry")  # as created before the index
    await store.close()

    reopened = SqliteStore(tmp_path / "db")
    statements: list[str] = []
    reopened._db.set_trace_callback(statements.append)
    await reopened.list_expired_runs(now=datetime.now(UTC))
    reopened._db.set_trace_callback(None)

    plan = reopened._db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}").fetchall()
    assert "SEARCH durable_runs USING INDEX durable_runs_expiry" in str(plan)
    assert reopened._db.execute("SELECT version FROM durable_schema").fetchall() == [(5,)]
    await reopened.close()


# PostgresStore


async def test_postgres_store_refuses_a_newer_schema(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS schema_check")
        admin.execute("CREATE DATABASE schema_check")
    dsn = postgres_dsn.rsplit("/", 1)[0] + "/schema_check"
    store = await PostgresStore.connect(dsn)
    await store.close()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("UPDATE durable_schema SET version = 7")

    with pytest.raises(DurableStoreError, match=r"schema version 7.*upgrade the library"):
        await PostgresStore.connect(dsn)


async def test_postgres_store_explains_a_failed_connection() -> None:
    with pytest.raises(DurableStoreError, match="server is running"):
        await PostgresStore.connect("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


async def test_postgres_store_refuses_to_be_built_without_its_dsn(postgres_dsn: str) -> None:
    # Without a connection string it could never renew a lease, and would lose each one.
    connection = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    try:
        with pytest.raises(TypeError, match="dsn"):
            PostgresStore(connection)  # type: ignore[call-arg]
        with pytest.raises(ValueError, match=r"open it with await PostgresStore\.connect\(dsn\)"):
            PostgresStore(connection, dsn="")
    finally:
        await connection.close()


def test_records_round_trip_through_json() -> None:
    record = json.loads(MANIFEST.model_dump_json())
    assert DurableRunManifest.model_validate(record) == MANIFEST
