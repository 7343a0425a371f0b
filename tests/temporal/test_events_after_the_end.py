"""Events sent to Temporal runs that ended some other way than by returning."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowFailureError

from durable import DurableError, ErrorCode
from durable_agents.adapters.temporal import AgentClient
from tests.conformance import agents
from tests.conformance.agents import Job


async def test_a_cancelled_run_still_answers_not_accepted_for_a_key_it_took(
    agents_client: AgentClient, client: Client
) -> None:
    await agents_client.start(agents.two_waits, Job(), run_id="cancelled-keys")
    for _ in range(200):
        if "first" in (await agents_client.status("cancelled-keys"))["waiting_for"]:
            break
        await asyncio.sleep(0.05)
    assert await agents_client.send_event("cancelled-keys", "second", 2) is True
    handle = client.get_workflow_handle("cancelled-keys")

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    assert await agents_client.send_event("cancelled-keys", "second", 3) is False
    with pytest.raises(DurableError) as refused:
        await agents_client.send_event("cancelled-keys", "first", 1)
    assert refused.value.code == ErrorCode.RUN_ENDED
