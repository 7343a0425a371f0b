"""Agents of the Temporal checkpoint tests: large payloads, and runs that continue as new."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from durable import DurableContext, agent, step

MARKER = "a-checkpoint-payload-that-must-stay-out-of-history"


class Phase(BaseModel):
    phase: int = 1
    size: int = 0
    steps: int = 0
    wait: bool = False
    """Phase 2 waits for the event ``go`` before it reads what phase 1 wrote."""


@step(name="temporal_checkpoints.add_one")
async def add_one(n: int) -> int:
    return n + 1


@agent(name="temporal_checkpoints.large")
async def large(ctx: DurableContext, job: Phase) -> list[str]:
    """Writes a large checkpoint four times over: history keeps four references, no payload."""
    for turn in range(4):
        text = f"{MARKER}-{turn}-" + "x" * job.size
        await ctx.checkpoints.write("context", {"turn": turn, "text": text})
    return [info.name for info in await ctx.checkpoints.list()]


@agent(name="temporal_checkpoints.continues")
async def continues(ctx: DurableContext, job: Phase) -> dict[str, Any]:
    """Phase 1 writes, then continues as new itself; phase 2 reads what phase 1 wrote, and
    takes ``job.steps`` steps (on a server that suggests it, continuing as new by itself)."""
    if job.phase == 1:
        await ctx.checkpoints.write("context", {"summary": "what phase 1 learned"})
        await ctx.checkpoints.write("scratch", [1])
        await ctx.checkpoints.delete("scratch")
        await ctx.continue_as_new(Phase(phase=2, steps=job.steps, wait=job.wait))
    seen = [info.name for info in await ctx.checkpoints.list()]
    if job.wait:
        await ctx.await_event("go")
    context = await ctx.checkpoints.read("context")
    trail: list[list[str]] = []
    total = 0
    for index in range(job.steps):
        total = await ctx.step(f"add {index}", add_one, total)
        if index % 25 == 0:
            await ctx.checkpoints.write("progress", {"index": index})
            names = [info.name for info in await ctx.checkpoints.list()]
            summary = (await ctx.checkpoints.read("context"))["summary"]
            trail.append([*names, summary, str((await ctx.checkpoints.read("progress"))["index"])])
    return {"seen": seen, "context": context, "trail": trail, "total": total}
