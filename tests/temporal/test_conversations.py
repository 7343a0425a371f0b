"""Conversations as Temporal sees them: child workflows, summaries, continue-as-new."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable.conversation import ConversationEvent
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.support.llm_server import ModelServer, catalog, model_server


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(catalog(server, ["ok"], priced=False)))
        yield server


async def test_a_conversation_is_a_child_workflow_an_operator_can_find(
    agents_client: AgentClient, client: Client, models: ModelServer
) -> None:
    await agents_client.start(agents.talk, Job(key="conformance.debate"), run_id="talk-ui")
    result = await agents_client.result("talk-ui")

    child = "talk-ui/conversation-0"
    listed = [w.id async for w in client.list_workflows("ParentWorkflowId = 'talk-ui'")]
    assert listed == [child]
    described = await client.get_workflow_handle(child).describe()
    assert described.workflow_type == "durable.conversation"
    assert described.parent_id == "talk-ui"
    assert await described.static_summary() == "conversation conformance.debate: alice, Bob"
    converter = client.data_converter.payload_converter
    summaries = [
        converter.from_payload(event.user_metadata.summary, str)
        async for event in client.get_workflow_handle(child).fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert summaries == ["turn 0: alice", "turn 1: Bob", "turn 2: alice", "turn 3: Bob"]
    assert result.turns == 4


async def test_a_long_conversation_continues_as_new_and_keeps_its_transcript(
    models: ModelServer, tmp_path: object
) -> None:
    # Temporal suggests continuing as new after 4,096 events; this server, after 20.
    limits = ["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=20"]
    with DevServer(extra_args=limits) as server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        agents_client = AgentClient(client, task_queue="long-talk")
        modules = ("tests.conformance.agents",)
        async with Worker(client, task_queue="long-talk", plugins=[DurableAgentsPlugin(modules)]):
            await agents_client.start(agents.talk, Job(key="conformance.long"), run_id="long")
            result = await agents_client.result("long")
            entries = [e async for e in agents_client.watch("long/conversation-0")]

        runs = [w async for w in client.list_workflows("WorkflowId = 'long/conversation-0'")]
        first = runs[-1]  # listed newest first
        closing = [
            event.event_type
            async for event in client.get_workflow_handle(
                first.id, run_id=first.run_id
            ).fetch_history_events()
        ][-1]

    assert len(runs) >= 3  # at least two continuations for twelve turns
    assert closing == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert result.turns == 12
    assert [t.index for t in result.transcript] == list(range(12))
    assert [t.speaker for t in result.transcript] == ["alice", "bob"] * 6
    assert models.requests["ok"] == 12  # no turn ran twice across the continuations
    # Each turn saw the whole transcript, carried across runs by reference.
    assert len(models.bodies[-1]["messages"]) == 1 + 11
    # The execution that continued says so, with the transcript it carried (seed 002).
    resumed = [
        ConversationEvent.model_validate(e.detail)
        for e in entries
        if (e.detail or {}).get("type") == "conversation_resumed"
    ]
    assert resumed
    for event in resumed:
        assert event.transcript
        assert event.transcript == result.transcript[: len(event.transcript)]


async def _history_bytes(client: Client, workflow_id: str) -> int:
    handle = client.get_workflow_handle(workflow_id)
    return sum([event.ByteSize() async for event in handle.fetch_history_events()])


async def test_history_grows_linearly_with_the_number_of_turns(
    agents_client: AgentClient, client: Client, models: ModelServer
) -> None:
    sizes = {}
    for turns in (10, 40):
        run_id = f"linear-{turns}"
        await agents_client.start(agents.talk, Job(key=f"conformance.turns{turns}"), run_id=run_id)
        assert (await agents_client.result(run_id)).turns == turns
        sizes[turns] = await _history_bytes(client, f"{run_id}/conversation-0")

    # Four times the turns, four times the history (plus the fixed start and end):
    # the transcript travels by reference, never inline with every turn.
    assert sizes[40] / sizes[10] <= 4.5
