"""The agent as the runs in flight started it."""

from __future__ import annotations

from durable import DurableContext, agent
from tests.cli.compat.shared import Order, add

__all__ = ["Order", "order"]


@agent(name="compat.order")
async def order(ctx: DurableContext, job: Order) -> int:
    first = await ctx.step("reserve stock", add, job.n)
    await ctx.await_event("paid")
    return await ctx.step("ship", add, first)
