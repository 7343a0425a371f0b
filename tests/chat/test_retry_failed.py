"""The run-id rule for failed runs, on every local store: ``start_or_resume(retry_failed=True)``.

A run that failed or was cancelled starts again fresh, its old records gone, so
its failure never replays; a completed run never runs again; two callers
retrying together get one restart and one ``lease_held``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable import (
    CheckpointInfo,
    DurableRunInputMismatchError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableRunManifest,
    Lease,
    LiveEvent,
    StepError,
    TaskSpec,
)
from durable_agents.adapters.local import DurableRunStore, Resumed
from durable_agents.adapters.local._sql import SqlStore
from tests.chat.conftest import OpenStore
from tests.conformance.conftest import open_store, store_location

LEASE = timedelta(seconds=30)


def manifest(message: str = "hello", *, parent: str | None = None) -> DurableRunManifest:
    return DurableRunManifest(
        project_id="p",
        task=TaskSpec(id="t", intent="i", domain="d"),
        input={"message": message},
        parent_run_id=parent,
    )


async def start(
    store: DurableRunStore,
    run_id: str,
    *,
    worker: str = "w1",
    retry_failed: bool = True,
    message: str = "hello",
) -> Resumed:
    return await store.start_or_resume(
        run_id=run_id,
        agent="a",
        manifest=manifest(message),
        worker_id=worker,
        lease_for=LEASE,
        retry_failed=retry_failed,
    )


async def ended(store: DurableRunStore, status: str, run_id: str) -> Lease:
    """A run with a failed step, an event, a live stream and a checkpoint, ended ``status``."""
    lease = (await start(store, run_id)).lease
    assert lease is not None
    await store.begin_step(lease, step_index=0, intent="turn", kind="llm", input_hash="h")
    error = StepError(message="the model is down", type="ModelUnavailableError")
    await store.fail_step(lease, step_index=0, error=error, final=True)
    await store.emit_event(run_id, "go", {"n": 1})
    info = CheckpointInfo(
        name="notes", step=1, size_bytes=2, digest="d", written_at=lease.expires_at
    )
    await store.write_checkpoint(lease, info, "{}")
    await store.append_live(run_id, [LiveEvent(kind="step_started", step=0)])
    if status == "cancelled":
        await store.end_run(lease, status="cancelled", error=error)
    else:
        await store.end_run(lease, status="failed", error=error)
    return lease


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_a_failed_or_cancelled_run_starts_again_fresh(
    stores: OpenStore, status: str, run_id: str
) -> None:
    store = await stores()
    old = await ended(store, status, run_id)
    before = await store.load_run(run_id)
    assert before is not None

    again = await start(store, run_id, worker="w2")

    assert again.restarted
    assert again.resumed is None
    assert again.steps == []
    assert again.lease is not None
    assert again.lease.holder == "w2"
    assert again.lease.generation > old.generation
    run = again.run
    assert (run.status, run.error, run.result, run.completed_at) == ("running", None, None, None)
    assert (run.recoveries, run.cancel_requested, run.step_count) == (0, None, 0)
    assert run.created_at > before.created_at
    assert await store.load_run(run_id) == run
    assert await store.load_steps(run_id) == []
    assert await store.load_event(run_id, "go") is None
    assert await store.read_live(run_id) == []
    assert await store.list_checkpoints(run_id) == []
    # The new run records and ends as any run does; the old run's lease writes nothing.
    await store.begin_step(again.lease, step_index=0, intent="turn", kind="llm", input_hash="h")
    await store.complete_step(again.lease, step_index=0, result={"text": "hi"})
    with pytest.raises(DurableRunLeaseLostError):
        await store.begin_step(old, step_index=1, intent="late", kind="logic", input_hash="h")
    done = await store.end_run(again.lease, status="completed", result={"text": "hi"})
    assert (done.status, done.step_count) == ("completed", 1)


async def test_without_retry_failed_a_failed_run_stays_ended(
    stores: OpenStore, run_id: str
) -> None:
    store = await stores()
    await ended(store, "failed", run_id)

    again = await start(store, run_id, retry_failed=False)

    assert again.lease is None
    assert not again.restarted
    assert again.run.status == "failed"
    assert [s.status for s in again.steps] == ["failed"]


async def test_a_completed_run_never_runs_again(stores: OpenStore, run_id: str) -> None:
    store = await stores()
    lease = (await start(store, run_id)).lease
    assert lease is not None
    await store.begin_step(lease, step_index=0, intent="turn", kind="llm", input_hash="h")
    await store.complete_step(lease, step_index=0, result={"text": "hi"})
    await store.end_run(lease, status="completed", result={"text": "hi"})

    again = await start(store, run_id, worker="w2")

    assert again.lease is None
    assert not again.restarted
    assert again.run.status == "completed"
    assert again.run.result == {"text": "hi"}
    assert [s.result for s in again.steps] == [{"text": "hi"}]


async def test_a_retry_with_other_input_is_refused(stores: OpenStore, run_id: str) -> None:
    store = await stores()
    await ended(store, "failed", run_id)

    with pytest.raises(DurableRunInputMismatchError):
        await start(store, run_id, message="something else")
    run = await store.load_run(run_id)
    assert run is not None
    assert run.status == "failed"


async def test_a_run_with_child_runs_is_not_started_again(stores: OpenStore, run_id: str) -> None:
    store = await stores()
    await ended(store, "failed", run_id)
    child = await store.start_or_resume(
        run_id=f"{run_id}/helper-1",
        agent="a",
        manifest=manifest(parent=run_id),
        worker_id="w1",
        lease_for=LEASE,
    )
    assert child.lease is not None
    await store.end_run(child.lease, status="cancelled")

    again = await start(store, run_id, worker="w2")

    assert again.lease is None
    assert not again.restarted
    assert again.run.status == "failed"


async def test_two_callers_retrying_together_get_one_restart(
    stores: OpenStore, run_id: str
) -> None:
    first, second = await stores(), await stores()
    await ended(first, "failed", run_id)

    outcomes = await asyncio.gather(
        start(first, run_id, worker="w2"),
        start(second, run_id, worker="w3"),
        return_exceptions=True,
    )

    restarted = [o for o in outcomes if isinstance(o, Resumed)]
    refused = [o for o in outcomes if isinstance(o, DurableRunLeaseHeldError)]
    assert (len(restarted), len(refused)) == (1, 1), outcomes
    assert restarted[0].restarted


async def test_a_watcher_of_the_old_stream_reads_the_new_one_from_its_start(
    stores: OpenStore, run_id: str
) -> None:
    writer, reader = await stores(), await stores()
    await ended(writer, "failed", run_id)
    await writer.append_live(run_id, [LiveEvent(kind="run_failed", error="down")])
    assert [e.kind for e in await reader.read_live(run_id, after=1)] == ["run_failed"]

    again = await start(writer, run_id, worker="w2")
    assert again.lease is not None
    fresh = [LiveEvent(kind="step_started", step=0), LiveEvent(kind="token", step=0, text="a"),
             LiveEvent(kind="token", step=0, offset=1, text="b")]  # fmt: skip
    await writer.append_live(run_id, fresh)

    # Position 1 and 2 were given out for the old stream: in the new one they are its own.
    assert [e.text for e in await reader.read_live(run_id, after=1)] == ["a", "b"]
    assert [e.text for e in await reader.read_live(run_id, after=2)] == ["b"]
    assert [e.seq for e in await reader.read_live(run_id)] == [1, 2, 3]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_sql_restart_holds_only_while_the_run_is_as_it_read_it(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, run_id: str
) -> None:
    # The SQL restart is several statements; each holds only while the run is still
    # ended at the generation read. One that read the run before another caller
    # restarted it changes nothing: not the new run's row, nor its steps.
    store = await open_store(kind, store_location(request, kind, tmp_path))
    try:
        assert isinstance(store, SqlStore)
        await ended(store, "failed", run_id)
        read = await store.load_run(run_id)
        assert read is not None
        winner = (await start(store, run_id, worker="w2")).lease
        assert winner is not None
        await store.begin_step(winner, step_index=0, intent="turn", kind="llm", input_hash="h")

        now = datetime.now(UTC)
        late = await store._restart(read, "a", manifest(), "w3", now, now + LEASE)

        assert late is None
        run = await store.load_run(run_id)
        assert run is not None
        assert (run.status, run.lease_holder) == ("running", "w2")
        assert [s.intent for s in await store.load_steps(run_id)] == ["turn"]
    finally:
        await store.close()
