"""Every error in the hierarchy, provoked through its real path: code and message checked.

``TRIGGERS`` maps each ``ErrorCode`` to a coroutine that causes it and to words
its message must contain; a meta-test keeps the table complete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from durable import (
    MAX_PAYLOAD_BYTES,
    DelegationPolicy,
    DurableContext,
    DurableError,
    DurableRunManifest,
    DurableStepFailedError,
    ErrorCode,
    RetryPolicy,
    TaskSpec,
    _errors,
    agent,
    canonical_json,
    step,
    step_definition,
)
from durable_agents.adapters.local import (
    FileStore,
    InMemoryStore,
    SqliteStore,
    cancel_run,
    decide_approval,
    resume_run,
    run_durable,
)


class Box(BaseModel):
    value: int = 0


@step(name="errors.double")
async def double(value: int) -> int:
    return value * 2


@step(name="errors.stuck", timeout=0.05, retry=RetryPolicy(maximum_attempts=1))
async def stuck() -> None:
    await asyncio.sleep(5)


@agent(name="errors.waits")
async def waits(ctx: DurableContext, box: Box) -> Any:
    await ctx.step("double", double, box.value, input_fingerprint=box.value)
    return await ctx.await_event("go", timeout=0.05, type=Box)


@agent(name="errors.stalls")
async def stalls(ctx: DurableContext, box: Box) -> None:
    await ctx.step("stuck", stuck)


@agent(name="errors.opaque_result")
async def opaque_result(ctx: DurableContext, box: Box) -> Any:
    return object()


MANIFEST = DurableRunManifest(
    project_id="default",
    task=TaskSpec(id="errors.waits", intent="errors.waits", domain="agent"),
    input={"value": 0},
)


async def lease_held(tmp: Path) -> None:
    store = InMemoryStore()
    await store.start_or_resume(
        run_id="r", agent="errors.waits", manifest=MANIFEST, worker_id="a", lease_for=timedelta(30)
    )
    await run_durable(waits, Box(), store=store, run_id="r", worker_id="b")


async def lease_lost(tmp: Path) -> None:
    store = SqliteStore(tmp / "db")
    first = await store.start_or_resume(
        run_id="r", agent="x", manifest=MANIFEST, worker_id="a", lease_for=timedelta(0)
    )
    await store.start_or_resume(
        run_id="r", agent="x", manifest=MANIFEST, worker_id="b", lease_for=timedelta(30)
    )
    assert first.lease is not None
    await store.renew_lease(first.lease, lease_for=timedelta(30))


async def manifest_mismatch(tmp: Path) -> None:
    store = InMemoryStore()
    await _interrupted(store, Box(value=1))
    await run_durable(waits, Box(value=2), store=store, run_id="r")


async def _interrupted(store: Any, box: Box) -> None:
    with pytest.raises(DurableError):
        await run_durable(waits, box, store=store, run_id="r", lease=0.1, worker_id="w")


async def run_failed(tmp: Path) -> None:
    store = InMemoryStore()
    await _interrupted(store, Box())
    await run_durable(waits, Box(), store=store, run_id="r", worker_id="w")


async def run_ended(tmp: Path) -> None:
    store = InMemoryStore()
    await _interrupted(store, Box())
    await store.emit_event("r", "late", {})


async def run_not_found(tmp: Path) -> None:
    await FileStore(tmp / "files").emit_event("missing-run", "k", {})


async def step_failed(tmp: Path) -> None:
    await run_durable(stalls, Box(), store=InMemoryStore(), run_id="r")


async def step_timeout(tmp: Path) -> None:
    with pytest.raises(DurableStepFailedError) as caught:
        await step_failed(tmp)
    assert caught.value.error_code == ErrorCode.STEP_TIMEOUT
    cause = caught.value.__cause__
    assert isinstance(cause, DurableError)
    raise cause


async def result_not_serializable(tmp: Path) -> None:
    await run_durable(opaque_result, Box(), store=InMemoryStore(), run_id="r")


async def await_event_timeout(tmp: Path) -> None:
    await run_durable(waits, Box(), store=InMemoryStore(), run_id="r")


async def event_payload_invalid(tmp: Path) -> None:
    store = InMemoryStore()
    await store.start_or_resume(
        run_id="r", agent="x", manifest=MANIFEST, worker_id="w", lease_for=timedelta(30)
    )
    await store.emit_event("r", "go", {"value": "not a number"})
    await run_durable(waits, Box(), store=store, run_id="r", worker_id="w")


async def non_canonical_value(tmp: Path) -> None:
    canonical_json({"score": float("nan")})


async def payload_too_large(tmp: Path) -> None:
    await InMemoryStore().emit_event("r", "go", {"text": "x" * (MAX_PAYLOAD_BYTES + 1)})


async def input_invalid(tmp: Path) -> None:
    store = InMemoryStore()
    stale = MANIFEST.model_copy(update={"input": {"value": "no longer an int"}})
    await store.start_or_resume(
        run_id="r", agent="errors.waits", manifest=stale, worker_id="a", lease_for=timedelta(0)
    )
    await resume_run(store, "r", worker_id="b")


async def recovery_exhausted(tmp: Path) -> None:
    store = InMemoryStore()
    for worker in ("a", "b"):  # b takes over when a dies; then b dies too
        await store.start_or_resume(
            run_id="r", agent="errors.waits", manifest=MANIFEST, worker_id=worker,
            lease_for=timedelta(0),
        )  # fmt: skip
    await resume_run(store, "r", worker_id="c", max_recovery_attempts=1)


async def registration(tmp: Path) -> None:
    step_definition(print)


async def store_error(tmp: Path) -> None:
    path = tmp / "db"
    SqliteStore(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE durable_schema SET version = 99")
    SqliteStore(path)


async def step_divergence(tmp: Path) -> None:
    store = InMemoryStore()
    await _interrupted(store, Box())
    state = store._runs["r"]
    state.run = state.run.model_copy(update={"status": "running"})
    state.steps[0] = dataclasses.replace(state.steps[0], intent="an older intent")
    await run_durable(waits, Box(), store=store, run_id="r", worker_id="w")


async def step_input_mismatch(tmp: Path) -> None:
    store = InMemoryStore()
    await _interrupted(store, Box())
    state = store._runs["r"]
    state.run = state.run.model_copy(update={"status": "running"})
    state.steps[0] = dataclasses.replace(state.steps[0], input_hash="0" * 64)
    await run_durable(waits, Box(), store=store, run_id="r", worker_id="w")


@agent(name="errors.hangs")
async def hangs(ctx: DurableContext, box: Box) -> Any:
    return await ctx.await_event("go")


@agent(name="errors.broken")
async def broken(ctx: DurableContext, box: Box) -> Any:
    raise ValueError("the broken agent always fails")


@agent(name="errors.delegates", delegation=DelegationPolicy())
async def delegates(ctx: DurableContext, box: Box) -> Any:
    return await ctx.call_agent(broken, box)


@agent(name="errors.undelegated")
async def undelegated(ctx: DurableContext, box: Box) -> Any:
    return await ctx.call_agent(broken, box)


async def cancelled(tmp: Path) -> None:
    store = InMemoryStore()
    run = asyncio.create_task(
        run_durable(hangs, Box(), store=store, run_id="r", poll_interval=0.01)
    )
    while not await store.load_steps("r"):
        await asyncio.sleep(0.01)
    await cancel_run(store, "r", "an operator stopped it")
    await run


async def child_failed(tmp: Path) -> None:
    await run_durable(delegates, Box(), store=InMemoryStore(), run_id="r")


async def delegation_refused(tmp: Path) -> None:
    await run_durable(undelegated, Box(), store=InMemoryStore(), run_id="r")


async def approval_not_found(tmp: Path) -> None:
    await decide_approval(InMemoryStore(), "refund-9:approval-0", "approve", decided_by="ana")


@agent(name="errors.reads_a_missing_checkpoint")
async def reads_a_missing_checkpoint(ctx: DurableContext, box: Box) -> Any:
    return await ctx.checkpoints.read("context")


async def checkpoint_not_found(tmp: Path) -> None:
    await run_durable(reads_a_missing_checkpoint, Box(), store=InMemoryStore(), run_id="r")


Trigger = Callable[[Path], Awaitable[None]]

TRIGGERS: dict[ErrorCode, tuple[Trigger, list[str]]] = {
    ErrorCode.LEASE_HELD: (lease_held, ["held by worker 'a'", "retry after the lease expires"]),
    ErrorCode.LEASE_LOST: (lease_lost, ["worker 'a' lost the lease", "stop this attempt"]),
    ErrorCode.MANIFEST_MISMATCH: (
        manifest_mismatch,
        ["already exists with manifest hash", "use a new run id for new input"],
    ),
    ErrorCode.STEP_DIVERGENCE: (
        step_divergence,
        ["'an older intent'", "restore the previous order or start a new run"],
    ),
    ErrorCode.STEP_INPUT_MISMATCH: (
        step_input_mismatch,
        ["input fingerprint 000000000000", "restore them or start a new run"],
    ),
    ErrorCode.RUN_FAILED: (run_failed, ["already failed", "under a new run id"]),
    ErrorCode.RUN_ENDED: (run_ended, ["run 'r' has already ended", "start a new run"]),
    ErrorCode.RUN_NOT_FOUND: (
        run_not_found,
        ["no run 'missing-run'", "start it first (run_durable"],
    ),
    ErrorCode.STEP_FAILED: (
        step_failed,
        ["'stuck' failed: all 1 attempt(s) its retry policy allows are spent", "catch"],
    ),
    ErrorCode.STEP_TIMEOUT: (step_timeout, ["step timeout of 0.05s", "raise the step's timeout"]),
    ErrorCode.RESULT_NOT_SERIALIZABLE: (
        result_not_serializable,
        ["cannot be recorded as JSON", "annotate the return type"],
    ),
    ErrorCode.AWAIT_EVENT_TIMEOUT: (
        await_event_timeout,
        ["event 'go'", "did not arrive by its deadline", "send the event before the deadline"],
    ),
    ErrorCode.EVENT_PAYLOAD_INVALID: (
        event_payload_invalid,
        ["does not match", "Box", "the sender must send the declared type"],
    ),
    ErrorCode.NON_CANONICAL_VALUE: (non_canonical_value, ["$.score", "finite number"]),
    ErrorCode.PAYLOAD_TOO_LARGE: (
        payload_too_large,
        ["event 'go' payload is 1,048,5", "over the limit of 1,048,576 bytes", "pass its key"],
    ),
    ErrorCode.INPUT_INVALID: (
        input_invalid,
        ["no longer matches the input type", "deploy a type that accepts it", "new run"],
    ),
    ErrorCode.REGISTRATION: (registration, ["not a registered step", "decorate it with @step"]),
    ErrorCode.STORE_ERROR: (store_error, ["schema version 99", "upgrade the library"]),
    ErrorCode.CANCELLED: (
        cancelled,
        ["run 'r' was cancelled: an operator stopped it", "start a new run"],
    ),
    ErrorCode.CHILD_FAILED: (
        child_failed,
        [
            "child run 'r/errors.broken-0' (errors.broken) failed",
            "[ValueError] the broken agent always fails",
            "durable status r/errors.broken-0",
        ],
    ),
    ErrorCode.DELEGATION_REFUSED: (
        delegation_refused,
        ["may not call agent 'errors.broken'", "pass delegation=DelegationPolicy(...)"],
    ),
    ErrorCode.CHECKPOINT_NOT_FOUND: (
        checkpoint_not_found,
        ["run 'r' has no checkpoint 'context'", "write it first", "durable checkpoints r"],
    ),
    ErrorCode.APPROVAL_NOT_FOUND: (
        approval_not_found,
        ["no approval 'refund-9:approval-0'", "there is no run 'refund-9'"],
    ),
    ErrorCode.RECOVERY_EXHAUSTED: (
        recovery_exhausted,
        [
            "lost its worker 2 times, the last time worker 'b'",
            "recovery stops after 1",
            "find why the run kills its worker",
            "start a new run",
        ],
    ),
}


def test_every_code_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(ErrorCode)


def test_every_concrete_error_has_its_own_code() -> None:
    concrete = [
        getattr(_errors, name)
        for name in _errors.__all__
        if isinstance(getattr(_errors, name), type) and "code" in vars(getattr(_errors, name))
    ]
    codes = [cls.code for cls in concrete]
    assert sorted(codes) == sorted(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
async def test_error(code: ErrorCode, tmp_path: Path) -> None:
    trigger, fragments = TRIGGERS[code]

    with pytest.raises(DurableError) as caught:
        await trigger(tmp_path)

    error = caught.value
    assert error.code == code
    assert str(error).startswith(f"[{code}] ")
    for fragment in fragments:
        assert fragment in str(error), (fragment, str(error))


def test_the_readme_lists_every_error_code() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    listed = section.split("carries a stable `code`:", 1)[1].split(".\n", 1)[0]

    assert re.findall(r"`([a-z_]+)`", listed) == [code.value for code in ErrorCode]
