from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from durable_agents.adapters.temporal import SEARCH_ATTRIBUTES, DevServer

ROOT = Path(__file__).resolve().parents[2]


def _register(address: str) -> str:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default"}
    out = subprocess.run(
        [sys.executable, "deploy/register_search_attributes.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


async def test_register_search_attributes_on_a_bare_server() -> None:
    with DevServer(search_attributes={}) as server:
        assert _register(server.address) == "default: added AgentName, ProjectId, WaitingFor"
        assert _register(server.address) == "default: all present"  # idempotent

        client = await Client.connect(server.address)
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)
