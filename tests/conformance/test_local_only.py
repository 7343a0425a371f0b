"""Scenarios of the local stores' own machinery: leases, fencing, killed processes.

Temporal schedules runs itself, so these are local-only; each says why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import (
    DurableContext,
    DurableError,
    DurableEventPayloadError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableRunManifest,
    DurableRunNotFoundError,
    DurableStoreError,
    ErrorCode,
    StepError,
    TaskSpec,
    agent,
)
from durable_agents.adapters.local import DurableRunStore, LeaseKeeper, resume_run, run_durable
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import LocalSubstrate

ROOT = Path(__file__).resolve().parents[2]
LEASES = "leases are how local workers share runs; Temporal assigns workflow tasks itself"
MANIFEST = DurableRunManifest(
    project_id="default",
    task=TaskSpec(id="conformance.two_phase", intent="conformance.two_phase", domain="agent"),
    input=Job().model_dump(mode="json"),
)


async def acquire(store: DurableRunStore, run_id: str, worker: str, seconds: float) -> Any:
    """Take run ``run_id`` (created as a two_phase run if new) for ``worker``."""
    recorded = await store.load_run(run_id)
    resumed = await store.start_or_resume(
        run_id=run_id,
        agent="conformance.two_phase" if recorded is None else recorded.agent,
        manifest=await store.load_manifest(run_id) or MANIFEST,
        worker_id=worker,
        lease_for=timedelta(seconds=seconds),
    )
    assert resumed.lease is not None
    return resumed.lease


@pytest.mark.local_only(reason=LEASES)
async def test_lease_held_by_another_worker(substrate: LocalSubstrate, run_id: str) -> None:
    await substrate.start(agents.two_phase, Job(), run_id=run_id, worker_id="worker-a")
    await substrate.wait_for_step(run_id, "await_event:go")

    with pytest.raises(DurableRunLeaseHeldError) as caught:
        await run_durable(
            agents.two_phase, Job(), store=substrate.store, run_id=run_id, worker_id="worker-b"
        )

    assert caught.value.code == ErrorCode.LEASE_HELD
    assert "'worker-a'" in str(caught.value)
    # The holder is unharmed and finishes the run.
    await substrate.send_event(run_id, "go", None)
    assert await substrate.result(run_id) == 4


@pytest.mark.local_only(reason=LEASES)
async def test_takeover_after_expiry(substrate: LocalSubstrate, run_id: str) -> None:
    store = substrate.store
    dead = await acquire(store, run_id, "worker-a", 0.3)  # acquires, then never heartbeats
    await store.begin_step(dead, step_index=0, intent="first", kind="logic", input_hash="")
    with pytest.raises(DurableRunLeaseHeldError):
        await acquire(store, run_id, "worker-b", 5)

    await asyncio.sleep(0.4)
    await substrate.start(agents.two_phase, Job(), run_id=run_id, worker_id="worker-b")
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == 4
    run = await store.load_run(run_id)
    assert run is not None
    assert run.status == "completed"
    assert run.lease_generation == 2
    first = (await store.load_steps(run_id))[0]
    assert (first.status, first.attempts) == ("completed", 2)


@pytest.mark.local_only(reason=LEASES)
async def test_fenced_writes_after_the_lease_was_lost(
    substrate: LocalSubstrate, run_id: str
) -> None:
    store = substrate.store
    old = await acquire(store, run_id, "worker-a", 0.2)
    await store.begin_step(old, step_index=0, intent="first", kind="logic", input_hash="")
    await asyncio.sleep(0.3)
    new = await acquire(store, run_id, "worker-b", 30)
    assert new.generation == old.generation + 1
    before = await store.load_steps(run_id)

    writes = {
        "renew": store.renew_lease(old, lease_for=timedelta(seconds=30)),
        "begin": store.begin_step(old, step_index=1, intent="x", kind="logic", input_hash=""),
        "complete": store.complete_step(old, step_index=0, result=1),
        "fail": store.fail_step(
            old, step_index=0, error=StepError(message="m", type="E"), final=True
        ),
        "emit": store.emit_event(run_id, "k", {"from": "old"}, lease=old),
        "end": store.end_run(old, status="completed", result=1),
    }
    for name, write in writes.items():
        with pytest.raises(DurableRunLeaseLostError) as caught:
            await write
        assert caught.value.code == ErrorCode.LEASE_LOST, name
        assert "'worker-a'" in str(caught.value)
        assert "lost the lease" in str(caught.value)

    assert await store.load_steps(run_id) == before
    assert await store.load_event(run_id, "k") is None
    run = await store.load_run(run_id)
    assert run is not None
    assert (run.status, run.lease_holder) == ("running", "worker-b")
    # The new holder writes normally.
    await store.complete_step(new, step_index=0, result=2)
    assert (await store.load_steps(run_id))[0].result == 2


class _StalledRenewals:
    """A store whose lease renewals hang until released: a worker paused mid-run."""

    def __init__(self, store: DurableRunStore) -> None:
        self._store = store
        self.release = threading.Event()
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="stalled-leases")

    def renew_lease_blocking(self, lease: Any, *, lease_for: timedelta) -> Any:
        self.release.wait()
        return self._store.renew_lease_blocking(lease, lease_for=lease_for)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _paused_then_taken_over(
    substrate: LocalSubstrate, run_id: str, agent: Any = agents.two_phase
) -> tuple[_StalledRenewals, asyncio.Task[Any]]:
    """Worker A waits for 'go' with its renewals stalled until worker B takes the run."""
    stalled = _StalledRenewals(substrate.store)
    paused = asyncio.create_task(
        run_durable(
            agent,
            Job(),
            store=stalled,  # type: ignore[arg-type]
            run_id=run_id,
            worker_id="worker-a",
            lease=0.3,
            poll_interval=0.01,
        )
    )
    await substrate.wait_for_step(run_id, "await_event:go")
    await asyncio.sleep(0.4)
    await acquire(substrate.store, run_id, "worker-b", 30)
    return stalled, paused


@pytest.mark.local_only(reason=LEASES)
async def test_runner_stops_when_its_lease_is_taken_over(
    substrate: LocalSubstrate, run_id: str
) -> None:
    stalled, paused = await _paused_then_taken_over(substrate, run_id)

    stalled.release.set()  # the paused worker's next renewal learns it lost the run

    with pytest.raises(DurableRunLeaseLostError):
        await asyncio.wait_for(paused, 5)
    steps = await substrate.store.load_steps(run_id)
    assert [s.status for s in steps] == ["completed", "completed", "running"]


@pytest.mark.local_only(reason=LEASES)
async def test_paused_worker_cannot_record_a_step(substrate: LocalSubstrate, run_id: str) -> None:
    stalled, paused = await _paused_then_taken_over(substrate, run_id)

    # The event arrives while the paused worker still waits: completing the wait is fenced.
    await substrate.store.emit_event(run_id, "go", None)

    with pytest.raises(DurableRunLeaseLostError):
        await asyncio.wait_for(paused, 5)
    steps = await substrate.store.load_steps(run_id)
    assert [s.status for s in steps] == ["completed", "completed", "running"]
    stalled.release.set()


@pytest.mark.local_only(reason=LEASES)
async def test_a_caught_lost_lease_still_ends_the_run_as_lost(
    substrate: LocalSubstrate, run_id: str
) -> None:
    stalled, paused = await _paused_then_taken_over(substrate, run_id, agents.swallower)

    # Completing the wait is fenced; the agent catches the error and returns normally.
    await substrate.store.emit_event(run_id, "go", None)

    with pytest.raises(DurableRunLeaseLostError):
        await asyncio.wait_for(paused, 5)
    run = await substrate.store.load_run(run_id)
    assert run is not None
    assert (run.status, run.lease_holder, run.result) == ("running", "worker-b", None)
    stalled.release.set()


@pytest.mark.local_only(reason="the store contract itself")
async def test_emit_refuses_a_payload_that_is_not_json(
    substrate: LocalSubstrate, run_id: str
) -> None:
    await acquire(substrate.store, run_id, "worker-a", 30)

    with pytest.raises(DurableEventPayloadError, match=r"not JSON.*pydantic models"):
        await substrate.store.emit_event(run_id, "k", {"when": object()})
    assert await substrate.store.load_event(run_id, "k") is None


@pytest.mark.local_only(reason="the store contract itself")
async def test_completing_a_step_never_begun_is_a_store_error(
    substrate: LocalSubstrate, run_id: str
) -> None:
    lease = await acquire(substrate.store, run_id, "worker-a", 30)

    with pytest.raises(DurableStoreError, match="never begun"):
        await substrate.store.complete_step(lease, step_index=3, result=1)


def _child(*args: str, capture: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.conformance.child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )


@pytest.mark.local_only(reason="kills a real worker process holding a local store")
async def test_sigkill_between_steps_then_resume(
    substrate: LocalSubstrate, run_id: str, tmp_path: Path
) -> None:
    if substrate.name == "memory":
        pytest.skip("an in-memory store does not outlive the process it is killed with")
    marker = str(tmp_path / "marks.txt")
    child = _child("run", substrate.name, substrate.location, run_id, marker)
    try:
        await substrate.wait_for_step(run_id, "await_event:go", timeout=30)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert agents.marks(marker) == ["first", "second"]

    await substrate.resume(agents.marked, Job(marker=marker), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == ["first", "second", "third"]
    assert agents.marks(marker) == ["first", "second", "third"]


@pytest.mark.local_only(reason=LEASES)
async def test_lease_race_between_processes(substrate: LocalSubstrate, run_id: str) -> None:
    if substrate.name == "memory":
        pytest.skip("an in-memory store is not shared between processes")
    children = [
        _child("acquire", substrate.name, substrate.location, run_id, f"worker-{i}", capture=True)
        for i in range(4)
    ]
    outputs = sorted(child.communicate(timeout=60)[0].strip() for child in children)

    assert outputs == ["acquired 1", "lease_held", "lease_held", "lease_held"]


@pytest.mark.local_only(reason="resuming by id is the local worker's recovery path")
async def test_resume_by_run_id_alone(substrate: LocalSubstrate, run_id: str) -> None:
    store = substrate.store
    await substrate.start(agents.two_phase, Job(n=5), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    assert run_id in [r.run_id for r in await store.list_runs(limit=1000) if r.active]
    manifest = await store.load_manifest(run_id)
    assert manifest is not None
    assert manifest.input == {**Job(n=5).model_dump(), "n": 5}

    await asyncio.sleep(substrate.lease.total_seconds() + 0.1)
    await store.emit_event(run_id, "go", None)
    resumed = await resume_run(store, run_id, worker_id="recovery")

    assert resumed.result == 8
    assert agents.CALLS["add_one"] == 3
    assert run_id not in [r.run_id for r in await store.list_runs(limit=1000) if r.active]
    assert run_id in [r.run_id for r in await store.list_runs(status="completed", limit=1000)]


@pytest.mark.local_only(reason="resuming by id is the local worker's recovery path")
async def test_resume_of_an_unknown_run(substrate: LocalSubstrate) -> None:
    with pytest.raises(DurableRunNotFoundError, match="no run 'nope'"):
        await resume_run(substrate.store, "nope")
    assert await substrate.store.load_manifest("nope") is None


@pytest.mark.local_only(reason="the store contract itself")
async def test_emit_refuses_a_bad_key(substrate: LocalSubstrate, run_id: str) -> None:
    await acquire(substrate.store, run_id, "worker-a", 30)

    with pytest.raises(ValueError, match="event key must not be empty"):
        await substrate.store.emit_event(run_id, "", {})
    with pytest.raises(ValueError, match="control character"):
        await substrate.store.emit_event(run_id, "approval\x00", {})


WAIT_TIMEOUT: dict[str, float | None] = {"seconds": None}
"""The wait's timeout as the code of ``wait_as_coded`` has it: a test edits it between
a crash and the resume, as a deploy between the two would."""


@agent(name="conformance.wait_as_coded")
async def wait_as_coded(ctx: DurableContext, job: Job) -> Any:
    return await ctx.await_event(job.key, timeout=WAIT_TIMEOUT["seconds"])


@pytest.mark.local_only(reason="on Temporal, code dropping a wait's timer fails its replay")
async def test_a_resumed_wait_keeps_its_deadline_when_the_code_drops_it(
    substrate: LocalSubstrate, run_id: str
) -> None:
    WAIT_TIMEOUT["seconds"] = 2.0
    try:
        started = time.monotonic()
        await substrate.start(wait_as_coded, Job(key="approval"), run_id=run_id)
        first = await substrate.wait_for_step(run_id, "await_event:approval")
        assert first.deadline is not None
        await substrate.crash(run_id)
        WAIT_TIMEOUT["seconds"] = None  # the new code waits with no timeout

        await substrate.resume(wait_as_coded, Job(key="approval"), run_id=run_id)
        with pytest.raises(DurableError) as caught:
            await substrate.result(run_id)
    finally:
        WAIT_TIMEOUT["seconds"] = None
    assert caught.value.code == ErrorCode.AWAIT_EVENT_TIMEOUT
    assert time.monotonic() - started < 2.0 + 2.0
    wait = (await substrate.steps(run_id))[0]
    assert (wait.deadline, wait.attempts) == (first.deadline, 2)
