"""Agents and steps of the chat tests, hosted by their Temporal worker too."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from durable import DelegationPolicy, DurableContext, RetryPolicy, agent, step

calls: Counter[str] = Counter()
"""How often ``counted`` ran, per key: the worker is this process on every substrate."""


class Job(BaseModel):
    key: str


@step(retry=RetryPolicy(maximum_attempts=1))
async def counted(key: str) -> int:
    """Fails the first time it runs for ``key``, then answers how often it ran."""
    calls[key] += 1
    if calls[key] == 1:
        raise RuntimeError(f"the first call for {key} fails")
    return calls[key]


@agent(name="chat-tests.fails_once")
async def fails_once(ctx: DurableContext, job: Job) -> int:
    return await ctx.step("count", counted, job.key)


@agent(name="chat-tests.helper")
async def helper(ctx: DurableContext, job: Job) -> int:
    return 1


@agent(name="chat-tests.parent_fails", delegation=DelegationPolicy())
async def parent_fails(ctx: DurableContext, job: Job) -> int:
    await ctx.call_agent(helper, job)
    raise RuntimeError("the parent failed after its child")


@step(name="chat-tests.no_text")
async def no_text(n: int) -> int:
    """A producer whose answer has no text."""
    return n


@step(name="chat-tests.two_arguments")
async def two_arguments(a: int, b: int) -> str:
    """A producer that takes two arguments where a turn gives one."""
    return f"{a}{b}"
