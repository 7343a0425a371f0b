"""The fault suite's agent: steps that append to a ledger file, so every attempt is seen.

Each step appends a ``start`` line, naps, and appends a ``done`` line, each line
``<kind> <run> <step> <pid> <unix time>`` written with ``O_APPEND`` in one
``write`` (lines from several processes never interleave). The nap is what lets
a kill land mid-step. Workers host it through ``DURABLE_AGENT_MODULES``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from pydantic import BaseModel

from durable import DurableContext, RetryPolicy, agent, step

__all__ = ["MODULE", "Job", "append", "ledger_run", "ledger_step"]

MODULE = "bench._faults_agents"
"""This module's name, for ``DURABLE_AGENT_MODULES``."""


class Job(BaseModel):
    """One run of ``faults.ledger``: its id again (the steps write it), its ledger, its size."""

    run: str
    ledger: str
    steps: int
    nap: float


def append(ledger: str, kind: str, run: str, index: int) -> None:
    """One ledger line, appended atomically."""
    line = f"{kind} {run} {index} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# A 3 s heartbeat: on Temporal a killed worker's step runs again within seconds; quick
# retries, so a retried step does not wait out the default backoff.
@step(
    name="faults.ledger_step",
    timeout=60,
    heartbeat=3,
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=0),
)
async def ledger_step(ledger: str, run: str, index: int, nap: float) -> int:
    append(ledger, "start", run, index)
    await asyncio.sleep(nap)
    append(ledger, "done", run, index)
    return index


@agent(name="faults.ledger")
async def ledger_run(ctx: DurableContext, job: Job) -> int:
    """``job.steps`` ledger steps one after another; returns the sum of their indexes."""
    total = 0
    for index in range(job.steps):
        total += await ctx.step(f"step {index}", ledger_step, job.ledger, job.run, index, job.nap)
    return total
