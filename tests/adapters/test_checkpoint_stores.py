"""Context checkpoints in every local store: fenced writes, odd names, an interrupted write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from durable import (
    MAX_CHECKPOINT_NAME,
    CheckpointInfo,
    DurableContext,
    DurableRunLeaseLostError,
    TaskSpec,
    agent,
    canonical_hash,
)
from durable_agents.adapters.local import (
    DurableRunStore,
    run_durable,
)
from tests.support.leases import MANIFEST, hold


def _info(name: str, text: str, step: int = 0) -> CheckpointInfo:
    return CheckpointInfo(
        name=name,
        step=step,
        size_bytes=len(text.encode()),
        digest=canonical_hash(text),
        written_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )


async def test_checkpoints_are_kept_by_name_and_replaced_whole(store: DurableRunStore) -> None:
    lease = await hold(store)
    names = ["context", "a/b", "..", "ü 😀", "x" * MAX_CHECKPOINT_NAME]
    for name in names:
        await store.write_checkpoint(lease, _info(name, '{"v":1}'), '{"v":1}')
    await store.write_checkpoint(lease, _info("context", '["new"]', step=7), '["new"]')

    listed = await store.list_checkpoints("r")

    assert [info.name for info in listed] == sorted(names)
    assert next(i for i in listed if i.name == "context") == _info("context", '["new"]', step=7)
    found = await store.read_checkpoint("r", "context")
    assert found is not None
    assert (found.payload, found.step) == (["new"], 7)
    for name in names[1:]:
        again = await store.read_checkpoint("r", name)
        assert again is not None, name
        assert again.payload == {"v": 1}, name
    assert await store.delete_checkpoint(lease, "a/b")
    assert not await store.delete_checkpoint(lease, "a/b")
    assert await store.read_checkpoint("r", "a/b") is None
    assert await store.list_checkpoints("no such run") == []
    assert await store.read_checkpoint("no such run", "context") is None


async def test_a_worker_that_lost_its_lease_writes_and_deletes_nothing(
    store: DurableRunStore,
) -> None:
    old = await hold(store, "old", lease_for=0)
    new = await hold(store, "new")
    await store.write_checkpoint(new, _info("context", "1"), "1")

    with pytest.raises(DurableRunLeaseLostError, match="worker 'old' lost the lease"):
        await store.write_checkpoint(old, _info("context", "2"), "2")
    with pytest.raises(DurableRunLeaseLostError, match="worker 'old' lost the lease"):
        await store.delete_checkpoint(old, "context")
    with pytest.raises(DurableRunLeaseLostError):
        await store.delete_checkpoint(old, "never written")

    found = await store.read_checkpoint("r", "context")
    assert found is not None
    assert found.payload == 1
    await store.end_run(new, status="completed")
    with pytest.raises(DurableRunLeaseLostError, match="already ended"):
        await store.write_checkpoint(new, _info("late", "3"), "3")


class Box(BaseModel):
    n: int = 0


@agent(name="checkpoint_stores.writes_once")
async def writes_once(ctx: DurableContext, box: Box) -> int:
    info = await ctx.checkpoints.write("context", {"n": box.n})
    return info.step


async def test_a_write_its_worker_died_in_is_written_again(store: DurableRunStore) -> None:
    # A worker recorded the checkpoint, then died before its position completed.
    text = '{"n":0}'
    lease = await store.start_or_resume(
        run_id="r", agent="checkpoint_stores.writes_once",
        manifest=MANIFEST.model_copy(update={"input": {"n": 0}}), worker_id="dead",
        lease_for=timedelta(0),
    )  # fmt: skip
    assert lease.lease is not None
    digest = canonical_hash({"n": 0})
    await store.begin_step(
        lease.lease, step_index=0, intent="checkpoint:context", kind="checkpoint",
        input_hash=digest,
    )  # fmt: skip
    await store.write_checkpoint(lease.lease, _info("context", text), text)

    result = await run_durable(
        writes_once, Box(), store=store, run_id="r", task=TaskSpec(id="t", intent="i", domain="d"),
        project_id="p",
    )  # fmt: skip

    assert result.result == 0
    [step] = result.steps
    assert (step.status, step.attempts) == ("completed", 2)
    found = await store.read_checkpoint("r", "context")
    assert found is not None
    assert found.payload == {"n": 0}
    assert found.written_at != _info("context", text).written_at  # written again
