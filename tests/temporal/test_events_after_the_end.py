"""Events sent to Temporal runs that ended some other way than by returning."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer

from durable import DurableError, ErrorCode
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import EVENTS_MEMO, AgentClient
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


async def test_a_run_that_took_no_event_ends_without_a_memo_update(
    agents_client: AgentClient, client: Client
) -> None:
    """No event accepted: nothing for the memo, and no visibility write at the end."""
    await agents_client.start(agents.pipeline, Job(n=2), run_id="no-events")
    assert (await agents_client.result("no-events"))["total"] == 3
    handle = client.get_workflow_handle("no-events")
    history = await handle.fetch_history()
    kinds = {event.event_type for event in history.events}
    assert EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED not in kinds
    assert EVENTS_MEMO not in await (await handle.describe()).memo()
    with pytest.raises(DurableError) as refused:
        await agents_client.send_event("no-events", "go", 1)
    assert refused.value.code == ErrorCode.RUN_ENDED
    replayed = await Replayer(
        workflows=[], plugins=[DurableAgentsPlugin(["tests.conformance.agents"])]
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None


async def test_a_run_that_took_an_event_keeps_its_key_in_the_memo(
    agents_client: AgentClient, client: Client
) -> None:
    await agents_client.start(agents.two_waits, Job(), run_id="took-events")
    assert await agents_client.send_event("took-events", "first", 1) is True
    assert await agents_client.send_event("took-events", "second", 2) is True
    assert await agents_client.result("took-events") == [1, 2]
    memo = await (await client.get_workflow_handle("took-events").describe()).memo_value(
        EVENTS_MEMO
    )
    assert memo == ["first", "second"]
    assert await agents_client.send_event("took-events", "first", 3) is False
