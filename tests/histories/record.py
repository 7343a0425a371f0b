"""Record the workflow histories the replay tests replay.

    python -m tests.histories.record [NAME ...]

Run it again only when a change to the workflow code is meant to break replay
of runs in flight; the replay tests exist to catch that change otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable import DurableRunCancelledError
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from durable_agents.examples.refund import RefundRequest, refund_review
from tests.conformance import agents, family
from tests.conformance.agents import Job
from tests.conformance.family import Ask
from tests.support.llm_server import catalog, model_server

HERE = Path(__file__).resolve().parent
MODULES = ("durable_agents.examples.refund", "tests.conformance.agents", "tests.conformance.family")


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


async def _refund_review(runs: AgentClient) -> list[str]:
    await runs.start(
        refund_review,
        RefundRequest(order_id="A-1001", amount_cents=2_500, reason="damaged"),
        run_id="refund-review",
    )
    while not (await runs.status("refund-review"))["waiting_for"]:
        await asyncio.sleep(0.1)
    await runs.decide("refund-review", "approve", decided_by="dana", reason="photos attached")
    await runs.result("refund-review")
    return ["refund-review"]


async def _versioned(runs: AgentClient) -> list[str]:
    agents.KNOBS.update(wait=False)
    await runs.start(agents.versioned, Job(n=2), run_id="versioned")
    await runs.result("versioned")
    return ["versioned"]


async def _retrying(runs: AgentClient) -> list[str]:
    await runs.start(agents.retrying, Job(n=1), run_id="retrying")
    await runs.result("retrying")
    return ["retrying"]


async def _fan_out(runs: AgentClient) -> list[str]:
    await runs.start(family.fan_out, Ask(), run_id="fan-out")
    await runs.result("fan-out")
    return ["fan-out", "fan-out/family.leaf-0"]


async def _cancelled(runs: AgentClient) -> list[str]:
    await runs.start(family.hold_two, Ask(), run_id="cancelled")
    while len(await runs.children("cancelled")) < 2:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # both children wait for their event
    await runs.cancel("cancelled", "recorded")
    with contextlib.suppress(DurableRunCancelledError):
        await runs.result("cancelled")
    return ["cancelled"]


async def _conversation(runs: AgentClient) -> list[str]:
    async with model_server() as server:
        os.environ["DURABLE_MODELS"] = json.dumps(catalog(server, ["ok"], priced=False))
        await runs.start(agents.talk, Job(key="conformance.debate", n=7), run_id="talk")
        await runs.result("talk")
    return ["talk", "talk/conversation-0"]


RECORDERS = {
    "refund-review": _refund_review,
    "versioned": _versioned,
    "retrying": _retrying,
    "fan-out": _fan_out,
    "cancelled": _cancelled,
    "conversation": _conversation,
}
"""Each recorder runs its scenario and names the workflows whose histories it keeps."""


async def record(names: list[str]) -> None:
    with DevServer() as server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with Worker(client, task_queue="record", plugins=[DurableAgentsPlugin(MODULES)]):
            runs = AgentClient(client, task_queue="record")
            for name in names:
                for run_id in await RECORDERS[name](runs):
                    history = await client.get_workflow_handle(run_id).fetch_history()
                    data = _without_machine_details(json.loads(history.to_json()))
                    text = json.dumps(data, indent=1)
                    # Sticky task queues are named after the recording host.
                    text = text.replace(f"@{socket.gethostname()}", "@recorder")
                    (HERE / f"{run_id.replace('/', '--')}.json").write_text(text + "\n")
                    print(f"recorded {run_id}")


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(RECORDERS)
    unknown = sorted(set(wanted) - set(RECORDERS))
    if unknown:
        sys.exit(f"unknown histories {unknown}; choose among {sorted(RECORDERS)}")
    asyncio.run(record(wanted))
