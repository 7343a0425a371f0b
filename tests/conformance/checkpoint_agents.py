"""Agents of the context-checkpoint scenarios, at module level so every worker finds them.

``KNOBS`` lets a scenario change what an agent writes between a crash and a
resume, the way a deploy would.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from durable import DurableContext, DurableError, agent

with workflow.unsafe.imports_passed_through():
    # Shared with this module's copies inside the workflow sandbox (see tests.shared_state).
    from tests.shared_state import shared

KNOBS: dict[str, Any] = shared(__name__, "KNOBS", dict)


class Notes(BaseModel):
    topic: str
    notes: list[str]


class Task(BaseModel):
    topic: str = "refunds"


@agent(name="checkpoints.round_trip")
async def round_trip(ctx: DurableContext, task: Task) -> dict[str, Any]:
    """Every operation once: write (a model and plain JSON), list, read, delete."""
    written = await ctx.checkpoints.write("context", Notes(topic=task.topic, notes=["a", "b"]))
    await ctx.checkpoints.write("plan", ["search", "answer"])
    await ctx.checkpoints.write("plan", ["answer"])  # replaces the first
    listed = [info.name for info in await ctx.checkpoints.list()]
    plain = await ctx.checkpoints.read("context")
    typed = await ctx.checkpoints.read("context", type=Notes)
    plain["notes"].append("changed by the agent")  # a read hands out a copy
    plan = await ctx.checkpoints.read("plan")
    deleted = await ctx.checkpoints.delete("plan")
    again = await ctx.checkpoints.delete("plan")
    return {
        "step": written.step,
        "size": written.size_bytes,
        "listed": listed,
        "read": await ctx.checkpoints.read("context"),
        "typed": typed.notes,
        "plan": plan,
        "deleted": [deleted, again],
        "left": [info.name for info in await ctx.checkpoints.list()],
    }


@agent(name="checkpoints.across_a_resume")
async def across_a_resume(ctx: DurableContext, task: Task) -> dict[str, Any]:
    """Writes, waits (the scenario crashes the worker here), then reads and writes on."""
    await ctx.checkpoints.write("context", {"topic": task.topic, "turn": 1})
    await ctx.checkpoints.write("scratch", {"draft": True})
    await ctx.checkpoints.delete("scratch")
    before = [info.name for info in await ctx.checkpoints.list()]
    await ctx.await_event("go")
    seen = await ctx.checkpoints.read("context")
    await ctx.checkpoints.write("context", {"topic": task.topic, "turn": seen["turn"] + 1})
    return {"before": before, "seen": seen, "after": await ctx.checkpoints.read("context")}


@agent(name="checkpoints.reads_on_replay")
async def reads_on_replay(ctx: DurableContext, task: Task) -> dict[str, Any]:
    """Reads between two writes of one name: a replay reads what the first execution read,
    though by then the store holds the later write."""
    await ctx.checkpoints.write("context", {"turn": 1})
    first = await ctx.checkpoints.read("context")
    listed = [(info.name, info.step) for info in await ctx.checkpoints.list()]
    await ctx.checkpoints.write("context", {"turn": 2})
    await ctx.await_event("go")
    return {"first": first, "listed": listed, "last": await ctx.checkpoints.read("context")}


@agent(name="checkpoints.refusals")
async def refusals(ctx: DurableContext, task: Task) -> dict[str, Any]:
    """What is refused is refused before any position is taken; the run goes on."""
    codes: list[str] = []
    for payload in ({"score": float("nan")}, {1: "a key that is not a string"}, {"at": object()}):
        try:
            await ctx.checkpoints.write("bad", payload)
        except DurableError as error:
            codes.append(error.code)
    try:
        await ctx.checkpoints.read("missing")
    except DurableError as error:
        codes.append(error.code)
    return {
        "codes": codes,
        "deleted": await ctx.checkpoints.delete("missing"),
        "listed": await ctx.checkpoints.list(),
    }


@agent(name="checkpoints.versioned")
async def versioned(ctx: DurableContext, task: Task) -> str:
    """Writes what ``KNOBS["payload"]`` says, then waits: a resume may write something else."""
    await ctx.checkpoints.write("context", KNOBS.get("payload", {"v": 1}))
    await ctx.await_event("go")
    return "done"
