"""How conversations grow Temporal history, and what a turn costs over a bare activity.

    python -m bench.conversation_history [--tokens N]

On one embedded dev server, against one local streaming model server, it runs
two-party conversations of 50, 100 and 200 turns through ``ctx.conversation``
(a child workflow whose turns pass the transcript by blob reference), and the
same turns as a hand-written workflow calling the ``llm.chat`` activity with
the whole transcript inline. It prints the history bytes of each (the
conversation's child workflow; all its runs if it continued as new), the
bytes per turn, the ratio of 200 turns to 50 (4.0 is linear), and the time per
turn of each, with their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench._conversation_workloads import LENGTHS, Debate, RawDebate, debate
from bench._model_server import Timing, model_server
from durable_agents import DurableAgentsPlugin
from durable_agents.activities.steps import run_step
from durable_agents.adapters.temporal import AgentClient, DevServer, workflow_runner

QUEUE = "bench-conversations"
RAW_QUEUE = "bench-conversations-raw"
MODULES = ("bench._conversation_workloads",)


async def history_bytes(client: Client, workflow_id: str) -> int:
    """Bytes of every event of every run of ``workflow_id``."""
    total = 0
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            total += event.ByteSize()
    return total


async def ours(client: Client, agents: AgentClient, turns: int) -> tuple[int, float]:
    run_id = f"debate-{turns}-{uuid.uuid4().hex[:6]}"
    began = time.perf_counter()
    await agents.start(debate, Debate(turns=turns), run_id=run_id)
    result = await agents.result(run_id)
    elapsed = time.perf_counter() - began
    assert result.turns == turns, result.halted
    return await history_bytes(client, f"{run_id}/conversation-0"), elapsed


async def raw(client: Client, turns: int) -> tuple[int, float]:
    run_id = f"raw-{turns}-{uuid.uuid4().hex[:6]}"
    began = time.perf_counter()
    handle = await client.start_workflow(
        RawDebate.run, Debate(turns=turns), id=run_id, task_queue=RAW_QUEUE
    )
    await handle.result()
    return await history_bytes(client, run_id), time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=40, help="tokens per model answer")
    args = parser.parse_args()
    timing = Timing(first_token=0.0, per_token=0.0, tokens=args.tokens)
    with tempfile.TemporaryDirectory() as blobs:
        os.environ["DURABLE_BLOBS"] = blobs
        async with model_server(timing) as base_url:
            os.environ["DURABLE_MODELS"] = json.dumps(
                {"bench": {"base_url": base_url, "model": "m"}}
            )
            with DevServer() as server:
                client = await Client.connect(
                    server.address, data_converter=pydantic_data_converter
                )
                agents = AgentClient(client, task_queue=QUEUE)
                raw_worker = Worker(
                    client,
                    task_queue=RAW_QUEUE,
                    workflows=[RawDebate],
                    activities=[run_step],
                    workflow_runner=workflow_runner(),
                )
                ours_worker = Worker(
                    client, task_queue=QUEUE, plugins=[DurableAgentsPlugin(MODULES)]
                )
                async with ours_worker, raw_worker:
                    await ours(client, agents, 50)  # warm both paths
                    await raw(client, 50)
                    print(f"two-party conversations, {args.tokens} tokens per answer")
                    sizes: dict[int, tuple[int, int]] = {}
                    for turns in LENGTHS:
                        mine, mine_s = await ours(client, agents, turns)
                        theirs, theirs_s = await raw(client, turns)
                        sizes[turns] = (mine, theirs)
                        print(
                            f"  {turns:>3} turns  conversation {mine / 1024:8.1f} KiB "
                            f"({mine / turns:6.0f} B/turn, {mine_s / turns * 1000:5.1f} "
                            f"ms/turn)   transcript inline {theirs / 1024:8.1f} KiB "
                            f"({theirs / turns:6.0f} B/turn, {theirs_s / turns * 1000:5.1f} "
                            f"ms/turn)   time ratio {mine_s / theirs_s:4.2f}"
                        )
    growth = sizes[200][0] / sizes[50][0]
    inline = sizes[200][1] / sizes[50][1]
    print(
        f"  history for 200 turns over 50: conversation {growth:.2f} (linear is 4.00, "
        f"the bound 4.50), transcript inline {inline:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
