"""Record the workflow histories the replay tests replay.

    python -m tests.histories.record

Run it again only when a change to the workflow code is meant to break replay
of runs in flight; the replay tests exist to catch that change otherwise.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from adapters.temporal import AgentClient, DevServer
from examples.refund import RefundRequest, refund_review
from tests.conformance import agents
from tests.conformance.agents import Job
from worker import temporal_worker

HERE = Path(__file__).resolve().parent
MODULES = ("examples.refund", "tests.conformance.agents")


_MACHINE_FIELDS = {"stackTrace": "", "identity": "recorder"}
"""Fields that describe the recording machine (paths, host); replay needs none of them."""


def _without_machine_details(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _MACHINE_FIELDS[k] if k in _MACHINE_FIELDS else _without_machine_details(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_machine_details(v) for v in value]
    return value


async def record() -> None:
    with DevServer() as server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with temporal_worker(client, task_queue="record", agent_modules=MODULES):
            runs = AgentClient(client, task_queue="record")
            await runs.start(
                refund_review,
                RefundRequest(order_id="A-1001", amount_cents=2_500, reason="damaged"),
                run_id="refund-review",
            )
            while not (await runs.status("refund-review"))["waiting_for"]:
                await asyncio.sleep(0.1)
            await runs.send_event(
                "refund-review", "approval", {"approved": True, "reviewer": "dana"}
            )
            await runs.result("refund-review")

            agents.KNOBS.update(wait=False)
            await runs.start(agents.versioned, Job(n=2), run_id="versioned")
            await runs.result("versioned")

            await runs.start(agents.retrying, Job(n=1), run_id="retrying")
            await runs.result("retrying")

            for run_id in ("refund-review", "versioned", "retrying"):
                history = await client.get_workflow_handle(run_id).fetch_history()
                text = json.dumps(_without_machine_details(json.loads(history.to_json())), indent=1)
                # Sticky task queues are named after the recording host.
                text = text.replace(f"@{socket.gethostname()}", "@recorder")
                (HERE / f"{run_id}.json").write_text(text + "\n")
                print(f"recorded {run_id}")


if __name__ == "__main__":
    asyncio.run(record())
