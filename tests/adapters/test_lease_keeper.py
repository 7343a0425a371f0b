"""Leases are renewed from a thread: a step that blocks the event loop keeps its run."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from durable import (
    DurableRunLeaseLostError,
    DurableRunManifest,
    DurableStoreError,
    Lease,
    RunRecord,
    TaskSpec,
)
from durable_agents.adapters.local import InMemoryStore, LeaseKeeper, SqliteStore
from durable_agents.adapters.local._lease_keeper import renewal_timeout
from tests.conformance.conftest import open_store
from tests.support.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.adapters.lease_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("kind", ["file", "sqlite", "postgres"])
def test_a_step_blocking_the_event_loop_runs_once_while_another_process_waits(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    location = {"file": str(tmp_path / "runs"), "sqlite": str(tmp_path / "durable.db")}.get(kind)
    if kind == "postgres":
        location = fresh_database(request.getfixturevalue("postgres_dsn"), "lease_keeper")
    assert location is not None
    marker = str(tmp_path / "marks.txt")
    args = (kind, location, "blocked-run", marker)
    children = [_child("recover", *args)]
    try:
        recoverer = children[0]
        assert recoverer.stdout is not None
        assert recoverer.stdout.readline().strip() == "ready"
        # A 1 s lease; the step blocks the loop for 2.5 s while the other process scans.
        children.append(runner := _child("run", *args))
        ran = runner.communicate(timeout=60)[0].strip()
        recovered = recoverer.communicate(timeout=60)[0].strip()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    assert Path(marker).read_text().split() == ["start", "end"]  # the step ran once
    assert (ran, runner.returncode) == ("done", 0)
    assert recovered == "not resumed"
    run = asyncio.run(_load_run(kind, location, "blocked-run"))
    assert run is not None
    assert (run.status, run.lease_generation) == ("completed", 1)  # never taken over


async def _load_run(kind: str, location: str, run_id: str) -> RunRecord | None:
    store = await open_store(kind, location)
    try:
        return await store.load_run(run_id)
    finally:
        await store.close()


async def test_the_keeper_renews_while_the_event_loop_is_blocked() -> None:
    store = InMemoryStore()
    resumed = await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(seconds=0.3)
    )
    assert resumed.lease is not None
    kept = store.lease_keeper.keep(resumed.lease, lease_for=timedelta(seconds=0.3), on_lost=print)

    time.sleep(1.0)  # noqa: ASYNC251  (blocks this event loop far past the lease)

    run = await store.load_run("r")
    assert run is not None
    assert run.lease_expires_at is not None
    assert run.lease_expires_at > resumed.lease.expires_at + timedelta(seconds=0.5)
    assert kept.lease.expires_at == run.lease_expires_at
    kept.release()
    await store.close()


async def test_a_fenced_renewal_reaches_the_event_loop() -> None:
    store = InMemoryStore()
    first = await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="a", lease_for=timedelta(seconds=0.1)
    )
    assert first.lease is not None
    await asyncio.sleep(0.15)
    await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="b", lease_for=timedelta(seconds=30)
    )
    lost: asyncio.Future[DurableRunLeaseLostError] = asyncio.get_running_loop().create_future()

    store.lease_keeper.keep(first.lease, lease_for=timedelta(seconds=0.1), on_lost=lost.set_result)

    error = await asyncio.wait_for(lost, 5)
    assert "'a' lost the lease" in str(error)
    run = await store.load_run("r")
    assert run is not None
    assert run.lease_holder == "b"
    await store.close()


async def test_a_transient_failure_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def renew(lease: Lease, *, lease_for: timedelta) -> Lease:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OSError("the disk is busy")
        return lease

    keeper = LeaseKeeper(renew)
    lease = Lease(run_id="r", holder="w", generation=1, expires_at=LONG_AGO)
    keeper.keep(lease, lease_for=timedelta(seconds=0.06), on_lost=print)
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    keeper.close()

    assert "renewing the lease of run 'r' failed; retrying" in caplog.text
    assert not [t for t in threading.enumerate() if t.name == "durable-leases"]


async def test_closing_a_store_stops_its_keeper(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    resumed = await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(seconds=3)
    )
    assert resumed.lease is not None
    store.lease_keeper.keep(resumed.lease, lease_for=timedelta(seconds=0.03), on_lost=print)
    while store._renewals is None:
        await asyncio.sleep(0.01)
    assert [t for t in threading.enumerate() if t.name == "durable-sqlite-leases"]

    await store.close()

    assert not [t for t in threading.enumerate() if t.name == "durable-sqlite-leases"]
    assert store._renewals is None


@contextmanager
def _held_by_a_stuck_process(kind: str, location: str, run_id: str) -> Iterator[None]:
    """Hold what a renewal of ``run_id`` needs, as a process paused mid-write would."""
    if kind == "file":
        fd = os.open(Path(location) / f"r_{run_id}" / ".lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)
    elif kind == "sqlite":
        db = sqlite3.connect(location, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
    else:
        with psycopg.connect(location) as pg:
            pg.execute("SELECT 1 FROM durable_runs WHERE run_id = %s FOR UPDATE", (run_id,))
            try:
                yield
            finally:
                pg.rollback()


@pytest.mark.parametrize("kind", ["file", "sqlite", "postgres"])
async def test_a_renewal_stuck_behind_another_process_gives_up_within_a_tenth_of_the_lease(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    location = {"file": str(tmp_path / "runs"), "sqlite": str(tmp_path / "durable.db")}.get(kind)
    if kind == "postgres":
        location = fresh_database(request.getfixturevalue("postgres_dsn"), "stuck_renewal")
    assert location is not None
    store = await open_store(kind, location)
    resumed = await store.start_or_resume(
        run_id="r", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(seconds=30)
    )
    assert resumed.lease is not None
    one_second = timedelta(seconds=1)

    # The pool is left last: the stuck process lets go first, so a hung renewal ends.
    with ThreadPoolExecutor(1) as pool, _held_by_a_stuck_process(kind, location, "r"):
        started = time.monotonic()
        renewal = pool.submit(store.renew_lease_blocking, resumed.lease, lease_for=one_second)
        with pytest.raises((DurableStoreError, sqlite3.OperationalError)):
            renewal.result(timeout=3)
        assert time.monotonic() - started < 1  # a tenth of the lease, and slack for a busy machine

    renewed = store.renew_lease_blocking(resumed.lease, lease_for=one_second)  # free again
    run = await store.load_run("r")
    assert run is not None
    assert run.lease_expires_at == renewed.expires_at
    await store.close()


async def test_closing_the_keeper_waits_for_a_stuck_renewal_only_so_long() -> None:
    entered, release = threading.Event(), threading.Event()

    def renew(lease: Lease, *, lease_for: timedelta) -> Lease:
        entered.set()
        release.wait()
        return lease

    keeper = LeaseKeeper(renew, name="stuck-leases")
    lease = Lease(run_id="r", holder="w", generation=1, expires_at=LONG_AGO)
    keeper.keep(lease, lease_for=timedelta(seconds=0.03), on_lost=print)
    try:
        while not entered.is_set():
            await asyncio.sleep(0.01)
        started = time.monotonic()
        keeper.close(timeout=0.2)
        assert time.monotonic() - started < 1
    finally:
        release.set()
    while [t for t in threading.enumerate() if t.name == "stuck-leases"]:
        await asyncio.sleep(0.01)  # the renewal returned, and the thread stopped after it


def test_a_renewal_waits_a_tenth_of_the_lease_and_never_long() -> None:
    assert renewal_timeout(timedelta(seconds=30)) == 3.0
    assert renewal_timeout(timedelta(hours=1)) == 5.0
