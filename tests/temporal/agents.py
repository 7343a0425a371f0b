"""Agents used only by the Temporal integration tests."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from durable import DurableContext, agent


class Wait(BaseModel):
    seconds: float


@agent(name="temporal.long_wait")
async def long_wait(ctx: DurableContext, wait: Wait) -> str:
    """Waits hours for an approval; on the time-skipping server that takes no time."""
    try:
        await ctx.await_event("approval", timeout=timedelta(seconds=wait.seconds))
    except Exception as exc:
        return type(exc).__name__
    return "approved"


@agent(name="temporal.long_sleep")
async def long_sleep(ctx: DurableContext, wait: Wait) -> float:
    before = await ctx.now()
    await ctx.sleep(wait.seconds)
    return (await ctx.now() - before).total_seconds()


class Nothing(BaseModel):
    pass


@agent(name="temporal.misuse")
async def misuse(ctx: DurableContext, _: Nothing) -> str:
    """Reads the wall clock inside the workflow: the sandbox refuses it."""
    import datetime as real_datetime

    return real_datetime.datetime.now().isoformat()


@agent(name="temporal.file_misuse")
async def file_misuse(ctx: DurableContext, _: Nothing) -> str:
    """Does I/O inside the workflow: the sandbox refuses it."""
    with open("/etc/hostname") as handle:
        return handle.read()
