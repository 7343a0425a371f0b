"""Bad input reaching Temporal runs: each is refused with a reason, and no run is harmed."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from durable import (
    DurableError,
    DurableRegistrationError,
    DurableRunFailedError,
    DurableRunInputMismatchError,
    DurableRunManifest,
    ErrorCode,
    TaskSpec,
)
from durable_agents.adapters.temporal import EVENT_SIGNAL, EVENT_UPDATE, AgentClient
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.temporal.agents import Nothing, file_misuse, misuse


async def _waiting_for(client: AgentClient, run_id: str, key: str) -> None:
    for _ in range(200):
        if key in (await client.status(run_id))["waiting_for"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never waited for {key}")


async def test_an_unknown_agent_is_refused_by_the_client(agents_client: AgentClient) -> None:
    with pytest.raises(DurableRegistrationError, match=r"no agent named 'no\.such\.agent'"):
        await agents_client.start("no.such.agent", {}, run_id="unknown-agent")


async def test_a_workflow_of_an_unknown_agent_fails_with_a_reason(
    agents_client: AgentClient, client: Client, task_queue: str
) -> None:
    manifest = DurableRunManifest(
        project_id="p", task=TaskSpec(id="x", intent="x", domain="d"), input={}
    )
    await client.start_workflow("no.such.agent", manifest, id="raw-unknown", task_queue=task_queue)

    with pytest.raises(DurableError) as failed:
        await agents_client.result("raw-unknown")

    assert failed.value.code == ErrorCode.REGISTRATION
    assert "import the module that defines it" in str(failed.value)


async def test_a_run_whose_input_no_longer_decodes_fails_with_input_invalid(
    agents_client: AgentClient, client: Client, task_queue: str
) -> None:
    # Started before the input type gained its required field `by`.
    stale = DurableRunManifest(
        project_id="p", task=TaskSpec(id="x", intent="x", domain="d"), input={"approved": True}
    )
    await client.start_workflow("conformance.strict", stale, id="raw-stale", task_queue=task_queue)

    with pytest.raises(DurableError) as failed:
        await agents_client.result("raw-stale")

    assert failed.value.code == ErrorCode.INPUT_INVALID
    assert "no longer matches the input type of agent 'conformance.strict'" in str(failed.value)


async def test_a_malformed_event_update_is_rejected_with_the_reason(
    agents_client: AgentClient, client: Client
) -> None:
    await agents_client.start(agents.waiter, Job(key="approval"), run_id="bad-update")
    await _waiting_for(agents_client, "bad-update", "approval")
    handle = client.get_workflow_handle("bad-update")

    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update(EVENT_UPDATE, {"name": "approval"})
    assert "an event must be one JSON object" in str(rejected.value.cause)

    assert await agents_client.send_event("bad-update", "approval", {"ok": True})
    assert await agents_client.result("bad-update") == {"ok": True}


async def test_a_malformed_signal_is_ignored_and_the_run_is_unharmed(
    agents_client: AgentClient, client: Client
) -> None:
    await agents_client.start(agents.gate, Job(), run_id="bad-signal")
    await _waiting_for(agents_client, "bad-signal", "approval")
    handle = client.get_workflow_handle("bad-signal")

    await handle.signal(EVENT_SIGNAL, "not an event")
    await handle.signal(EVENT_SIGNAL, {"key": "approval", "payload": {"approved": "maybe"}})
    await asyncio.sleep(0.3)
    assert (await agents_client.status("bad-signal"))["waiting_for"] == ["approval"]

    await handle.signal(EVENT_SIGNAL, {"key": "approval", "payload": {"approved": 1, "by": "x"}})
    assert await agents_client.result("bad-signal") == "Approval:x"


async def test_a_start_conflicting_with_an_existing_run_is_refused(
    agents_client: AgentClient,
) -> None:
    await agents_client.start(agents.waiter, Job(key="a"), run_id="conflict")

    with pytest.raises(DurableRunInputMismatchError, match="use a new run id for new input"):
        await agents_client.start(agents.waiter, Job(key="b"), run_id="conflict")
    # The same input attaches to the existing run instead.
    found = await agents_client.start(agents.waiter, Job(key="a"), run_id="conflict")
    assert (found.run_id, found.created) == ("conflict", False)


@pytest.mark.parametrize("agent_fn", [misuse, file_misuse])
async def test_deterministic_misuse_fails_the_workflow_not_the_task(
    agents_client: AgentClient, agent_fn: object
) -> None:
    run_id = f"misuse-{getattr(agent_fn, '__name__', 'x')}"
    await agents_client.start(agent_fn, Nothing(), run_id=run_id)  # type: ignore[arg-type]

    with pytest.raises(DurableRunFailedError, match="RestrictedWorkflowAccessError"):
        await asyncio.wait_for(agents_client.result(run_id), 20)


async def test_an_event_sent_by_signal_for_want_of_a_worker_is_still_checked(
    client: Client, task_queue: str
) -> None:
    unserved = AgentClient(client, task_queue=task_queue)  # nobody polls this queue
    await unserved.start(agents.gate, Job(), run_id="gate-unserved")

    with pytest.raises(DurableError) as refused:
        await unserved.send_event(
            "gate-unserved", "approval", {"approved": "maybe"}, answer_within=0.5
        )
    delivered = await unserved.send_event(
        "gate-unserved", "approval", {"approved": True, "by": "ops"}, answer_within=0.5
    )

    assert refused.value.code == ErrorCode.EVENT_PAYLOAD_INVALID
    assert delivered is None  # delivered by signal, not yet acknowledged
    await client.get_workflow_handle("gate-unserved").terminate()
