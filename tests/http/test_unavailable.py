"""A Temporal server that goes away is a 503 saying so, never a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from durable_agents.adapters.http import ServerSettings
from durable_agents.adapters.temporal import DevServer
from tests.http.conftest import TOKEN, temporal_client
from tests.http.server import ServerThread
from tests.http.support import assert_problem

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_a_temporal_server_that_stopped_answers_503() -> None:
    temporal = DevServer()
    await asyncio.to_thread(temporal.start)
    try:
        served = await asyncio.to_thread(
            ServerThread(temporal_client(temporal.address), ServerSettings(tokens=(TOKEN,))).start
        )
    finally:
        await asyncio.to_thread(temporal.stop)
    try:
        async with httpx.AsyncClient(
            base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as http:
            # The client retries for a while before it gives up on the server.
            body = assert_problem(await http.get("/v1/runs/any"), 503, "substrate_unavailable")
            assert "TEMPORAL_ADDRESS" in body["detail"]
    finally:
        await asyncio.to_thread(served.stop)
