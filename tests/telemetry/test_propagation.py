"""Trace context flows from the caller into the run: over HTTP (``traceparent``), through an
``AgentClient`` whose client has no tracing interceptor of its own, and into a local run
that another worker resumes (the run's tags keep it), where completed steps are not
spanned again."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.http import ServerSettings
from durable_agents.adapters.local import LocalClient, SqliteStore, resume_run
from durable_agents.adapters.telemetry import names
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.http.conftest import local_client
from tests.http.server import ServerThread
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on
from tests.telemetry.agents import Order, leaf, traced
from tests.telemetry.spans import named

TRACE_ID = uuid.uuid4().hex
CALLER_SPAN = uuid.uuid4().hex[:16]


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(server, ["ok"])))
        yield server


def _run_span(spans: Sequence[ReadableSpan], run_id: str) -> list[ReadableSpan]:
    return [
        s for s in named(spans, names.RUN) if s.attributes and s.attributes[names.RUN_ID] == run_id
    ]


async def _ended_run_span(exported: InMemorySpanExporter, run_id: str) -> ReadableSpan:
    async with asyncio.timeout(20):
        while not (found := _run_span(exported.get_finished_spans(), run_id)):
            await asyncio.sleep(0.05)
    return found[0]


async def test_a_traceparent_header_parents_the_run_an_http_request_starts(
    exported: InMemorySpanExporter, tmp_path: Path
) -> None:
    token = f"token-{uuid.uuid4().hex}"
    server = ServerThread(local_client(tmp_path / "runs.db"), ServerSettings(tokens=(token,)))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/v1/runs",
                json={"agent": "telemetry.leaf", "input": {"order_id": "F-6"}, "run_id": "by-http"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                },
            )
            assert response.status_code == 201, response.text
            run = await _ended_run_span(exported, "by-http")
    finally:
        server.stop()

    assert run.parent is not None
    assert (f"{run.parent.trace_id:032x}", f"{run.parent.span_id:016x}") == (
        TRACE_ID,
        CALLER_SPAN,
    )


async def test_an_agent_client_carries_the_callers_context_without_an_interceptor(
    exported: InMemorySpanExporter, temporal_server: DevServer, task_queue: str, run_id: str
) -> None:
    plain = await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)
    agents = AgentClient(plain, task_queue=task_queue)
    async with Worker(
        plain, task_queue=task_queue, plugins=[DurableAgentsPlugin(["tests.telemetry.agents"])]
    ):
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            await agents.start(leaf, Order(order_id="G-7"), run_id=run_id)
        await agents.result(run_id)

    run = await _ended_run_span(exported, run_id)
    assert run.parent is not None
    assert run.parent.span_id == caller.get_span_context().span_id


async def test_a_local_run_resumed_by_another_worker_continues_the_callers_trace(
    exported: InMemorySpanExporter, models: ModelServer, tmp_path: Path, run_id: str
) -> None:
    first = LocalClient(SqliteStore(tmp_path / "runs.db"), lease=0.3, owns_store=True)
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        await first.start(traced, Order(order_id="H-8"), run_id=run_id)
    async with asyncio.timeout(20):
        while not (pending := [a for a in await first.approvals() if a.run_id == run_id]):
            await asyncio.sleep(0.05)
    await first.close()  # the worker stops while the run waits for its approval

    store = SqliteStore(tmp_path / "runs.db")
    try:
        second = LocalClient(store, lease=0.3)
        await second.decide(pending[0].approval_id, "approve", decided_by="dana")
        await asyncio.sleep(0.4)  # the first worker's lease lapses
        resumed = await resume_run(store, run_id, lease=0.3)
    finally:
        await store.close()

    assert resumed.result["decision"] == "approve"
    spans = exported.get_finished_spans()
    executions = sorted(_run_span(spans, run_id), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {}).get(names.RESUMED) for s in executions] == [False, True]
    for execution in executions:  # both under the caller, the second from the run's tags
        assert execution.parent is not None
        assert execution.parent.span_id == caller.get_span_context().span_id
    steps = [
        dict(s.attributes or {})[names.STEP_NAME]
        for s in named(spans, names.STEP)
        if dict(s.attributes or {})[names.RUN_ID] == run_id
    ]
    # Completed steps replay from the store: each step executed once, spanned once.
    assert steps == ["telemetry.look_up", "telemetry.draft", "llm.chat"]
