"""The agent the drain tests run in worker processes: one step that naps for a few seconds."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from durable import DurableContext, RetryPolicy, agent, step


class Nap(BaseModel):
    journal: str
    """A file the step appends ``start PID TIME`` and ``end PID TIME`` lines to."""
    seconds: float
    wait_for: str | None = None
    """An event to await before the step, so a run can be left for a worker to resume."""


@step(timeout=60, retry=RetryPolicy(maximum_attempts=3))
async def journaled_nap(journal: str, seconds: float) -> int:
    """Naps ``seconds``; returns the pid of the process that ran it."""
    with Path(journal).open("a") as out:
        out.write(f"start {os.getpid()} {time.time()}\n")
    await asyncio.sleep(seconds)
    with Path(journal).open("a") as out:
        out.write(f"end {os.getpid()} {time.time()}\n")
    return os.getpid()


@agent(name="deploy.nap")
async def nap(ctx: DurableContext, job: Nap) -> int:
    if job.wait_for is not None:
        await ctx.await_event(job.wait_for)
    return await ctx.step(
        "nap while the worker is told to stop", journaled_nap, job.journal, job.seconds
    )
