"""Agents for the sandbox tests: a module that imports the clock at module level.

The module is not passed through the workflow sandbox: each run imports its own
copy there, so ``datetime.now()`` in an agent is refused, while the same call in
a step runs, as steps run as activities outside the sandbox. ``httpx`` cannot be
imported inside a sandbox at all: what the module imports is passed through.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import httpx
from pydantic import BaseModel

from durable import DurableContext, agent, step

STAMPED: list[str] = []
"""Labels the ``stamp`` step saw, in the process that ran it."""


class Label(BaseModel):
    label: str


class Stamp(BaseModel):
    label: str
    at: datetime
    nonce: str


class Stamped(BaseModel):
    started: datetime
    stamp: Stamp


@step(name="sandbox.stamp")
async def stamp(label: str) -> Stamp:
    STAMPED.append(label)
    nonce = f"{uuid.uuid4().hex}-{random.random()}@{httpx.URL('https://example.com').host}"
    return Stamp(label=label, at=datetime.now(UTC), nonce=nonce)


@agent(name="sandbox.reads_the_clock")
async def reads_the_clock(ctx: DurableContext, input: Label) -> str:
    return f"{input.label} at {datetime.now().isoformat()}"


@agent(name="sandbox.asks_the_context")
async def asks_the_context(ctx: DurableContext, input: Label) -> Stamped:
    started = await ctx.now()
    stamped = await ctx.step("stamp", stamp, input.label)
    return Stamped(started=started, stamp=stamped)
