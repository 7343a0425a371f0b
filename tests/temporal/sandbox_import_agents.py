"""An agent module that reads the clock while it is imported, as the sandbox imports it."""

from __future__ import annotations

from datetime import datetime

from durable import DurableContext, agent

LOADED_AT = datetime.now()
"""Read at import: in the worker that works, inside a workflow sandbox it is refused."""


@agent(name="sandbox.loaded_at")
async def loaded_at(ctx: DurableContext, input: dict[str, str]) -> str:
    return LOADED_AT.isoformat()
