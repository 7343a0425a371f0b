"""Agents the CLI answer tests drive: a step that keeps failing, a run that fails
while an event waits, and an agent whose next deploy renames a step."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from durable import DurableContext, RetryPolicy, agent, step

with workflow.unsafe.imports_passed_through():
    # Shared with this module's copies inside the workflow sandbox (see tests.shared_state).
    from tests.shared_state import shared

KNOBS: dict[str, str] = shared(__name__, "KNOBS", lambda: {"intent": "first"})
"""What the next deploy of ``answers.versioned`` calls its first step."""


class Job(BaseModel):
    attempts: int = 0
    """The step's maximum attempts; 0 retries forever."""


class PartnerDownError(Exception):
    """The partner's service answered 503."""


_QUICK = timedelta(milliseconds=50)


@step(name="answers.call_partner", retry=RetryPolicy(initial_interval=_QUICK))
async def call_partner() -> str:
    raise PartnerDownError("the partner answered 503: overloaded")


@agent(name="answers.flaky")
async def flaky(ctx: DurableContext, job: Job) -> str:
    retry = RetryPolicy(
        initial_interval=_QUICK, backoff_coefficient=1.0, maximum_attempts=job.attempts
    )
    return await ctx.step("call the partner", call_partner, retry=retry)


@step(name="answers.slow_failure", retry=RetryPolicy(maximum_attempts=1))
async def slow_failure() -> str:
    await asyncio.sleep(2)
    raise PartnerDownError("the partner closed the order")


@agent(name="answers.fails_while_waiting")
async def fails_while_waiting(ctx: DurableContext, job: Job) -> str:
    """Fails two seconds in, while an event sent meanwhile waits for the agent to settle."""
    return await ctx.step("close the order", slow_failure)


@step(name="answers.noop")
async def noop() -> str:
    return "ok"


@agent(name="answers.versioned")
async def versioned(ctx: DurableContext, job: Job) -> str:
    await ctx.step(KNOBS["intent"], noop)
    await ctx.await_event("go", timeout=timedelta(hours=1))
    return "done"


@agent(name="answers.fails_at_once")
async def fails_at_once(ctx: DurableContext, job: Job) -> str:
    """Fails in its first workflow task, before an event that came with it is applied."""
    raise PartnerDownError("the order was closed before the run began")
