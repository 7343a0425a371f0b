"""Agents for the poison-run test: one whose step kills its worker process, one that is fine.

Named in ``DURABLE_AGENT_MODULES`` by ``test_poison_run``, so worker processes host them.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from durable import DurableContext, RetryPolicy, agent, step


class Job(BaseModel):
    n: int = 1
    delay: float = 0.5
    """How long the poison step works before it kills its worker."""


@step(name="poison.note")
async def note(n: int) -> int:
    return n + 1


@step(name="poison.crash", retry=RetryPolicy(maximum_attempts=1))
async def crash(delay: float) -> None:
    await asyncio.sleep(delay)
    os._exit(3)  # as a segfault, an out-of-memory kill or a native abort would


@agent(name="poison.kills")
async def kills(ctx: DurableContext, job: Job) -> int:
    first = await ctx.step("before the crash", note, job.n)
    await ctx.step("crash the worker", crash, job.delay)
    return first


@agent(name="poison.fine")
async def fine(ctx: DurableContext, job: Job) -> int:
    return await ctx.step("work", note, job.n)
