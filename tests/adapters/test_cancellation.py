"""Child runs and cancellation in every store: parents, children, requests, cascades, fences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import (
    DurableRunLeaseLostError,
    DurableRunManifest,
    DurableRunNotFoundError,
    DurableStoreError,
    ErrorCode,
    Lease,
    RunRecord,
    StepError,
    TaskSpec,
)
from durable._failures import cancelled_error
from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    SqliteStore,
)

MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)
LATER = timedelta(minutes=5)
"""Past every lease these tests take: ``request_cancel(now=...)`` then finds no live lease."""


async def _start(
    store: DurableRunStore,
    run_id: str,
    *,
    parent: str | None = None,
    worker: str = "w",
    lease_for: timedelta = timedelta(seconds=30),
) -> Lease:
    resumed = await store.start_or_resume(
        run_id=run_id,
        agent="a",
        manifest=MANIFEST.model_copy(update={"parent_run_id": parent}),
        worker_id=worker,
        lease_for=lease_for,
    )
    assert resumed.lease is not None
    return resumed.lease


async def _run(store: DurableRunStore, run_id: str) -> RunRecord:
    run = await store.load_run(run_id)
    assert run is not None
    return run


def _later() -> datetime:
    return datetime.now(UTC) + LATER


# Child runs


async def test_a_child_run_names_its_parent_in_every_record(
    store: DurableRunStore, run_id: str
) -> None:
    await _start(store, run_id)
    resumed = await store.start_or_resume(
        run_id=f"{run_id}/c-1",
        agent="a",
        manifest=MANIFEST.model_copy(update={"parent_run_id": run_id, "depth": 1}),
        worker_id="w",
        lease_for=timedelta(seconds=30),
    )

    assert resumed.run.parent_run_id == run_id
    assert (await _run(store, f"{run_id}/c-1")).parent_run_id == run_id
    assert (await _run(store, run_id)).parent_run_id is None
    listed = {r.run_id: r for r in await store.list_runs(limit=10_000)}
    assert listed[f"{run_id}/c-1"].parent_run_id == run_id
    assert listed[f"{run_id}/c-1"].cancel_requested is None
    manifest = await store.load_manifest(f"{run_id}/c-1")
    assert manifest is not None
    assert (manifest.parent_run_id, manifest.depth) == (run_id, 1)


async def test_children_are_listed_in_creation_order(store: DurableRunStore, run_id: str) -> None:
    await _start(store, run_id)
    await _start(store, f"{run_id}-other")
    # Names that sort against the order they were created in.
    names = [f"{run_id}/c-3", f"{run_id}/c-10", f"{run_id}/b-2"]
    for name in names:
        await _start(store, name, parent=run_id)
        await _start(store, f"{name}/grandchild", parent=name)
        # SQL stores keep times in milliseconds; runs created apart sort by time alone.
        await asyncio.sleep(0.002)
    await _start(store, f"{run_id}-other/c-1", parent=f"{run_id}-other")

    children = await store.list_children(run_id)

    assert [c.run_id for c in children] == names
    assert all(c.parent_run_id == run_id for c in children)
    assert [c.run_id for c in await store.list_children(f"{run_id}/c-10")] == [
        f"{run_id}/c-10/grandchild"
    ]
    assert await store.list_children(f"{run_id}/b-2/grandchild") == []
    assert await store.list_children("no such run") == []


async def test_expired_child_runs_are_left_to_their_parents_worker(
    store: DurableRunStore, run_id: str
) -> None:
    short = timedelta(milliseconds=1)
    await _start(store, run_id, lease_for=short)
    await _start(store, f"{run_id}/c-1", parent=run_id, lease_for=short)
    await _start(store, f"{run_id}/c-1/g-1", parent=f"{run_id}/c-1", lease_for=short)

    expired = await store.list_expired_runs(now=_later(), limit=10_000)
    hosted = await store.list_expired_runs(now=_later(), limit=10_000, agents=["a"])

    for listed in (expired, hosted):
        ours = [r.run_id for r in listed if r.run_id.startswith(run_id)]
        assert ours == [run_id]


def _said(run_id: str, reason: str) -> str:
    """The message a run cancelled for ``reason`` ends with."""
    return cancelled_error(run_id, reason).message


# Ending a run cancelled


async def test_a_run_ended_cancelled_is_never_resumed(store: DurableRunStore, run_id: str) -> None:
    lease = await _start(store, run_id)
    error = StepError(
        message=f"run {run_id!r} was cancelled: stop",
        type="DurableRunCancelledError",
        code="cancelled",
    )

    ended = await store.end_run(lease, status="cancelled", error=error)

    assert (ended.status, ended.error, ended.lease_holder) == ("cancelled", error, None)
    assert ended.completed_at is not None
    resumed = await store.start_or_resume(
        run_id=run_id, agent="a", manifest=MANIFEST, worker_id="w2", lease_for=timedelta(30)
    )
    assert resumed.lease is None
    assert resumed.run.status == "cancelled"
    expired = await store.list_expired_runs(now=_later(), limit=10_000)
    assert run_id not in [r.run_id for r in expired]
    assert run_id in [r.run_id for r in await store.list_runs(status="cancelled", limit=10_000)]


# request_cancel


async def test_cancelling_an_unknown_run_says_so(store: DurableRunStore) -> None:
    with pytest.raises(DurableRunNotFoundError) as caught:
        await store.request_cancel("never-started", "stop")
    assert caught.value.code == ErrorCode.RUN_NOT_FOUND
    assert "'never-started'" in str(caught.value)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_cancelling_an_ended_run_changes_nothing(
    store: DurableRunStore, run_id: str, status: Any
) -> None:
    lease = await _start(store, run_id)
    child = await _start(store, f"{run_id}/c-1", parent=run_id)
    await store.end_run(child, status="completed", result=1)
    await store.end_run(lease, status=status, result=7)
    before = await _run(store, run_id)

    outcome, record = await store.request_cancel(run_id, "too late", now=_later())

    assert (outcome, record) == ("already_ended", before)
    assert await _run(store, run_id) == before
    assert (await _run(store, f"{run_id}/c-1")).status == "completed"


async def test_a_held_run_is_asked_to_cancel_and_keeps_the_first_reason(
    store: DurableRunStore, run_id: str
) -> None:
    lease = await _start(store, run_id)

    first = await store.request_cancel(run_id, "the user asked")
    second = await store.request_cancel(run_id, "asked again")

    assert first[0] == second[0] == "requested"
    assert first[1].cancel_requested == second[1].cancel_requested == "the user asked"
    run = await _run(store, run_id)
    # Still the holder's to end: it reads the request and cancels the run itself.
    assert (run.status, run.cancel_requested, run.lease_holder) == (
        "running",
        "the user asked",
        "w",
    )
    assert run.lease_generation == lease.generation
    await store.begin_step(lease, step_index=0, intent="s", kind="logic", input_hash="")
    await store.complete_step(lease, step_index=0, result=1)
    ended = await store.end_run(lease, status="cancelled")
    assert ended.status == "cancelled"


async def test_a_run_no_worker_holds_ends_cancelled_at_once(
    store: DurableRunStore, run_id: str
) -> None:
    lease = await _start(store, run_id)
    await store.begin_step(lease, step_index=0, intent="s", kind="logic", input_hash="")
    now = _later()  # the holder died: its lease lapsed long ago

    outcome, record = await store.request_cancel(run_id, "the user asked", now=now)

    assert outcome == "cancelled"
    assert record == await _run(store, run_id)
    assert record.status == "cancelled"
    assert record.error == StepError(
        message=_said(run_id, "the user asked"),
        type="DurableRunCancelledError",
        code="cancelled",
    )
    assert record.completed_at is not None
    assert abs((record.completed_at - now).total_seconds()) < 0.01
    assert (record.lease_holder, record.lease_expires_at) == (None, None)
    assert record.lease_generation == lease.generation + 1
    assert record.step_count == 1
    resumed = await store.start_or_resume(
        run_id=run_id, agent="a", manifest=MANIFEST, worker_id="w2", lease_for=timedelta(30)
    )
    assert resumed.lease is None


async def test_a_late_request_ends_a_run_whose_holder_died_with_the_first_reason(
    store: DurableRunStore, run_id: str
) -> None:
    await _start(store, run_id)
    await store.request_cancel(run_id, "the first reason")

    outcome, record = await store.request_cancel(run_id, "the second reason", now=_later())

    assert outcome == "cancelled"
    assert record.error is not None
    assert record.error.message == _said(run_id, "the first reason")
    assert record.cancel_requested == "the first reason"


async def test_a_holder_that_comes_back_after_its_run_was_cancelled_is_fenced(
    store: DurableRunStore, run_id: str
) -> None:
    stale = await _start(store, run_id)
    await store.begin_step(stale, step_index=0, intent="s", kind="logic", input_hash="")
    await store.request_cancel(run_id, "the user asked", now=_later())
    cancelled = await _run(store, run_id)

    writes = {
        "renew": store.renew_lease(stale, lease_for=timedelta(seconds=30)),
        "begin": store.begin_step(stale, step_index=1, intent="x", kind="logic", input_hash=""),
        "complete": store.complete_step(stale, step_index=0, result=1),
        "fail": store.fail_step(
            stale, step_index=0, error=StepError(message="m", type="E"), final=True
        ),
        "emit": store.emit_event(run_id, "k", {"from": "stale"}, lease=stale),
        "end": store.end_run(stale, status="completed", result=1),
    }
    for name, write in writes.items():
        with pytest.raises(DurableRunLeaseLostError) as caught:
            await write
        assert caught.value.code == ErrorCode.LEASE_LOST, name
        if name != "renew":  # a renewal learns only that the lease is gone
            assert "the run was cancelled (the user asked)" in str(caught.value), name
        assert "stop this attempt" in str(caught.value), name

    assert await _run(store, run_id) == cancelled
    assert [s.status for s in await store.load_steps(run_id)] == ["running"]
    assert await store.load_event(run_id, "k") is None


# The cascade to descendants


async def test_cancelling_a_held_run_reaches_every_descendant(
    store: DurableRunStore, run_id: str
) -> None:
    short = timedelta(milliseconds=1)
    await _start(store, run_id)
    await _start(store, f"{run_id}/held", parent=run_id)
    await _start(store, f"{run_id}/held/orphan", parent=f"{run_id}/held", lease_for=short)
    await _start(store, f"{run_id}/lapsed", parent=run_id, lease_for=short)
    await _start(store, f"{run_id}/lapsed/held", parent=f"{run_id}/lapsed")
    done = await _start(store, f"{run_id}/done", parent=run_id)
    await store.end_run(done, status="completed", result=1)
    await _start(store, f"{run_id}-unrelated")
    await asyncio.sleep(0.01)  # the short leases lapse

    outcome, record = await store.request_cancel(run_id, "the user asked")

    assert (outcome, record.cancel_requested) == ("requested", "the user asked")
    by_parent = f"its parent run {run_id!r} was cancelled: the user asked"
    held = await _run(store, f"{run_id}/held")
    assert (held.status, held.cancel_requested) == ("running", by_parent)
    orphan = await _run(store, f"{run_id}/held/orphan")
    assert orphan.status == "cancelled"
    assert orphan.error is not None
    assert orphan.error.message == _said(
        f"{run_id}/held/orphan", f"its parent run {run_id + '/held'!r} was cancelled: {by_parent}"
    )
    lapsed = await _run(store, f"{run_id}/lapsed")
    assert lapsed.status == "cancelled"
    assert lapsed.error is not None
    assert lapsed.error.message == _said(f"{run_id}/lapsed", by_parent)
    assert lapsed.error.code == "cancelled"
    below = await _run(store, f"{run_id}/lapsed/held")
    assert (below.status, below.cancel_requested) == (
        "running",
        f"its parent run {run_id + '/lapsed'!r} was cancelled: {by_parent}",
    )
    assert (await _run(store, f"{run_id}/done")).status == "completed"
    unrelated = await _run(store, f"{run_id}-unrelated")
    assert (unrelated.status, unrelated.cancel_requested) == ("running", None)


async def test_cancelling_a_run_no_worker_holds_ends_its_whole_tree(
    store: DurableRunStore, run_id: str
) -> None:
    await _start(store, run_id)
    await _start(store, f"{run_id}/c-1", parent=run_id)
    await _start(store, f"{run_id}/c-1/g-1", parent=f"{run_id}/c-1")
    await _start(store, f"{run_id}/c-2", parent=run_id)

    outcome, record = await store.request_cancel(run_id, "shutting down", now=_later())

    assert (outcome, record.status) == ("cancelled", "cancelled")
    tree = [f"{run_id}/c-1", f"{run_id}/c-1/g-1", f"{run_id}/c-2"]
    assert [(await _run(store, r)).status for r in tree] == ["cancelled"] * 3
    expired = await store.list_expired_runs(now=_later() + LATER, limit=10_000)
    assert [r.run_id for r in expired if r.run_id.startswith(run_id)] == []


async def test_cancelling_a_child_leaves_its_parent_and_siblings_running(
    store: DurableRunStore, run_id: str
) -> None:
    await _start(store, run_id)
    await _start(store, f"{run_id}/c-1", parent=run_id)
    await _start(store, f"{run_id}/c-2", parent=run_id)

    outcome, _ = await store.request_cancel(f"{run_id}/c-1", "not needed", now=_later())

    assert outcome == "cancelled"
    assert (await _run(store, run_id)).status == "running"
    assert (await _run(store, f"{run_id}/c-2")).status == "running"


# FileStore: several processes share a root


async def test_a_cancel_asked_through_another_file_store_reaches_the_holder(
    tmp_path: Path,
) -> None:
    holder, other = FileStore(tmp_path), FileStore(tmp_path)
    lease = await _start(holder, "r")
    await _start(holder, "r/c-1", parent="r")
    assert await holder.load_run("r") is not None  # the holder's view is cached

    outcome, _ = await other.request_cancel("r", "from elsewhere")

    assert outcome == "requested"
    run = await _run(holder, "r")
    assert run.cancel_requested == "from elsewhere"
    assert (await _run(holder, "r/c-1")).cancel_requested == (
        "its parent run 'r' was cancelled: from elsewhere"
    )
    # Once the holder is gone, the other process ends the run and fences it.
    outcome, _ = await other.request_cancel("r", "again", now=_later())
    assert outcome == "cancelled"
    with pytest.raises(DurableRunLeaseLostError, match="was cancelled"):
        await holder.end_run(lease, status="completed", result=1)
    assert [c.run_id for c in await other.list_children("r")] == ["r/c-1"]
    await holder.close()
    await other.close()


# A cancellation interrupted or raced


class _FailsOnRun(InMemoryStore):
    """A store whose process dies (here: raises) as it comes to cancel ``run_id`` itself."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.dies_at: str | None = run_id

    async def _cancel_one(self, run_id: str, reason: str, now: datetime) -> Any:
        if run_id == self.dies_at:
            raise RuntimeError("the process died")
        return await super()._cancel_one(run_id, reason, now)


