"""A user's own workflow and activity, written with plain temporalio and no project code.

The plugin test hosts them on the same worker as the agents.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Greeter:
    @workflow.run
    async def run(self, name: str) -> str:
        loud = await workflow.execute_activity(
            shout, f"hello {name}", start_to_close_timeout=timedelta(seconds=10)
        )
        return f"{loud}!"
