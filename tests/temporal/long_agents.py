"""Agents of the continue-as-new tests: runs that outlive one execution's history."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from durable import (
    DelegationPolicy,
    DurableAwaitEventTimeoutError,
    DurableChildRunFailedError,
    DurableContext,
    DurableStepFailedError,
    RetryPolicy,
    agent,
    step,
)

with workflow.unsafe.imports_passed_through():
    # Shared with this module's copies inside the workflow sandbox (see tests.shared_state).
    from tests.shared_state import shared

CALLS: Counter[str] = Counter()
"""How many times each step ran in this process, by intent: a replay runs none."""
RENAMED: dict[int, str] = shared(__name__, "RENAMED", dict)
"""Steps whose intent a "deploy" renamed, by loop index (the divergence test)."""
PATCHED: dict[str, bool] = shared(__name__, "PATCHED", dict)
"""``PATCHED["on"]``: a "deploy" added a step behind ``ctx.patched`` (the patch tests)."""

MODEL_EVERY = 100
"""Every hundredth iteration (at 50, 150, ...) calls the model instead of adding."""


class LongJob(BaseModel):
    steps: int = 500
    """How many ``ctx.step`` calls the run makes."""
    wait_at: int = 250
    """The loop index before which the run waits for the event ``go``."""
    branches_at: int | None = 100
    """The loop index at which two parallel branches run nine steps between them."""
    children_at: int | None = 30
    """The loop index at which the run calls two child runs, one of which fails."""


class Go(BaseModel):
    bonus: int


class Number(BaseModel):
    n: int


class LongResult(BaseModel):
    total: int
    started: str
    """``ctx.now()`` at the first position: a replay must give the first execution's."""
    run_uuid: str
    tokens: int
    refused: str
    """The error type of the step that failed at the start, as the agent caught it."""
    timed_out: bool
    go_early: bool
    """Whether ``go`` had arrived at the start: never, however late a replay asks."""
    doubled: int
    child_error: str


@step(name="can.add", timeout=30)
async def add(total: int, i: int) -> int:
    CALLS[f"add {i}"] += 1
    return total + i


@step(name="can.model", timeout=30)
async def model(i: int) -> dict[str, Any]:
    CALLS[f"model {i}"] += 1
    return {"text": f"reply {i}", "usage": {"input_tokens": 10, "output_tokens": 5, "cost": 0.5}}


@step(name="can.paced", timeout=30)
async def paced(branch: str, i: int, delay: float) -> int:
    """Slow and fast branches: which takes the next position depends on timing."""
    CALLS[f"{branch} {i}"] += 1
    await asyncio.sleep(delay)
    return i


@step(name="can.refuse", timeout=30, retry=RetryPolicy(maximum_attempts=1))
async def refuse(i: int) -> int:
    CALLS["refuse"] += 1
    raise ValueError(f"refused {i}")


@agent(name="can.double", description="a child run that doubles its input")
async def double(ctx: DurableContext, number: Number) -> int:
    return 2 * number.n


@agent(name="can.failing", description="a child run that fails")
async def failing(ctx: DurableContext, number: Number) -> int:
    raise ValueError(f"child {number.n} fails")


async def _branch(ctx: DurableContext, name: str, count: int, delay: float) -> int:
    total = 0
    for i in range(count):
        total += await ctx.step(f"{name} {i}", paced, name, i, delay)
    return total


def expected_total(job: LongJob, bonus: int) -> int:
    """What ``long_run`` returns as its total for ``job``: computed without running it."""
    total, done, i = 0, 1, 0
    while done < job.steps:
        if i == job.wait_at:
            total += bonus
        if i == job.children_at:
            total += 2 * i
        if i == job.branches_at:
            total += sum(range(3)) + sum(range(6))
            done += 9
        elif i % MODEL_EVERY == 50:
            done += 1
        else:
            total += i
            done += 1
        i += 1
    return total


@agent(
    name="can.long_run",
    description="a long run with failures, a wait, child runs and parallel branches",
    delegation=DelegationPolicy(max_calls=2),
)
async def long_run(ctx: DurableContext, job: LongJob) -> LongResult:
    started = await ctx.now()
    run_uuid = await ctx.uuid()
    # Failures the agent catches: a replay must raise each again, with its type.
    try:
        await ctx.step("refuse", refuse, 0)
        refused = "nothing"
    except DurableStepFailedError as exc:
        refused = exc.error_type
    try:
        await ctx.await_event("never", timeout=0.05)
        timed_out = False
    except DurableAwaitEventTimeoutError:
        timed_out = True
    await ctx.sleep(0.01)
    go_early = await ctx.has_event("go")
    total, done, i, tokens = 0, 1, 0, 0
    doubled, child_error = 0, "none"
    while done < job.steps:
        if i == job.wait_at:
            go = await ctx.await_event("go", type=Go)
            total += go.bonus
        if i == job.children_at:
            doubled = await ctx.call_agent(double, Number(n=i))
            total += doubled
            try:
                await ctx.call_agent(failing, Number(n=i))
            except DurableChildRunFailedError as exc:
                child_error = exc.error_type
        if i == job.branches_at:
            slow, fast = await asyncio.gather(
                _branch(ctx, "slow", 3, 0.2), _branch(ctx, "fast", 6, 0.0)
            )
            total += slow + fast
            done += 9
        elif i % MODEL_EVERY == 50:
            reply = await ctx.step(f"model {i}", model, i, kind="llm")
            tokens += reply["usage"]["input_tokens"]
            done += 1
        else:
            total = await ctx.step(RENAMED.get(i, f"add {i}"), add, total, i)
            done += 1
        i += 1
    await ctx.emit_event("finished", total)
    return LongResult(
        total=total, started=started.isoformat(), run_uuid=str(run_uuid), tokens=tokens,
        refused=refused, timed_out=timed_out, go_early=go_early, doubled=doubled,
        child_error=child_error,
    )  # fmt: skip


@agent(name="can.diverging", description="a run whose code a deploy changes while it waits")
async def diverging(ctx: DurableContext, job: LongJob) -> int:
    total = 0
    for i in range(job.steps):
        if i == job.wait_at:
            await ctx.await_event("go")
        try:
            total = await ctx.step(RENAMED.get(i, f"add {i}"), add, total, i)
        except Exception:
            continue  # an agent that swallows errors: a divergence still fails the run
    return total


@agent(name="can.patched", description="a run whose code gains a patched step while it waits")
async def patched(ctx: DurableContext, job: LongJob) -> list[int]:
    total, extra = 0, 0
    for i in range(job.steps):
        if i == job.wait_at:
            await ctx.await_event("go")
        if i == 2 and PATCHED.get("on") and await ctx.patched("extra-step"):
            extra = await ctx.step("extra", add, 0, -1)
        total = await ctx.step(f"add {i}", add, total, i)
    return [total, extra]


@agent(name="can.abandoning", description="a run that stops awaiting a step of its own")
async def abandoning(ctx: DurableContext, job: LongJob) -> str:
    try:
        await asyncio.wait_for(ctx.step("abandoned", paced, "abandoned", 0, 3.0), timeout=0.1)
        outcome = "finished"
    except TimeoutError:
        outcome = "timed out"
    except DurableStepFailedError as exc:
        outcome = exc.error_type
    total = 0
    for i in range(job.steps):
        total = await ctx.step(f"add {i}", add, total, i)
    return f"{outcome}, {total}"
