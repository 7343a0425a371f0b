"""Child runs as Temporal shows them: child workflows an operator finds and reads."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient
from tests.conformance.family import Ask

MODULES = ("tests.conformance.family",)


async def test_a_child_is_a_child_workflow_with_its_parent_and_summary(client: Client) -> None:
    task_queue = f"family-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=task_queue)
    run_id = f"tree-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await agents.start("family.parent", Ask(n=2), run_id=run_id)
        await agents.result(run_id)

    child = f"{run_id}/family.leaf-0"
    described = await client.get_workflow_handle(child).describe()
    assert described.workflow_type == "family.leaf"
    assert described.parent_id == run_id
    assert (await described.static_summary() or "").startswith("family.leaf: ")
    # Read on its own, the child's result is its agent's, not the envelope its parent got.
    assert (await agents.result(child)).n == 4


async def test_status_without_a_worker_reads_the_child_step_from_history(client: Client) -> None:
    task_queue = f"family-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=task_queue)
    run_id = f"tree-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await agents.start("family.waiting_parent", Ask(n=1), run_id=run_id)
        for _ in range(400):
            if await agents.children(run_id):
                break
            await asyncio.sleep(0.05)

    snapshot = await agents.snapshot(run_id)  # no worker polls the task queue now

    assert snapshot.unanswered is not None
    (step,) = snapshot.steps
    assert (step.step_index, step.intent, step.kind, step.status) == (
        0,
        "agent:family.waiting_leaf",
        "agent",
        "running",
    )
    await agents.cancel(run_id, "test over")
