"""Agents that call agents: the child-run scenarios' parents and children.

Module level, like every agent, so the Temporal worker finds them by name.
``OBSERVED`` records what agents saw where the run's own result cannot say it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from durable import (
    DelegationPolicy,
    DurableChildRunFailedError,
    DurableContext,
    DurableDelegationError,
    DurableRunCancelledError,
    DurableRunInputMismatchError,
    RetryPolicy,
    agent,
    step,
)
from tests.conformance.agents import mark

with workflow.unsafe.imports_passed_through():
    # Shared with this module's copies inside the workflow sandbox (see tests.shared_state).
    from tests.shared_state import shared

OBSERVED: list[Any] = shared(__name__, "OBSERVED", list)


class Ask(BaseModel):
    n: int = 0
    path: str = ""
    """A file each counted step appends to: executions across processes and resumes."""


class Answer(BaseModel):
    n: int
    by: str


@step
async def square(n: int) -> int:
    return n * n


@step
async def count_marks(path: str) -> int:
    with open(path) as handle:
        return len(handle.read().split())


@step
async def priced(n: int) -> dict[str, Any]:
    """A model call's recorded shape: text and usage (what the run's totals add up)."""
    return {"text": "ok", "usage": {"input_tokens": 10 * n, "output_tokens": n, "cost": 0.5 * n}}


@step(timeout=60, heartbeat=2)
async def linger(path: str) -> None:
    """A step still in flight when its run is cancelled: it notes the cancellation."""
    with open(path, "a") as handle:
        handle.write("started\n")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        with open(path, "a") as handle:
            handle.write("cancelled\n")
        raise


@agent(name="family.lingering")
async def lingering(ctx: DurableContext, ask: Ask) -> None:
    await ctx.step("linger", linger, ask.path)


@agent(name="family.leaf")
async def leaf(ctx: DurableContext, ask: Ask) -> Answer:
    if ask.path:
        await ctx.step("mark", mark, ask.path, f"leaf-{ask.n}")
    return Answer(n=await ctx.step("square", square, ask.n), by=ctx.run_id)


@agent(name="family.waiting_leaf")
async def waiting_leaf(ctx: DurableContext, ask: Ask) -> Answer:
    if ask.path:
        await ctx.step("mark", mark, ask.path, f"before-{ask.n}")
    go: int = await ctx.await_event("go", type=int)
    return Answer(n=go, by=ctx.run_id)


@agent(name="family.failing_leaf")
async def failing_leaf(ctx: DurableContext, ask: Ask) -> Answer:
    raise ValueError(f"leaf {ask.n} cannot answer")


@agent(name="family.impatient_leaf")
async def impatient_leaf(ctx: DurableContext, ask: Ask) -> Answer:
    await ctx.await_event("never", timeout=0.05)
    return Answer(n=0, by=ctx.run_id)


@agent(name="family.paid_leaf")
async def paid_leaf(ctx: DurableContext, ask: Ask) -> Answer:
    await ctx.step("model call", priced, ask.n, kind="llm")
    return Answer(n=ask.n, by=ctx.run_id)


@agent(name="family.parent", delegation=DelegationPolicy())
async def parent(ctx: DurableContext, ask: Ask) -> Answer:
    return await ctx.call_agent(leaf, ask)


@agent(name="family.by_name", delegation=DelegationPolicy())
async def by_name(ctx: DurableContext, ask: Ask) -> Answer:
    answer: Answer = await ctx.call_agent("family.leaf", ask, run_id=f"{ctx.run_id}-helper")
    return answer


@agent(name="family.fan_out", delegation=DelegationPolicy(max_parallel=3))
async def fan_out(ctx: DurableContext, ask: Ask) -> list[Answer]:
    handles = [await ctx.start_agent(leaf, Ask(n=i, path=ask.path)) for i in range(1, 4)]
    return list(await asyncio.gather(*(handle.result() for handle in handles)))


@agent(name="family.waiting_parent", delegation=DelegationPolicy())
async def waiting_parent(ctx: DurableContext, ask: Ask) -> Answer:
    return await ctx.call_agent(waiting_leaf, ask)


@agent(name="family.hold_two", delegation=DelegationPolicy())
async def hold_two(ctx: DurableContext, ask: Ask) -> list[Answer]:
    first = await ctx.start_agent(waiting_leaf, Ask(n=1))
    second = await ctx.start_agent(waiting_leaf, Ask(n=2))
    try:
        return [await first, await second]
    except asyncio.CancelledError:
        try:
            await ctx.call_agent(leaf, Ask(n=3))
        except DurableRunCancelledError as refused:
            OBSERVED.append(("refused after cancel", refused.code))
        raise


@agent(name="family.leave_behind", delegation=DelegationPolicy())
async def leave_behind(ctx: DurableContext, ask: Ask) -> str:
    """Finishes with two children still waiting: they must not outlive it."""
    await ctx.start_agent(waiting_leaf, Ask(n=1))
    await ctx.start_agent(waiting_leaf, Ask(n=2))
    return "done"


@agent(name="family.fail_behind", delegation=DelegationPolicy())
async def fail_behind(ctx: DurableContext, ask: Ask) -> str:
    """Fails with a child still waiting: the child must not outlive it."""
    await ctx.start_agent(waiting_leaf, Ask(n=1))
    await ctx.step("square", square, 2)
    raise RuntimeError("the parent gave up")


@agent(name="family.catching", delegation=DelegationPolicy())
async def catching(ctx: DurableContext, ask: Ask) -> list[dict[str, Any]]:
    seen = []
    for child in (failing_leaf, impatient_leaf):
        try:
            await ctx.call_agent(child, Ask(n=ask.n))
        except DurableChildRunFailedError as failed:
            seen.append(
                {
                    "child": failed.child_run_id,
                    "type": failed.error_type,
                    "code": failed.error_code,
                    "parent_code": failed.code,
                }
            )
    return seen


@agent(name="family.uncaught", delegation=DelegationPolicy())
async def uncaught(ctx: DurableContext, ask: Ask) -> Answer:
    return await ctx.call_agent(failing_leaf, ask)


@agent(name="family.paying", delegation=DelegationPolicy())
async def paying(ctx: DurableContext, ask: Ask) -> list[Answer]:
    own = await ctx.step("model call", priced, 1, kind="llm")
    assert own["text"] == "ok"
    return [await ctx.call_agent(paid_leaf, Ask(n=n)) for n in (2, 3)]


async def _refusal(call: Any) -> str:
    try:
        await call
    except DurableDelegationError as refused:
        return refused.reason
    return "allowed"


@agent(
    name="family.refusals",
    delegation=DelegationPolicy(allowed_agents=("family.leaf",), max_calls=2, max_parallel=1),
)
async def refusals(ctx: DurableContext, ask: Ask) -> list[str]:
    """Each refusal of the policy, in the order they arise; refusals spend nothing."""
    reasons = [await _refusal(ctx.call_agent(failing_leaf, Ask()))]
    first = await ctx.start_agent(leaf, Ask(n=1))
    reasons.append(await _refusal(ctx.start_agent(leaf, Ask(n=2))))
    await first
    reasons.append(await _refusal(ctx.call_agent(leaf, Ask(n=3))))
    reasons.append(await _refusal(ctx.call_agent(leaf, Ask(n=4))))
    return reasons


@agent(name="family.undelegated")
async def undelegated(ctx: DurableContext, ask: Ask) -> str:
    return await _refusal(ctx.call_agent(leaf, Ask()))


@agent(
    name="family.first_check_wins",
    delegation=DelegationPolicy(allowed_agents=(), max_calls=0, max_depth=0),
)
async def first_check_wins(ctx: DurableContext, ask: Ask) -> str:
    return await _refusal(ctx.call_agent(leaf, Ask()))


@agent(name="family.delegating_leaf", delegation=DelegationPolicy(max_depth=5))
async def delegating_leaf(ctx: DurableContext, ask: Ask) -> str:
    """A child whose own policy allows depth 5 stays within its root's max_depth of 1."""
    return await _refusal(ctx.call_agent(leaf, Ask()))