async def test_a_cancellation_cut_short_is_finished_by_asking_again() -> None:
    store = _FailsOnRun("r")
    await _start(store, "r")
    await _start(store, "r/c-1", parent="r")
    await _start(store, "r/c-1/g-1", parent="r/c-1")

    with pytest.raises(RuntimeError):
        await store.request_cancel("r", "stop", now=_later())

    # Descendants went first, so the run itself is still there to be asked again.
    assert [(await _run(store, r)).status for r in ("r/c-1", "r/c-1/g-1")] == ["cancelled"] * 2
    assert (await _run(store, "r")).status == "running"
    store.dies_at = None
    assert (await store.request_cancel("r", "stop", now=_later()))[0] == "cancelled"


class _Raced(SqliteStore):
    """Runs ``before_cancel`` on another connection just before each UPDATE that ends a run."""

    before_cancel: Any = None

    async def _fetch(self, sql: str, params: Any) -> Any:
        if "SET status = 'cancelled'" in sql and self.before_cancel is not None:
            await self.before_cancel()
        return await super()._fetch(sql, params)


async def test_a_run_taken_over_while_it_is_cancelled_is_asked_instead(tmp_path: Path) -> None:
    store, rival = _Raced(tmp_path / "db"), SqliteStore(tmp_path / "db")
    await _start(store, "r", lease_for=timedelta(milliseconds=1))
    await asyncio.sleep(0.01)

    async def take_over() -> None:
        store.before_cancel = None
        await _start(rival, "r", worker="w2")

    store.before_cancel = take_over
    outcome, record = await store.request_cancel("r", "stop")

    # The read saw no live lease, but a worker took the run before the UPDATE: its
    # generation moved, so the run was read again and its new holder asked.
    assert outcome == "requested"
    assert (record.status, record.lease_holder, record.cancel_requested) == (
        "running",
        "w2",
        "stop",
    )
    await store.close()
    await rival.close()


async def test_a_run_that_keeps_changing_is_not_cancelled_forever(tmp_path: Path) -> None:
    store, rival = _Raced(tmp_path / "db"), SqliteStore(tmp_path / "db")
    await _start(store, "r", lease_for=timedelta(milliseconds=1))

    async def bump() -> None:
        # A worker taking the run over and dying again, faster than the cancel.
        await rival._execute("UPDATE durable_runs SET lease_generation = lease_generation + 1", ())

    store.before_cancel = bump
    with pytest.raises(DurableStoreError, match=r"'r' changed 16 times.*ask again"):
        await store.request_cancel("r", "stop", now=_later())

    assert (await _run(store, "r")).status == "running"
    await store.close()
    await rival.close()


async def test_listing_the_newest_runs_keeps_creation_order(
    store: DurableRunStore, run_id: str
) -> None:
    ids = [f"{run_id}-{n}" for n in range(4)]
    for each in ids:
        await _start(store, each)
        await asyncio.sleep(0.005)  # SQL stores keep milliseconds

    newest = [r.run_id for r in await store.list_runs(limit=2, newest=True)]
    oldest = [r.run_id for r in await store.list_runs(limit=10_000)]

    assert newest == ids[2:]
    assert [i for i in oldest if i in ids] == ids
