"""Purging ended runs from every local store; active runs and their families stay whole."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import (
    CheckpointInfo,
    DurableRunManifest,
    Lease,
    LiveEvent,
    StepRecord,
    TaskSpec,
)
from durable_agents.adapters.blobs import BlobStore
from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    LocalWorker,
    PurgeCounts,
    SqliteStore,
    parse_duration,
    purge,
)
from durable_agents.adapters.local._retention import blob_refs, purge_summary
from durable_agents.adapters.local._store import EndStatus

MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)
HOUR = timedelta(hours=1)


async def _run(
    store: DurableRunStore,
    run_id: str,
    *,
    parent: str | None = None,
    end: EndStatus | None = "completed",
    result: Any = None,
) -> Lease:
    """A run with two steps, an event, a live entry and a checkpoint; ended as ``end``."""
    manifest = MANIFEST.model_copy(update={"parent_run_id": parent})
    resumed = await store.start_or_resume(
        run_id=run_id, agent="a", manifest=manifest, worker_id="w", lease_for=timedelta(30)
    )
    lease = resumed.lease
    assert lease is not None
    for index in range(2):
        await store.begin_step(
            lease, step_index=index, intent=f"s{index}", kind="logic", input_hash=""
        )
        await store.complete_step(lease, step_index=index, result=result or {"i": index})
    await store.emit_event(run_id, "approval", {"ok": True})
    await store.append_live(run_id, [LiveEvent(kind="step_started", step=0, intent="s0")])
    info = CheckpointInfo(
        name="context", step=1, size_bytes=2, digest="0" * 64, written_at=datetime.now(UTC)
    )
    await store.write_checkpoint(lease, info, "{}")
    if end is not None:
        await store.end_run(lease, status=end)
        await asyncio.sleep(0.005)  # the next run ends in a later millisecond
    return lease


async def _gone(store: DurableRunStore, run_id: str) -> bool:
    return (
        await store.load_run(run_id) is None
        and await store.load_steps(run_id) == []
        and await store.load_event(run_id, "approval") is None
        and await store.read_live(run_id) == []
        and await store.list_checkpoints(run_id) == []
        and await store.read_checkpoint(run_id, "context") is None
    )


async def _untouched(store: DurableRunStore, run_id: str) -> bool:
    run = await store.load_run(run_id)
    return (
        run is not None
        and run.step_count == 2
        and await store.load_event(run_id, "approval") is not None
        and len(await store.read_live(run_id)) == 1
        and [c.name for c in await store.list_checkpoints(run_id)] == ["context"]
    )


async def test_a_purge_deletes_ended_families_and_leaves_active_runs_untouched(
    store: DurableRunStore,
) -> None:
    await _run(store, "old")
    await _run(store, "old-failed", end="failed")
    running = await _run(store, "running", end=None)  # began before the cut-off
    waiting = await _run(store, "waiting-parent/child-0", parent="waiting-parent", end=None)
    await _run(store, "waiting-parent")  # ended, but its child is still active
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.005)
    await _run(store, "old/child-0", parent="old")  # ended after the cut-off: goes with "old"
    await _run(store, "recent")

    report = await purge(store, older_than=HOUR, now=cutoff + HOUR)

    assert report.runs == ["old", "old/child-0", "old-failed"]
    assert report.counts == PurgeCounts(runs=3, steps=6, events=3, live=3, checkpoints=3)
    assert report.kept == [("waiting-parent", "waiting-parent/child-0")]
    for run_id in report.runs:
        assert await _gone(store, run_id), run_id
    for run_id in ("running", "waiting-parent", "waiting-parent/child-0", "recent"):
        assert await _untouched(store, run_id), run_id
    # The active runs go on as if nothing happened.
    for lease in (running, waiting):
        await store.begin_step(lease, step_index=2, intent="s2", kind="logic", input_hash="")
        await store.complete_step(lease, step_index=2, result=None)
        assert (await store.end_run(lease, status="completed")).step_count == 3
    # Its child ended now: the family that waited for it goes with the next purge.
    again = await purge(store, older_than=HOUR, now=cutoff + HOUR)
    assert again.runs == ["waiting-parent", "waiting-parent/child-0"]
    last = await purge(store, older_than=HOUR, now=cutoff + HOUR)
    assert (last.runs, last.kept) == ([], [])
    assert purge_summary(last)[0].startswith("no run that ended before")


async def test_a_purge_can_keep_to_one_ending_and_can_be_only_a_rehearsal(
    store: DurableRunStore,
) -> None:
    await _run(store, "done")
    await _run(store, "broken", end="failed")
    await _run(store, "stopped", end="cancelled")
    later = datetime.now(UTC) + 2 * HOUR

    rehearsal = await purge(store, older_than=HOUR, now=later, dry_run=True)
    assert rehearsal.runs == ["done", "broken", "stopped"]
    assert rehearsal.counts == PurgeCounts()
    assert purge_summary(rehearsal)[0].startswith("would purge 3 run(s)")
    for run_id in rehearsal.runs:
        assert await _untouched(store, run_id)

    report = await purge(store, older_than=HOUR, now=later, statuses={"failed", "cancelled"})

    assert report.runs == ["broken", "stopped"]
    assert await _untouched(store, "done")
    summary = purge_summary(report)
    assert summary[0].endswith("4 steps, 2 events, 2 live entries, 2 checkpoints, 0 blobs")
    assert summary[1:] == ["  broken", "  stopped"]


async def test_a_purge_refuses_to_delete_active_states(store: DurableRunStore) -> None:
    for statuses in ({"running"}, {"completed", "waiting"}):
        with pytest.raises(ValueError, match="a run still active is never purged"):
            await purge(store, older_than=HOUR, statuses=statuses)
    with pytest.raises(ValueError, match="older_than must be longer than 0"):
        await purge(store, older_than=timedelta(0))


async def test_deleting_runs_skips_every_run_still_active(store: DurableRunStore) -> None:
    await _run(store, "active", end=None)
    await _run(store, "ended")

    counts = await store.delete_runs(["active", "ended", "never-there"])

    assert counts == PurgeCounts(runs=1, steps=2, events=1, live=1, checkpoints=1)
    assert await _untouched(store, "active")
    assert await _gone(store, "ended")


async def test_a_child_whose_parent_is_gone_is_purged_on_its_own(store: DurableRunStore) -> None:
    await _run(store, "parent")
    await _run(store, "parent/child-0", parent="parent")
    await store.delete_runs(["parent"])  # as an older purge that stopped half-way might have

    report = await purge(store, older_than=HOUR, now=datetime.now(UTC) + 2 * HOUR)

    assert report.runs == ["parent/child-0"]
    assert await _gone(store, "parent/child-0")


async def test_a_purge_removes_the_blobs_its_runs_refer_to(
    store: DurableRunStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    purged_ref, kept_ref = blobs.put(b"old transcript"), blobs.put(b"recent transcript")
    await _run(store, "old", result={"text": "hi", "transcript_ref": purged_ref})
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.005)
    await _run(store, "recent", result={"text": "hi", "transcript_ref": kept_ref})

    report = await purge(store, older_than=HOUR, now=cutoff + HOUR, blobs=blobs)

    assert (report.runs, report.blobs) == (["old"], 1)
    assert blobs.get(kept_ref) == b"recent transcript"
    assert not blobs.delete(purged_ref)  # already gone


async def test_a_purge_goes_through_more_runs_than_one_page() -> None:
    store = InMemoryStore()
    for number in range(230):
        await _run(store, f"run-{number:03}")

    report = await purge(store, older_than=HOUR, now=datetime.now(UTC) + 2 * HOUR)

    assert len(report.runs) == 230
    assert await store.list_runs() == []


async def test_sqlite_finds_ended_runs_by_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    await store.list_purgeable_runs(ended_before=datetime.now(UTC), statuses={"failed"})
    store._db.set_trace_callback(None)

    plan = store._db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}").fetchall()
    assert "durable_runs USING INDEX durable_runs_ended" in str(plan)
    await store.close()


async def test_a_file_store_removes_what_an_interrupted_purge_left(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    left = tmp_path / ".purged-0123"
    (left / "steps").mkdir(parents=True)

    await purge(store, older_than=HOUR)

    assert not left.exists()
    await store.close()


def test_blob_references_are_found_under_keys_ending_in_ref() -> None:
    ref = hashlib.sha256(b"x").hexdigest()
    step = StepRecord(
        run_id="r", step_index=0, intent="turn 0", kind="llm", input_hash="",
        status="completed", attempts=1,
        result={"transcript_ref": ref, "nested": [{"other_ref": ref.upper()}], "ref": ref},
    )  # fmt: skip

    assert blob_refs([step]) == {ref}  # not upper case, not a key named only "ref"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1.5H ", timedelta(hours=1.5)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, what="--older-than") == expected


@pytest.mark.parametrize("text", ["", "30", "d", "7 days", "1d-2h", "0s", "-1d"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="--older-than must be"):
        parse_duration(text, what="--older-than")


async def test_a_local_worker_purges_what_its_retention_lets_go(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    await _run(store, "ended")
    await _run(store, "active", end=None)
    await asyncio.sleep(0.05)
    worker = LocalWorker(
        store,
        scan_interval=timedelta(milliseconds=20),
        retention=timedelta(milliseconds=20),
        retention_every=timedelta(milliseconds=20),
    )
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            if await store.load_run("ended") is None:
                break
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await running

    assert await _gone(store, "ended")
    assert await _untouched(store, "active")
    await store.close()


async def test_a_failed_sweep_is_logged_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from durable_agents.adapters.local import RetentionSweep

    store = SqliteStore(tmp_path / "db")
    await store.close()  # every statement now fails
    sweep = RetentionSweep(timedelta(days=1), every=timedelta(hours=1))

    assert await sweep.maybe_sweep(store) is None
    assert "the retention sweep failed" in caplog.text
    assert await sweep.maybe_sweep(store) is None  # not due again for an hour: not tried
    assert caplog.text.count("the retention sweep failed") == 1


def test_the_retention_setting_is_a_duration_and_off_by_default() -> None:
    from durable_agents.adapters.settings import WorkerSettings

    assert WorkerSettings.from_env({}).retention is None
    assert WorkerSettings.from_env({"DURABLE_RETENTION": "30d"}).retention == timedelta(days=30)
    with pytest.raises(ValueError, match="DURABLE_RETENTION must be a duration such as 30d"):
        WorkerSettings.from_env({"DURABLE_RETENTION": "30"})
    with pytest.raises(ValueError, match="DURABLE_RETENTION must be a positive duration"):
        WorkerSettings(retention=timedelta(0))
