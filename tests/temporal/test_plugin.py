"""``DurableAgentsPlugin`` on a user's own client and worker, next to their own workflow."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter, DefaultPayloadConverter, PayloadCodec
from temporalio.worker import Replayer, Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance.agents import Job, pipeline
from tests.temporal.plain_workflows import Greeter, shout

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def test_agents_and_a_users_own_workflow_share_one_worker(
    temporal_server: DevServer,
) -> None:
    # The user's own connect call: no data converter of ours, only the plugin.
    plugin = DurableAgentsPlugin(["tests.conformance.agents"])
    client = await Client.connect(temporal_server.address, plugins=[plugin])
    assert issubclass(client.data_converter.payload_converter_class, PydanticPayloadConverter)
    queue = f"plugin-{uuid.uuid4().hex[:8]}"
    run_id = f"plugin-refund-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Greeter], activities=[shout]):
        greeting = await client.execute_workflow(
            Greeter.run, "ada", id=f"greet-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        agents = AgentClient(client, task_queue=queue)
        await agents.start(pipeline, Job(n=1), run_id=run_id)
        result = await agents.result(run_id)
    assert greeting == "HELLO ADA!"
    assert result == {"total": 2, "label": "total=2"}
    steps = await agents.steps(run_id)
    assert [(s.intent, s.status) for s in steps] == [
        ("add one", "completed"),
        ("make the report", "completed"),
    ]


async def test_on_a_worker_alone_the_client_must_already_convert_with_pydantic(
    temporal_server: DevServer,
) -> None:
    plain = await Client.connect(temporal_server.address)  # temporalio's default converter
    with pytest.raises(ValueError, match="does not use the pydantic data converter") as caught:
        Worker(plain, task_queue="never", plugins=[DurableAgentsPlugin()])
    assert "Client.connect(..., plugins=[DurableAgentsPlugin(...)])" in str(caught.value)
    ready = await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)
    Worker(ready, task_queue="fine", plugins=[DurableAgentsPlugin()])  # accepted


class _Reverse(PayloadCodec):
    async def encode(self, payloads: list[Payload]) -> list[Payload]:
        return [Payload(metadata=p.metadata, data=p.data[::-1]) for p in payloads]

    async def decode(self, payloads: list[Payload]) -> list[Payload]:
        return await self.encode(payloads)


async def test_the_plugin_keeps_a_codec_and_refuses_a_foreign_payload_converter(
    temporal_server: DevServer,
) -> None:
    codec = _Reverse()
    client = await Client.connect(
        temporal_server.address,
        data_converter=DataConverter(payload_codec=codec),
        plugins=[DurableAgentsPlugin()],
    )
    assert client.data_converter.payload_codec is codec
    assert issubclass(client.data_converter.payload_converter_class, PydanticPayloadConverter)

    class OwnConverter(DefaultPayloadConverter):
        pass

    foreign = dataclasses.replace(DataConverter.default, payload_converter_class=OwnConverter)
    with pytest.raises(ValueError, match="needs the pydantic payload converter") as caught:
        await Client.connect(
            temporal_server.address, data_converter=foreign, plugins=[DurableAgentsPlugin()]
        )
    assert "OwnConverter" in str(caught.value)


def test_an_agent_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(ImportError, match=r"cannot import agent module 'no_such\.agents'"):
        DurableAgentsPlugin(["no_such.agents"])


@pytest.mark.parametrize("name", ["examples.refund", "agents.chat"])  # bare on purpose
def test_a_module_of_ours_named_without_durable_agents_is_refused_with_its_name(
    name: str,
) -> None:
    with pytest.raises(ImportError, match=rf"name it 'durable_agents\.{name}'"):
        DurableAgentsPlugin([name])
    assert name not in sys.modules  # refused before a second copy was imported


async def test_a_replayer_with_the_plugin_replays_a_recorded_run() -> None:
    replayer = Replayer(
        workflows=[], plugins=[DurableAgentsPlugin(["durable_agents.examples.refund"])]
    )
    text = (HISTORIES / "refund-review.json").read_text()
    result = await replayer.replay_workflow(WorkflowHistory.from_json("refund-review", text))
    assert result.replay_failure is None
