"""Reading captured spans as a tree: names and parent/child structure, in start order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from durable import DurableClient

Tree = tuple[str, tuple[Any, ...]]


def tree(spans: Sequence[ReadableSpan], root: ReadableSpan) -> Tree:
    """``(name, children)`` from ``root`` down, children in the order they started."""
    assert root.context is not None
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    return root.name, tuple(tree(spans, child) for child in children)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


EXPECTED: Tree = (
    "caller",
    (
        (
            "durable.run",
            (
                ("durable.step", ()),
                ("durable.step", ()),
                ("durable.step", (("chat ok", ()),)),
                ("durable.wait", ()),
                ("durable.child", (("durable.run", (("durable.step", ()),)),)),
            ),
        ),
    ),
)
"""A run with two steps, a model call, an approval and a child run, under its caller."""


async def approve_when_asked(client: DurableClient, run_id: str, *, timeout: float = 20) -> None:
    """Wait for the run's approval to be pending, then approve it."""
    async with asyncio.timeout(timeout):
        while True:
            pending = [a for a in await client.approvals() if a.run_id == run_id]
            if pending:
                await client.decide(pending[0].approval_id, "approve", decided_by="dana")
                return
            await asyncio.sleep(0.05)
