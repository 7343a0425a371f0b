"""What the Temporal overhead benchmark runs: the same steps through an agent and by hand.

Kept in an importable module because the workflow sandbox re-imports the
module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

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


@workflow.defn(name="bench.raw")
class RawSequential:
    """The baseline: the same activity, called with execute_activity by hand."""

    @workflow.run
    async def run(self, plan: Plan) -> int:
        total = 0
        for i in range(plan.steps):
            if plan.local:
                outcome = await workflow.execute_local_activity(
                    "bench.noop_local", i, start_to_close_timeout=TIMEOUT
                )
            else:
                outcome = await workflow.execute_activity(
                    "bench.noop", i, start_to_close_timeout=TIMEOUT
                )
            total += outcome["result"]
        return total
