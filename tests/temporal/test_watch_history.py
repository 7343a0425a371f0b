"""Watching a run reads its stream and adds nothing to its history or its UI timeline."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import Worker

from durable import DurableRunEndedError, LiveEvent
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, watch_stream
from tests.conformance import agents
from tests.conformance.agents import Job

STREAM_POLL = "__temporal_workflow_stream_poll"
UPDATE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
}


async def _watched_run(
    agents_client: AgentClient, client: Client, run_id: str, watchers: int
) -> tuple[list[HistoryEvent], list[list[LiveEvent]]]:
    """Run three steps around an event while ``watchers`` watch; the run's history."""
    await agents_client.start(agents.two_phase, Job(), run_id=run_id)
    seen: list[list[LiveEvent]] = [[] for _ in range(watchers)]

    async def watch(into: list[LiveEvent]) -> None:
        async for event in agents_client.watch(run_id):
            into.append(event)

    watching = [asyncio.create_task(watch(into)) for into in seen]
    # Every watcher is following the run while it waits, then while it takes its last step.
    for _ in range(400):
        if not watchers and (await agents_client.status(run_id))["waiting_for"]:
            break
        if watchers and all(any(e.kind == "waiting" for e in into) for into in seen):
            break
        await asyncio.sleep(0.025)
    await agents_client.send_event(run_id, "go", None)
    await agents_client.result(run_id)
    await asyncio.wait_for(asyncio.gather(*watching), 20)
    handle = client.get_workflow_handle(run_id)
    return [event async for event in handle.fetch_history_events()], seen


def _update_names(history: list[HistoryEvent]) -> list[str]:
    names = []
    for event in history:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            names.append(request.input.name)
    return names


async def test_three_watchers_add_no_events_to_a_runs_history(
    agents_client: AgentClient, client: Client
) -> None:
    alone, _ = await _watched_run(agents_client, client, "unwatched-run", watchers=0)
    watched, seen = await _watched_run(agents_client, client, "watched-run", watchers=3)
    print(f"history events: unwatched {len(alone)}, watched by three {len(watched)}")

    kinds = [e.kind for e in seen[0]]
    assert kinds[0] == "step_started"
    assert kinds[-1] == "run_completed"
    assert "waiting" in kinds
    assert kinds.count("step_completed") == 3
    assert all([e.seq for e in into] == list(range(1, len(kinds) + 1)) for into in seen)
    assert STREAM_POLL not in _update_names(watched)
    assert _update_names(watched) == _update_names(alone)  # only the agent's own event
    assert len(watched) == len(alone)
    assert [e.event_type for e in watched] == [e.event_type for e in alone]
    assert sum(e.event_type in UPDATE_EVENTS for e in watched) == 2  # the event's, not a watcher's


async def test_a_watch_waits_for_a_worker_then_follows_the_run(
    client: Client, task_queue: str
) -> None:
    agents_client = AgentClient(client, task_queue=task_queue)  # nobody polls it yet
    await agents_client.start(agents.pipeline, Job(n=2), run_id="unserved-run")
    seen: list[LiveEvent] = []

    async def watch() -> None:
        stream = watch_stream(client, "unserved-run", answer_within=timedelta(seconds=0.5))
        async for event in stream:
            seen.append(event)

    watching = asyncio.create_task(watch())
    await asyncio.sleep(2)  # several reads nobody answers
    assert not watching.done()
    assert seen == []
    modules = ("tests.conformance.agents",)
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(modules)]):
        await asyncio.wait_for(watching, 20)

    assert [e.kind for e in seen][-1] == "run_completed"
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))


async def test_watching_an_ended_run_with_no_worker_says_so_instead_of_hanging(
    client: Client, task_queue: str
) -> None:
    agents_client = AgentClient(client, task_queue=task_queue)
    modules = ("tests.conformance.agents",)
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(modules)]):
        await agents_client.start(agents.pipeline, Job(n=2), run_id="ended-unserved")
        await agents_client.result("ended-unserved")

    async def watch() -> list[LiveEvent]:
        stream = watch_stream(client, "ended-unserved", answer_within=timedelta(seconds=0.5))
        return [event async for event in stream]

    with pytest.raises(DurableRunEndedError) as ended:
        await asyncio.wait_for(watch(), 20)

    assert f"start a worker on task queue {task_queue!r}" in str(ended.value)
