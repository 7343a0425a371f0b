"""Run slots: cap + 1 runs queue instead of failing, first come first served, freed always."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel

from durable import DurableContext, DurableRunManifest, TaskSpec, agent
from durable_agents.adapters.local import (
    InMemoryStore,
    LocalWorker,
    RunSlots,
    run_durable,
    send_event,
)


class Wait(BaseModel):
    key: str = "go"


@agent(name="slots.waits")
async def waits(ctx: DurableContext, job: Wait) -> str:
    return str(await ctx.await_event(job.key))


@agent(name="slots.fails")
async def fails(ctx: DurableContext, job: Wait) -> str:
    raise RuntimeError("this run fails")


def test_a_limit_must_be_a_positive_whole_number() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="at least 1"):
            RunSlots(bad)  # type: ignore[arg-type]


async def test_slots_are_given_first_come_first_served() -> None:
    slots = RunSlots(1)
    order: list[int] = []

    async def take(n: int) -> None:
        async with slots.slot():
            order.append(n)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(take(n) for n in range(5)))

    assert order == [0, 1, 2, 3, 4]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_a_slot_comes_back_when_its_run_fails_or_a_waiter_gives_up() -> None:
    slots = RunSlots(1)
    with pytest.raises(RuntimeError):
        async with slots.slot():
            raise RuntimeError("boom")
    assert slots.in_use == 0

    async with slots.slot():
        waiter = asyncio.create_task(slots.slot().__aenter__())
        await asyncio.sleep(0)
        assert slots.waiting == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    assert (slots.in_use, slots.waiting) == (0, 0)
    async with slots.slot():  # still usable
        assert slots.in_use == 1


async def test_cap_plus_one_runs_queue_rather_than_fail() -> None:
    store = InMemoryStore()
    slots = RunSlots(2)
    runs = [
        asyncio.create_task(
            run_durable(waits, Wait(), store=store, run_id=f"r{n}", slots=slots, poll_interval=0.01)
        )
        for n in range(3)
    ]
    for _ in range(200):
        if slots.waiting == 1:
            break
        await asyncio.sleep(0.01)
    # Two run; the third waits for a slot without having taken its lease, or begun.
    assert (slots.in_use, slots.waiting) == (2, 1)
    assert await store.load_run("r2") is None

    assert await send_event(store, "r0", "go", "first")
    assert (await runs[0]).result == "first"
    for _ in range(200):  # the third run gets the slot the first gave back
        if await store.load_run("r2") is not None:
            break
        await asyncio.sleep(0.01)
    for n in (1, 2):
        assert await send_event(store, f"r{n}", "go", n)
    assert [(await run).result for run in runs[1:]] == ["1", "2"]
    assert (slots.in_use, slots.waiting) == (0, 0)

    with pytest.raises(RuntimeError):
        await run_durable(fails, Wait(), store=store, run_id="failing", slots=slots)
    assert slots.in_use == 0  # given back on the way out of a failed run


async def test_a_local_worker_resumes_no_more_runs_at_once_than_its_cap() -> None:
    store = InMemoryStore()
    manifest = DurableRunManifest(
        project_id="default", task=TaskSpec(id="slots.waits", intent="slots.waits", domain="agent"),
        input={"key": "go"},
    )  # fmt: skip
    for n in range(3):  # three runs whose worker died at once
        await store.start_or_resume(
            run_id=f"abandoned-{n}", agent="slots.waits", manifest=manifest, worker_id="dead",
            lease_for=timedelta(0),
        )  # fmt: skip
    worker = LocalWorker(store, scan_interval=timedelta(milliseconds=20), max_concurrent_runs=1)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            if worker.slots.waiting == 2:
                break
            await asyncio.sleep(0.01)
        assert (worker.slots.in_use, worker.slots.waiting) == (1, 2)
        for n in range(3):
            await send_event(store, f"abandoned-{n}", "go", n)
        for _ in range(500):
            if len(worker.finished) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await running
    assert sorted(worker.finished) == [f"abandoned-{n}" for n in range(3)]
    assert all(not isinstance(done, BaseException) for done in worker.finished.values())
