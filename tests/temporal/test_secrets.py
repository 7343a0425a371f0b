"""Secrets stay in the worker's configuration: they never enter workflow history.

The session's dev server is searched for the configured secret when the test
session ends (see ``temporal_server`` in ``tests/conftest.py``); these tests
make sure the secret is really used, and that the search really finds values.
"""

from __future__ import annotations

import hashlib
import hmac

from temporalio.client import Client

from durable_agents.adapters.temporal import AgentClient
from tests.conftest import SECRET
from tests.support.histories import histories_containing
from tests.temporal.agents import Order, signed


async def test_a_step_signs_with_the_configured_secret(
    agents_client: AgentClient, client: Client
) -> None:
    await agents_client.start(signed, Order(order_id="A-77"), run_id="signed-order")

    signature = await agents_client.result("signed-order")

    expected = hmac.new(SECRET.encode(), b"A-77", hashlib.sha256).hexdigest()[:16]
    assert signature == expected  # the secret was used, on the second attempt
    assert await histories_containing(client, SECRET) == []


async def test_the_history_search_finds_a_value_inside_a_payload(
    agents_client: AgentClient, client: Client
) -> None:
    from tests.conformance import agents
    from tests.conformance.agents import Job

    await agents_client.start(agents.waiter, Job(key="k"), run_id="planted")
    await agents_client.send_event("planted", "k", {"note": "planted-canary-7f3a"})
    await agents_client.result("planted")

    assert "planted" in await histories_containing(client, "planted-canary-7f3a")
