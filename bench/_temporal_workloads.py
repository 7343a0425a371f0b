"""What the Temporal overhead benchmark runs through this project: an agent of trivial steps.

Its baseline, the same steps in Temporal written by hand, is ``bench._plain_temporal``.
Kept in an importable module because the workflow sandbox re-imports the
module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from durable import DurableContext, agent, step

TIMEOUT = timedelta(seconds=30)


class Plan(BaseModel):
    steps: int
    local: bool = False


@step(name="bench.noop", timeout=TIMEOUT)
async def noop(i: int) -> int:
    return i


@step(name="bench.noop_local", timeout=TIMEOUT, local=True)
async def noop_local(i: int) -> int:
    return i


@agent(name="bench.sequential")
async def sequential(ctx: DurableContext, plan: Plan) -> int:
    total = 0
    for i in range(plan.steps):
        fn = noop_local if plan.local else noop
        total += await ctx.step("noop", fn, i)
    return total
