"""Agents and steps of the step-heartbeat tests, importable by worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from durable import DurableContext, RetryPolicy, agent, step
from durable_agents.activities._heartbeat import thread_heartbeats

QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)


class Journal(BaseModel):
    path: str
    """A file each execution of the step appends a line to: attempt, pid, wall-clock time."""


@step
async def stalls_on_its_first_attempt(path: str) -> int:
    """Hangs on attempt 1 (its worker is killed meanwhile); later attempts return the pid."""
    attempt = activity.info().attempt
    with Path(path).open("a") as journal:
        journal.write(f"{attempt} {os.getpid()} {time.time()}\n")
    if attempt == 1:
        await asyncio.sleep(3600)
    return os.getpid()


@agent(name="heartbeat.crash")
async def crash(ctx: DurableContext, journal: Journal) -> int:
    return await ctx.step("run until the worker dies", stalls_on_its_first_attempt, journal.path)


class Nap(BaseModel):
    seconds: float


@step(heartbeat=1, retry=QUICK_RETRY)
async def blocking_nap(seconds: float) -> int:
    """Blocks the event loop for longer than its heartbeat timeout."""
    # Blocking on purpose: the heartbeat must survive a starved event loop.
    time.sleep(seconds)  # noqa: ASYNC251
    return activity.info().attempt


@step(heartbeat=1, retry=QUICK_RETRY)
async def busy_nap(seconds: float) -> int:
    """Keeps the event loop busy with Python code for longer than its heartbeat timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return activity.info().attempt


@step(heartbeat=1, retry=QUICK_RETRY)
async def quiet_nap(seconds: float) -> int:
    """Awaits for longer than its heartbeat timeout without heartbeating itself."""
    await asyncio.sleep(seconds)
    return activity.info().attempt


@step
async def heartbeats_from_a_thread() -> bool:
    return thread_heartbeats()


@agent(name="heartbeat.naps")
async def naps(ctx: DurableContext, nap: Nap) -> list[Any]:
    return [
        await ctx.step("block the event loop", blocking_nap, nap.seconds),
        await ctx.step("keep the event loop busy", busy_nap, nap.seconds),
        await ctx.step("wait quietly", quiet_nap, nap.seconds),
        await ctx.step("say where heartbeats come from", heartbeats_from_a_thread),
    ]


@step(heartbeat=1, retry=QUICK_RETRY)
async def checkpoints_then_stalls(seconds: float) -> list[Any]:
    """Heartbeats a checkpoint, then goes quiet: its next attempt sees the checkpoint."""
    info = activity.info()
    if info.attempt == 1:
        activity.heartbeat("checkpoint")
        await asyncio.sleep(seconds)
    return [info.attempt, *info.heartbeat_details]


@agent(name="heartbeat.details")
async def details(ctx: DurableContext, nap: Nap) -> list[Any]:
    return await ctx.step("checkpoint, then stall", checkpoints_then_stalls, nap.seconds)


@step
async def plain() -> str:
    return "plain"


@step(heartbeat=4)
async def own_heartbeat() -> str:
    return "own"


@step(local=True)
async def local_one() -> str:
    return "local"


class Nothing(BaseModel):
    pass


@agent(name="heartbeat.options")
async def options(ctx: DurableContext, _: Nothing) -> list[str]:
    return [
        await ctx.step("default heartbeat", plain),
        await ctx.step("the step's own heartbeat", own_heartbeat),
        await ctx.step("the call's heartbeat", own_heartbeat, heartbeat=6),
        await ctx.step("a local activity", local_one),
    ]
