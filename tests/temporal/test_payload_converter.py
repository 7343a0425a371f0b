"""The payload converter the plugin gives clients: pydantic's, with one cache per process."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import DevServer, SharedPydanticConverter


class Order(BaseModel):
    id: str
    placed: datetime
    lines: list[int]


def test_it_converts_as_pydantics_own_converter_does() -> None:
    order = Order(id="o-1", placed=datetime(2026, 12, 3, 8, tzinfo=UTC), lines=[1, 2])
    values = [order, {"a": [1, None]}, b"\x00raw", None, "text"]
    ours = SharedPydanticConverter().to_payloads(values)
    theirs = PydanticPayloadConverter().to_payloads(values)
    assert ours == theirs
    hints: list[type] = [Order, dict, bytes, type(None), str]
    assert SharedPydanticConverter().from_payloads(ours, hints) == values


def test_its_instances_share_encoders_and_so_their_type_adapters() -> None:
    first, second = SharedPydanticConverter(), SharedPydanticConverter()
    assert first.converters == second.converters  # the same encoder objects: equal by identity
    # A fresh PydanticPayloadConverter starts with an empty cache of its own.
    assert (
        PydanticPayloadConverter().converters[b"json/plain"]
        is not (first.converters[b"json/plain"])
    )


async def test_the_plugin_swaps_temporalios_pydantic_converter_and_keeps_a_subclass(
    temporal_server: DevServer,
) -> None:
    class OwnPydantic(PydanticPayloadConverter):
        pass

    for given, expected in [
        (DataConverter.default, SharedPydanticConverter),
        (pydantic_data_converter, SharedPydanticConverter),
        (DataConverter(payload_converter_class=OwnPydantic), OwnPydantic),
    ]:
        client = await Client.connect(
            temporal_server.address, data_converter=given, plugins=[DurableAgentsPlugin()]
        )
        assert client.data_converter.payload_converter_class is expected
