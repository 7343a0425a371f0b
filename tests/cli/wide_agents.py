"""An agent whose step intent is wider than any table column, for the table tests."""

from __future__ import annotations

from durable import DurableContext, agent, step

LONG_INTENT = "write the note for the reviewer, with every detail the refund desk needs"


@step(name="wide.note")
async def note() -> str:
    return "noted"


@agent(name="wide.long_intent")
async def long_intent(ctx: DurableContext, job: dict[str, int]) -> str:
    return await ctx.step(LONG_INTENT, note)
