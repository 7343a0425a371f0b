"""The baseline of the Temporal overhead benchmark: Temporal as written by hand.

Only temporalio and the standard library, nothing of this project: its own
activity doing the bench step's work (return its argument), its own workflow
running the steps one after another with ``execute_activity``, hosted by a plain
``Worker`` with the default data converter and the default sandbox. Kept in an
importable module because the workflow sandbox re-imports the module that
defines a workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

__all__ = ["PlainPlan", "PlainSequential", "plain_noop", "plain_noop_local"]

TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class PlainPlan:
    steps: int
    local: bool = False


@activity.defn(name="plain.noop")
async def plain_noop(i: int) -> int:
    return i


@activity.defn(name="plain.noop_local")
async def plain_noop_local(i: int) -> int:
    return i


@workflow.defn(name="plain.sequential")
class PlainSequential:
    """``plan.steps`` activities (or local activities), one after another."""

    @workflow.run
    async def run(self, plan: PlainPlan) -> int:
        total = 0
        for i in range(plan.steps):
            if plan.local:
                total += await workflow.execute_local_activity(
                    plain_noop_local, i, start_to_close_timeout=TIMEOUT
                )
            else:
                total += await workflow.execute_activity(
                    plain_noop, i, start_to_close_timeout=TIMEOUT
                )
        return total
