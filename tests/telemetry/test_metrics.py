"""Metrics scraped over real HTTP: the project's own, and the Temporal runtime's."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import LocalClient, SqliteStore
from durable_agents.adapters.telemetry import Telemetry, TelemetrySettings, configure_telemetry
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on
from tests.telemetry.agents import Order, leaf, traced
from tests.telemetry.spans import approve_when_asked


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(server, ["ok"])))
        yield server


async def scrape(address: str) -> dict[str, float]:
    """Every sample of a Prometheus endpoint, ``name{labels}`` to value."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics")
    response.raise_for_status()
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], name: str, *labels: str) -> float:
    """The sum of ``name``'s samples whose labels contain all of ``labels``."""
    return sum(
        value
        for key, value in samples.items()
        if key.split("{")[0] == name and all(label in key for label in labels)
    )


async def test_the_projects_metrics_are_scraped(
    telemetry: Telemetry, models: ModelServer, tmp_path: Path, run_id: str
) -> None:
    assert telemetry.metrics_address is not None
    before = await scrape(telemetry.metrics_address)
    client = LocalClient(SqliteStore(tmp_path / "runs.db"), poll_interval=0.02, owns_store=True)
    try:
        await client.start(traced, Order(order_id="C-3"), run_id=run_id)
        async with asyncio.timeout(20):
            while True:
                waiting = await scrape(telemetry.metrics_address)
                approvals = 'durable_substrate="local"'
                if total(waiting, "durable_runs_waiting_for_approval", approvals) == 1:
                    break
                await asyncio.sleep(0.05)
        await approve_when_asked(client, run_id)
        await client.result(run_id)
    finally:
        await client.close()
    after = await scrape(telemetry.metrics_address)

    def grew(name: str, *labels: str) -> float:
        return total(after, name, *labels) - total(before, name, *labels)

    local = 'durable_substrate="local"'
    assert grew("durable_steps_total", local, 'durable_step_status="completed"') == 4
    assert grew("durable_step_duration_seconds_count", local) == 4
    assert grew("durable_model_tokens_total", 'gen_ai_token_type="input"') == 12
    assert grew("durable_model_tokens_total", 'gen_ai_token_type="output"') == 3
    assert grew("durable_model_cost_total") == pytest.approx(0.0105)
    assert grew("durable_runs_ended_total", local, 'durable_run_status="completed"') == 2
    assert total(after, "durable_runs_waiting_for_approval", local) == 0
    assert total(after, "durable_runs_active", local) == 0


async def test_a_retried_step_counts_as_a_retry(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_id: str
) -> None:
    async with model_server() as server:
        catalog = models_on(server, ["flaky"])
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(catalog))
        assert telemetry.metrics_address is not None
        before = await scrape(telemetry.metrics_address)
        client = LocalClient(SqliteStore(tmp_path / "runs.db"), poll_interval=0.02, owns_store=True)
        try:
            await client.start(traced, Order(order_id="D-4", model="flaky"), run_id=run_id)
            await approve_when_asked(client, run_id)
            await client.result(run_id)
        finally:
            await client.close()
        after = await scrape(telemetry.metrics_address)

    name = 'durable_step_name="llm.chat"'
    assert (
        total(after, "durable_step_retries_total", name)
        - total(before, "durable_step_retries_total", name)
        == 1
    )  # 500, then 200
    failed = 'durable_step_status="failed"'
    assert (
        total(after, "durable_steps_total", name, failed)
        - total(before, "durable_steps_total", name, failed)
        == 1
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_temporal_runtime_and_run_metrics_are_scraped(
    telemetry: Telemetry, temporal_server: DevServer, task_queue: str, run_id: str
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    runtime_telemetry = configure_telemetry(TelemetrySettings(temporal_metrics_address=address))
    try:
        runtime = runtime_telemetry.temporal_runtime
        assert runtime is not None
        client = await Client.connect(
            temporal_server.address,
            plugins=[DurableAgentsPlugin(["tests.telemetry.agents"])],
            runtime=runtime,
        )
        assert telemetry.metrics_address is not None
        before = await scrape(telemetry.metrics_address)
        async with Worker(client, task_queue=task_queue):
            agents = AgentClient(client, task_queue=task_queue)
            await agents.start(leaf, Order(order_id="E-5"), run_id=run_id)
            await agents.result(run_id)
        sdk = await scrape(address)
        after = await scrape(telemetry.metrics_address)
    finally:
        runtime_telemetry.close()

    assert total(sdk, "temporal_workflow_completed", f'task_queue="{task_queue}"') >= 1
    assert total(sdk, "temporal_activity_execution_latency_count", task_queue) >= 1
    on_temporal = 'durable_substrate="temporal"'
    steps = "durable_steps_total", on_temporal, 'durable_step_status="completed"'
    assert total(after, *steps) - total(before, *steps) == 1
    ended = "durable_runs_ended_total", on_temporal, 'durable_run_status="completed"'
    assert total(after, *ended) - total(before, *ended) == 1