@agent(name="family.deep_parent", delegation=DelegationPolicy())
async def deep_parent(ctx: DurableContext, ask: Ask) -> str:
    result: str = await ctx.call_agent(delegating_leaf, ask)
    return result


@agent(name="family.flaky_leaf")
async def flaky_leaf(ctx: DurableContext, ask: Ask) -> Answer:
    """Fails its first two runs: each run of it marks the file once."""
    await ctx.step("mark", mark, ask.path, "try")
    tries = await ctx.step("count the tries", count_marks, ask.path)
    if tries < 3:
        raise RuntimeError(f"try {tries} failed")
    return Answer(n=tries, by=ctx.run_id)


@agent(name="family.retrying_parent", delegation=DelegationPolicy())
async def retrying_parent(ctx: DurableContext, ask: Ask) -> Answer:
    retry = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3)
    return await ctx.call_agent(flaky_leaf, ask, retry=retry)


@agent(name="family.timing_parent", delegation=DelegationPolicy())
async def timing_parent(ctx: DurableContext, ask: Ask) -> str | None:
    try:
        await ctx.call_agent(waiting_leaf, ask, timeout=1)
    except DurableChildRunFailedError as failed:
        return failed.error_code
    return "the child answered"


@agent(name="family.impatient_parent", delegation=DelegationPolicy())
async def impatient_parent(ctx: DurableContext, ask: Ask) -> str:
    """Stops awaiting its child with a timeout of its own, and carries on."""
    try:
        await asyncio.wait_for(ctx.call_agent(waiting_leaf, ask), 1)
    except TimeoutError:
        return "gave up"
    return "the child answered"


@agent(name="family.late_parent", delegation=DelegationPolicy())
async def late_parent(ctx: DurableContext, ask: Ask) -> Answer:
    """Starts its child a moment after it began: their cancel watchers poll out of phase."""
    await ctx.sleep(0.1 * ask.n)
    return await ctx.call_agent(waiting_leaf, Ask())


@agent(name="family.middle", delegation=DelegationPolicy(max_depth=2))
async def middle(ctx: DurableContext, ask: Ask) -> Answer:
    return await ctx.call_agent(waiting_leaf, ask)


@agent(name="family.boss", delegation=DelegationPolicy(max_depth=2))
async def boss(ctx: DurableContext, ask: Ask) -> Answer:
    """A grandchild under one child, and a second child it awaits first."""
    await ctx.start_agent(middle, Ask(n=1))
    approver = await ctx.start_agent(waiting_leaf, Ask(n=2))
    return await approver


class Named(BaseModel):
    run_id: str


@agent(name="family.squatter", delegation=DelegationPolicy())
async def squatter(ctx: DurableContext, named: Named) -> str:
    """Names, as its child's id, a run that already exists and is not its child."""
    try:
        await ctx.call_agent(leaf, Ask(n=1), run_id=named.run_id)
    except DurableRunInputMismatchError as taken:
        return taken.message
    return "started"
