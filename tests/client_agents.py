"""An agent only ``tests/test_clients.py`` starts, so listing it finds no other test's runs."""

from __future__ import annotations

from durable import DurableContext, agent


@agent(name="clients.numbered")
async def numbered(ctx: DurableContext, job: dict[str, int]) -> int:
    return job["n"]
