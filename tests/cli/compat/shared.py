"""What every version of the agent shares: its input and its step."""

from __future__ import annotations

from pydantic import BaseModel

from durable import step


class Order(BaseModel):
    n: int = 1


@step(name="compat.add")
async def add(n: int) -> int:
    return n + 1
