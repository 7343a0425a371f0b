"""Bounded recovery on every local store: the count, the bound, ``run_resumed``, foreign runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable import (
    DurableContext,
    DurableRunFailedError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableRunRecoveryExhaustedError,
    LiveEvent,
    agent,
    agent_definition,
    step,
)
from durable_agents.adapters.local import (
    DurableRunStore,
    InMemoryStore,
    LocalWorker,
    resume_run,
    run_durable,
)
from durable_agents.adapters.local._recovery import UnhostedRuns
from tests.conformance import agents, family
from tests.conformance.agents import Job

MANIFEST = agent_definition(agents.two_phase).manifest(Job())


async def _held_by(store: DurableRunStore, run_id: str, *workers: str) -> None:
    """Each of ``workers`` in turn takes the run and dies at once (its lease lapses)."""
    for worker in workers:
        await store.start_or_resume(
            run_id=run_id, agent="conformance.two_phase", manifest=MANIFEST,
            worker_id=worker, lease_for=timedelta(0),
        )  # fmt: skip


async def _live(store: DurableRunStore, run_id: str) -> list[LiveEvent]:
    for _ in range(100):  # the stream is written in the background; the end comes last
        events = await store.read_live(run_id)
        if events and events[-1].final:
            return events
        await asyncio.sleep(0.02)
    return await store.read_live(run_id)


async def test_only_a_takeover_of_a_lapsed_lease_counts_a_recovery(
    store: DurableRunStore,
) -> None:
    created = await store.start_or_resume(
        run_id="r", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="a", lease_for=timedelta(0),
    )  # fmt: skip
    assert (created.resumed, created.run.recoveries, created.run.recovered_from) == (None, 0, None)

    # A lapsed lease is a crash whoever takes it, its own worker id included: a worker
    # restarted under a fixed id must not escape the bound.
    again = await store.start_or_resume(
        run_id="r", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="a", lease_for=timedelta(0),
    )  # fmt: skip
    assert (again.resumed, again.run.recoveries, again.run.recovered_from) == ("crash", 1, "a")

    taken = await store.start_or_resume(
        run_id="r", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="b", lease_for=timedelta(seconds=30),
    )  # fmt: skip
    assert (taken.resumed, taken.run.recoveries, taken.run.recovered_from) == ("crash", 2, "a")
    assert taken.lease is not None
    assert taken.lease.generation == 3

    # Its own worker again while the lease is live: an explicit resume, nothing counted.
    own = await store.start_or_resume(
        run_id="r", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="b", lease_for=timedelta(seconds=30),
    )  # fmt: skip
    assert (own.resumed, own.run.recoveries) == ("explicit", 2)
    assert own.lease is not None
    taken = own

    with pytest.raises(DurableRunLeaseHeldError):  # b's lease is live: nothing counted
        await _held_by(store, "r", "c")
    run = await store.load_run("r")
    assert run is not None
    assert (run.recoveries, run.recovered_from, run.lease_holder) == (2, "a", "b")

    await store.end_run(taken.lease, status="completed", result=4)
    ended = await store.start_or_resume(
        run_id="r", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="c", lease_for=timedelta(0),
    )  # fmt: skip
    assert (ended.lease, ended.resumed, ended.run.recoveries) == (None, None, 2)


async def test_a_worker_fails_a_run_past_the_bound_and_runs_nothing(
    store: DurableRunStore,
) -> None:
    agents.reset()
    await _held_by(store, "poison", "starter", "w1", "w2")  # recoveries: 2
    worker = LocalWorker(store, worker_id="w3", max_recovery_attempts=2)

    assert await worker.scan() == ["poison"]
    while "poison" not in worker.finished:
        await asyncio.sleep(0.01)

    error = worker.finished["poison"]
    assert isinstance(error, DurableRunRecoveryExhaustedError)
    assert (error.recoveries, error.last_worker) == (3, "w2")
    assert "lost its worker 3 times, the last time worker 'w2'" in str(error)
    assert "recovery stops after 2" in str(error)
    run = await store.load_run("poison")
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert (run.error.code, run.error.type) == (
        "recovery_exhausted",
        "DurableRunRecoveryExhaustedError",
    )
    assert (run.recoveries, run.recovered_from, run.lease_holder) == (3, "w2", None)
    assert await store.load_steps("poison") == []  # the agent never ran
    assert agents.CALLS == {}
    assert [e.kind for e in await _live(store, "poison")] == ["run_failed"]
    assert await worker.scan() == []
    with pytest.raises(DurableRunFailedError, match="lost its worker 3 times"):
        await resume_run(store, "poison")


async def test_a_run_within_the_bound_resumes_and_says_it_recovered(
    store: DurableRunStore,
) -> None:
    agents.reset()
    await _held_by(store, "survivor", "starter", "w1")  # recoveries: 1
    await store.emit_event("survivor", "go", None)

    result = await resume_run(store, "survivor", worker_id="w2", max_recovery_attempts=2)

    assert result.result == 4
    # Its steps ran fresh: it got past where its workers died, so the count starts again.
    assert (result.run.recoveries, result.run.recovered_from) == (0, "w1")
    first = (await _live(store, "survivor"))[0]
    assert first.kind == "run_resumed"
    assert first.detail == {
        "kind": "crash",
        "worker": "w2",
        "recoveries": 2,
        "previous_worker": "w1",
    }


async def test_workers_racing_an_exhausted_run_never_run_it(store: DurableRunStore) -> None:
    agents.reset()
    await _held_by(store, "poison", "starter", "w1")  # recoveries: 1
    racers = [LocalWorker(store, worker_id=f"racer-{i}", max_recovery_attempts=0) for i in (1, 2)]

    await asyncio.gather(*(racer.scan() for racer in racers))
    for racer in racers:
        while racer._tasks:
            await asyncio.sleep(0.01)

    outcomes = [racer.finished.get("poison") for racer in racers]
    exhausted = [o for o in outcomes if isinstance(o, DurableRunRecoveryExhaustedError)]
    assert len(exhausted) == 1
    # The other found the lease held (not recorded) or the run already failed.
    others = [o for o in outcomes if o not in exhausted]
    assert all(o is None or isinstance(o, DurableRunFailedError) for o in others)
    run = await store.load_run("poison")
    assert run is not None
    assert (run.status, run.recoveries) == ("failed", 2)  # one takeover counted, one mark
    assert await store.load_steps("poison") == []
    assert agents.CALLS == {}


async def test_every_resume_says_its_kind_on_the_live_stream(store: DurableRunStore) -> None:
    agents.reset()
    fresh = asyncio.create_task(
        run_durable(agents.two_phase, Job(), store=store, run_id="fresh", worker_id="w")
    )
    while not any(s.intent == "await_event:go" for s in await store.load_steps("fresh")):
        await asyncio.sleep(0.01)
    fresh.cancel()  # its worker stops holding a live lease
    with pytest.raises(asyncio.CancelledError):
        await fresh
    await store.emit_event("fresh", "go", None)

    # The same worker resumes it: explicit.
    await run_durable(agents.two_phase, Job(), store=store, run_id="fresh", worker_id="w")

    kinds = [(e.kind, (e.detail or {}).get("kind")) for e in await _live(store, "fresh")]
    assert ("run_resumed", "explicit") in kinds
    assert kinds.index(("run_resumed", "explicit")) > 0  # a fresh start announces no resume
    assert [k for k, _ in kinds].count("run_resumed") == 1
    resumed = next(e for e in await store.read_live("fresh") if e.kind == "run_resumed")
    assert resumed.detail == {"kind": "explicit", "worker": "w"}
    run = await store.load_run("fresh")
    assert run is not None
    assert (run.status, run.recoveries) == ("completed", 0)


async def test_a_run_of_an_agent_hosted_elsewhere_is_left_and_logged_once(
    store: DurableRunStore, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = MANIFEST.model_copy(update={"input": {"elsewhere": True}})
    for run_id in ("foreign-1", "foreign-2"):
        await store.start_or_resume(
            run_id=run_id, agent="not.hosted.here", manifest=foreign,
            worker_id="gone", lease_for=timedelta(0),
        )  # fmt: skip
    worker = LocalWorker(store, worker_id="here")
    worker.unhosted = UnhostedRuns(every=1)

    with caplog.at_level(logging.WARNING, logger="durable.local.worker"):
        for _ in range(3):
            assert await worker.scan() == []
        await store.start_or_resume(
            run_id="foreign-3", agent="not.hosted.here", manifest=foreign,
            worker_id="gone", lease_for=timedelta(0),
        )  # fmt: skip
        assert await worker.scan() == []

    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3
    for run_id, message in zip(("foreign-1", "foreign-2", "foreign-3"), logged, strict=True):
        assert f"run {run_id!r} of agent 'not.hosted.here' has no worker" in message
        assert "DURABLE_AGENT_MODULES" in message
    for run_id in ("foreign-1", "foreign-2", "foreign-3"):
        run = await store.load_run(run_id)
        assert run is not None
        assert (run.status, run.lease_holder, run.recoveries) == ("running", "gone", 0)


async def test_the_foreign_run_report_is_periodic_and_bounded() -> None:
    store = InMemoryStore()
    foreign = MANIFEST.model_copy(update={"input": {"elsewhere": True}})
    for i in range(3):
        await store.start_or_resume(
            run_id=f"foreign-{i}", agent="not.hosted.here", manifest=foreign,
            worker_id="gone", lease_for=timedelta(0),
        )  # fmt: skip
    report = UnhostedRuns(every=3, limit=2, remembered=2)
    now = datetime.now(UTC) + timedelta(seconds=1)

    first = await report.report(store, now=now, hosted={"conformance.two_phase"})
    skipped = [await report.report(store, now=now, hosted=set()) for _ in range(2)]
    again = await report.report(store, now=now, hosted=set())

    assert first == ["foreign-0", "foreign-1"]  # at most `limit` read
    assert skipped == [[], []]  # one scan in `every`
    assert again == []  # logged already
    assert len(report._logged) <= 2


def test_the_bound_refuses_a_negative_value() -> None:
    with pytest.raises(ValueError, match="max_recovery_attempts must be 0 or more, got -1"):
        LocalWorker(InMemoryStore(), max_recovery_attempts=-1)


async def test_resume_run_refuses_a_negative_bound() -> None:
    with pytest.raises(ValueError, match="max_recovery_attempts must be 0 or more"):
        await resume_run(InMemoryStore(), "r", max_recovery_attempts=-1)


async def test_a_run_that_waits_across_worker_deaths_is_never_taken_for_a_poison_run(
    store: DurableRunStore,
) -> None:
    """Each resume reaches its wait again: the count never builds up to the bound."""
    agents.reset()
    for worker in ("w1", "w2", "w3", "w4"):
        resumed = asyncio.create_task(
            resume_run(store, "waiter", worker_id=worker, max_recovery_attempts=1, lease=0.2)
        ) if worker != "w1" else asyncio.create_task(
            run_durable(agents.two_phase, Job(), store=store, run_id="waiter", worker_id=worker,
                        lease=0.2, poll_interval=0.01)
        )  # fmt: skip
        for _ in range(200):
            steps = await store.load_steps("waiter")
            run = await store.load_run("waiter")
            if any(s.intent == "await_event:go" for s in steps) and run and not run.recoveries:
                break
            await asyncio.sleep(0.01)
        resumed.cancel()  # the worker dies while the run waits
        await asyncio.gather(resumed, return_exceptions=True)
        await asyncio.sleep(0.25)  # its lease lapses

    await store.emit_event("waiter", "go", None)
    done = await resume_run(store, "waiter", worker_id="w5", max_recovery_attempts=1)

    assert done.result == 4
    assert done.run.recoveries == 0


async def test_clearing_recoveries_is_fenced(store: DurableRunStore) -> None:
    await _held_by(store, "fenced", "w1")
    taken = await store.start_or_resume(
        run_id="fenced", agent="conformance.two_phase", manifest=MANIFEST,
        worker_id="w2", lease_for=timedelta(seconds=30),
    )  # fmt: skip
    assert taken.lease is not None
    assert taken.run.recoveries == 1
    stale = taken.lease.model_copy(update={"generation": taken.lease.generation - 1})

    with pytest.raises(DurableRunLeaseLostError):
        await store.clear_recoveries(stale)
    assert (await store.load_run("fenced")).recoveries == 1  # type: ignore[union-attr]
    await store.clear_recoveries(taken.lease)
    assert (await store.load_run("fenced")).recoveries == 0  # type: ignore[union-attr]


@step
async def hang() -> None:
    """Stands in for a step that kills its worker: it never finishes."""
    await asyncio.sleep(60)


@agent(name="recovery.beside")
async def beside(ctx: DurableContext, job: Job) -> Any:
    return await asyncio.gather(ctx.await_event("go"), ctx.step("hang", hang))


async def _die_repeatedly(
    store: DurableRunStore, start: Any, run_id: str, ready: Any, times: int
) -> None:
    """Run ``start(n)`` as worker ``wn`` after ``wn-1``, each dying once it holds the run
    and ``ready()`` holds."""
    for n in range(times):
        task = asyncio.create_task(start(n))
        for _ in range(300):
            run = await store.load_run(run_id)
            if (run is not None and run.lease_holder == f"w{n}" and await ready()) or task.done():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # it runs on a moment, to where it was
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.25)  # its lease lapses


async def test_a_parent_whose_child_waits_across_restarts_is_never_taken_for_a_poison_run(
    store: DurableRunStore,
) -> None:
    child = "parent/family.waiting_leaf-0"

    def start(n: int) -> Any:
        if n == 0:
            return run_durable(family.waiting_parent, family.Ask(), store=store, run_id="parent",
                               worker_id="w0", lease=0.2, poll_interval=0.01)  # fmt: skip
        return resume_run(store, "parent", worker_id=f"w{n}", lease=0.2, poll_interval=0.01,
                          max_recovery_attempts=1)  # fmt: skip

    async def ready() -> bool:
        run = await store.load_run("parent")
        waiting = any(s.intent == "await_event:go" for s in await store.load_steps(child))
        return waiting and run is not None and run.recoveries == 0

    await _die_repeatedly(store, start, "parent", ready, times=4)
    await store.emit_event(child, "go", 5)
    done = await resume_run(store, "parent", worker_id="w9", max_recovery_attempts=1)

    assert done.result.n == 5
    assert done.run.recoveries == 0


async def test_a_wait_beside_a_step_that_never_finishes_proves_nothing(
    store: DurableRunStore,
) -> None:
    def start(n: int) -> Any:
        if n == 0:
            return run_durable(beside, Job(), store=store, run_id="beside", worker_id="w0",
                               lease=0.2, poll_interval=0.01)  # fmt: skip
        return resume_run(store, "beside", worker_id=f"w{n}", lease=0.2, poll_interval=0.01,
                          max_recovery_attempts=1)  # fmt: skip

    async def ready() -> bool:
        return len(await store.load_steps("beside")) == 2

    await _die_repeatedly(store, start, "beside", ready, times=2)
    run = await store.load_run("beside")
    assert run is not None
    assert (run.status, run.recoveries) == ("running", 1)  # its wait cleared nothing

    with pytest.raises(DurableRunRecoveryExhaustedError):
        await resume_run(store, "beside", worker_id="w9", max_recovery_attempts=1)
