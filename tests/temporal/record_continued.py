"""Record the last execution of a run that continued as new, for the replay test.

    python -m tests.temporal.record_continued

Its history starts with what the run carried (``RunCarry``), so replaying it
pins that format and the replay of carried positions (caught failures, child
runs, parallel branches) against changes to the workflow code. Record it again
only when such a change is meant to break runs in flight.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.histories.record import _without_machine_details
from tests.temporal.long_agents import LongJob, long_run

HISTORY = Path(__file__).resolve().parents[1] / "histories" / "continued.json"
JOB = LongJob(steps=40, wait_at=-1, children_at=10, branches_at=20)
"""No wait; child runs and parallel branches early, so the last execution replays them."""
SUGGEST_AFTER = 100
"""History events after which the recording server suggests continuing as new."""


async def record() -> None:
    limit = f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}"
    with DevServer(extra_args=["--dynamic-config-value", limit]) as server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        modules = ("tests.temporal.long_agents",)
        async with Worker(client, task_queue="record", plugins=[DurableAgentsPlugin(modules)]):
            runs = AgentClient(client, task_queue="record")
            await runs.start(long_run, JOB, run_id="continued")
            await runs.result("continued")
        history = await client.get_workflow_handle("continued").fetch_history()
    data = _without_machine_details(json.loads(history.to_json()))
    text = json.dumps(data, indent=1).replace(f"@{socket.gethostname()}", "@recorder")
    HISTORY.write_text(text + "\n")
    print(f"recorded the last of the executions of run continued in {HISTORY}")


if __name__ == "__main__":
    asyncio.run(record())
