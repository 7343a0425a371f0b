"""The agents ``bench.llm_overhead`` times: model calls through ``chat``."""

from __future__ import annotations

import time

from pydantic import BaseModel
from temporalio import workflow

from durable import DurableContext, agent
from durable_agents.activities.llm import chat

MARKS: dict[str, list[tuple[float, float]]] = {}
"""Per local run: when each call started and returned (``perf_counter``), in process."""


class Calls(BaseModel):
    calls: int = 1


@agent(name="bench.llm_calls")
async def llm_calls(ctx: DurableContext, job: Calls) -> int:
    """Makes ``job.calls`` model calls in a row, one step each."""
    # Workflow code may not read clocks; on Temporal the bench times whole runs instead.
    marks = None if workflow.in_workflow() else MARKS.setdefault(ctx.run_id, [])
    for i in range(job.calls):
        began = 0.0 if marks is None else time.perf_counter()
        await chat(ctx, f"call {i}", model="bench", messages=f"question {i}")
        if marks is not None:
            marks.append((began, time.perf_counter()))
    return job.calls
