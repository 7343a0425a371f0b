"""What an operator sees in the Temporal UI: types, summaries, search attributes, details."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from durable_agents.adapters.temporal import AGENT_NAME, PROJECT_ID, WAITING_FOR, AgentClient
from tests.conformance import agents
from tests.conformance.agents import Job


async def test_runs_read_well_in_the_ui(agents_client: AgentClient, client: Client) -> None:
    await agents_client.start(agents.two_phase, Job(), run_id="ui-run", project_id="ui-project")
    for _ in range(200):
        if (await agents_client.status("ui-run"))["waiting_for"]:
            break
        await asyncio.sleep(0.05)
    handle = client.get_workflow_handle("ui-run")
    waiting = await handle.describe()

    assert waiting.workflow_type == "conformance.two_phase"  # the agent's name
    assert await waiting.static_summary() == "conformance.two_phase: conformance.two_phase"
    attributes = waiting.typed_search_attributes
    assert attributes.get(AGENT_NAME) == "conformance.two_phase"
    assert attributes.get(PROJECT_ID) == "ui-project"
    assert attributes.get(WAITING_FOR) == "go"

    await agents_client.send_event("ui-run", "go", None)
    await agents_client.result("ui-run")
    done = await handle.describe()
    assert done.typed_search_attributes.get(WAITING_FOR) is None

    converter = client.data_converter.payload_converter
    summaries = [
        converter.from_payload(event.user_metadata.summary, str)
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert summaries == ["first", "second", "third"]  # each step's intent
