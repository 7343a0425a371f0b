"""Agents used only by the Temporal integration tests."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import timedelta

from pydantic import BaseModel

from durable import DurableContext, RetryPolicy, agent, step


class Wait(BaseModel):
    seconds: float


@agent(name="temporal.long_wait")
async def long_wait(ctx: DurableContext, wait: Wait) -> str:
    """Waits hours for an approval; on the time-skipping server that takes no time."""
    try:
        await ctx.await_event("approval", timeout=timedelta(seconds=wait.seconds))
    except Exception as exc:
        return type(exc).__name__
    return "approved"


@agent(name="temporal.long_sleep")
async def long_sleep(ctx: DurableContext, wait: Wait) -> float:
    before = await ctx.now()
    await ctx.sleep(wait.seconds)
    return (await ctx.now() - before).total_seconds()


class Nothing(BaseModel):
    pass


@agent(name="temporal.misuse")
async def misuse(ctx: DurableContext, _: Nothing) -> str:
    """Reads the wall clock inside the workflow: the sandbox refuses it."""
    import datetime as real_datetime

    return real_datetime.datetime.now().isoformat()


@agent(name="temporal.file_misuse")
async def file_misuse(ctx: DurableContext, _: Nothing) -> str:
    """Does I/O inside the workflow: the sandbox refuses it."""
    with open("/etc/hostname") as handle:
        return handle.read()


PARTNER_KEY = "PARTNER_API_KEY"
"""A secret in the worker's configuration, read by the step that needs it."""
ATTEMPTS: dict[str, int] = {}


class Order(BaseModel):
    order_id: str


@step(retry=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3))
async def sign_order(order_id: str) -> str:
    key = os.environ[PARTNER_KEY]  # from the worker's configuration, never an argument
    ATTEMPTS[order_id] = ATTEMPTS.get(order_id, 0) + 1
    if ATTEMPTS[order_id] == 1:
        raise ConnectionError("the partner's signing service is unavailable")
    return hmac.new(key.encode(), order_id.encode(), hashlib.sha256).hexdigest()[:16]


@agent(name="temporal.signed")
async def signed(ctx: DurableContext, order: Order) -> str:
    return await ctx.step("sign the order with the partner's key", sign_order, order.order_id)
