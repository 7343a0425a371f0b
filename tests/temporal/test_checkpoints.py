"""Context checkpoints on Temporal: kept by reference, read from outside, carried on.

The conformance scenarios cover what every substrate does alike; these cover what
is Temporal's own: a payload never enters history, the memo answers with no
worker, and checkpoints survive continue-as-new of both kinds (the agent's own,
and the run's own when Temporal suggests it), on a server that suggests it early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from durable import DurableCheckpointNotFoundError, DurableStoreError
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.blobs import BLOBS_ENV, BlobStore
from durable_agents.adapters.temporal import CHECKPOINTS_MEMO, AgentClient, DevServer
from tests.temporal.checkpoint_agents import MARKER, Phase, continues, large

pytestmark = pytest.mark.timeout(240)

MODULES = ("tests.temporal.checkpoint_agents",)
SUGGEST_AFTER = 300
"""History events after which this server suggests continuing as new."""


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    limit = f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}"
    with DevServer(extra_args=["--dynamic-config-value", limit]) as started:
        yield started


@pytest.fixture
async def client(server: DevServer) -> Client:
    return await Client.connect(server.address, data_converter=pydantic_data_converter)


@pytest.fixture(autouse=True)
def blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BlobStore:
    """A blob store of this test's own, shared by its worker and its client."""
    monkeypatch.setenv(BLOBS_ENV, str(tmp_path / "blobs"))
    return BlobStore(tmp_path / "blobs")


async def _chain(client: Client, run_id: str) -> list[WorkflowHistory]:
    """The histories of the run's executions, oldest first."""
    histories = []
    execution: str | None = (await client.get_workflow_handle(run_id).describe()).run_id
    while execution:
        history = await client.get_workflow_handle(run_id, run_id=execution).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        execution = started.continued_execution_run_id or None
    return histories[::-1]


async def _replays(histories: list[WorkflowHistory]) -> None:
    replayer = Replayer(workflows=[], plugins=[DurableAgentsPlugin(MODULES)])
    for history in histories:
        assert (await replayer.replay_workflow(history)).replay_failure is None


async def test_a_payload_stays_out_of_history_and_is_read_without_a_worker(
    client: Client, blobs: BlobStore
) -> None:
    runs = AgentClient(client, task_queue="checkpoints-large")
    size = 200_000
    async with Worker(
        client, task_queue="checkpoints-large", plugins=[DurableAgentsPlugin(MODULES)]
    ):
        await runs.start(large, Phase(size=size), run_id="checkpoints-large")
        assert await runs.result("checkpoints-large") == ["context"]

    # No worker from here on: the memo and the blob store answer.
    [info] = await runs.checkpoints("checkpoints-large")
    assert (info.name, info.step) == ("context", 3)
    found = await runs.checkpoint("checkpoints-large", "context")
    assert found.payload == {"turn": 3, "text": f"{MARKER}-3-" + "x" * size}
    with pytest.raises(DurableCheckpointNotFoundError):
        await runs.checkpoint("checkpoints-large", "plan")
    # Four writes of 200 kB: history holds their references, never a payload.
    [history] = await _chain(client, "checkpoints-large")
    assert not any(MARKER.encode() in event.SerializeToString() for event in history.events)
    assert sum(event.ByteSize() for event in history.events) < 20_000
    described = await client.get_workflow_handle("checkpoints-large").describe()
    assert list(await described.memo_value(CHECKPOINTS_MEMO, {})) == ["context"]
    # A client that does not reach the run's blob store says so.
    with pytest.raises(DurableStoreError, match=f"set {BLOBS_ENV}"):
        await runs.checkpoint("checkpoints-large", "context", blobs=BlobStore(blobs.root / "x"))
    await _replays([history])


async def test_checkpoints_outlive_a_continue_as_new_the_agent_asks_for(client: Client) -> None:
    runs = AgentClient(client, task_queue="checkpoints-continue")
    async with Worker(
        client, task_queue="checkpoints-continue", plugins=[DurableAgentsPlugin(MODULES)]
    ):
        await runs.start(continues, Phase(), run_id="checkpoints-continue")
        result = await runs.result("checkpoints-continue")

    assert result == {
        "seen": ["context"],
        "context": {"summary": "what phase 1 learned"},
        "trail": [],
        "total": 0,
    }
    histories = await _chain(client, "checkpoints-continue")
    assert len(histories) == 2
    await _replays(histories)


async def test_checkpoints_replay_right_across_executions_the_run_continued_itself(
    client: Client,
) -> None:
    runs = AgentClient(client, task_queue="checkpoints-long")
    job = Phase(steps=130)
    async with Worker(
        client, task_queue="checkpoints-long", plugins=[DurableAgentsPlugin(MODULES)]
    ):
        await runs.start(continues, job, run_id="checkpoints-long")
        result = await asyncio.wait_for(runs.result("checkpoints-long"), 200)

    # The agent continued once itself; the run continued on its own after that, and
    # each later execution replayed the writes, lists and reads of the ones before.
    histories = await _chain(client, "checkpoints-long")
    assert len(histories) >= 3
    summary = "what phase 1 learned"
    assert result == {
        "seen": ["context"],
        "context": {"summary": summary},
        "trail": [["context", "progress", summary, str(i)] for i in range(0, 130, 25)],
        "total": 130,
    }
    names = [info.name for info in await runs.checkpoints("checkpoints-long")]
    assert names == ["context", "progress"]
    assert (await runs.checkpoint("checkpoints-long", "progress")).payload == {"index": 125}
    await _replays(histories)


async def test_a_blob_store_no_worker_can_write_fails_the_write_and_says_why(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unusable = tmp_path / "a file, not a folder"
    unusable.write_text("")
    monkeypatch.setenv(BLOBS_ENV, str(unusable))
    runs = AgentClient(client, task_queue="checkpoints-unwritable")
    async with Worker(
        client, task_queue="checkpoints-unwritable", plugins=[DurableAgentsPlugin(MODULES)]
    ):
        await runs.start(large, Phase(), run_id="checkpoints-unwritable")
        with pytest.raises(DurableStoreError) as caught:
            await runs.result("checkpoints-unwritable")

    assert "the blob store failed for run 'checkpoints-unwritable'" in str(caught.value)
    assert f"every worker reaches the blob store ({BLOBS_ENV})" in str(caught.value)
    assert await runs.checkpoints("checkpoints-unwritable") == []


async def test_a_carried_checkpoint_whose_blob_is_gone_fails_the_read_and_says_why(
    client: Client, blobs: BlobStore
) -> None:
    runs = AgentClient(client, task_queue="checkpoints-lost")
    async with Worker(
        client, task_queue="checkpoints-lost", plugins=[DurableAgentsPlugin(MODULES)]
    ):
        await runs.start(continues, Phase(wait=True), run_id="checkpoints-lost")
        for _ in range(200):
            if (await runs.status("checkpoints-lost"))["waiting_for"] == ["go"]:
                break
            await asyncio.sleep(0.05)
        [info] = await runs.checkpoints("checkpoints-lost")
        assert blobs.delete(info.digest)  # lost between the two executions
        await runs.send_event("checkpoints-lost", "go", None)
        with pytest.raises(DurableStoreError) as caught:
            await runs.result("checkpoints-lost")

    assert f"blob {info.digest} is not in" in str(caught.value)
    assert "every worker must share the blob store" in str(caught.value)
