"""Traces on both substrates: one span tree for one run, replay-safe, with no secrets.

The run has two steps, a model call (against a real local model server), an
approval and a child run. Its spans are captured in memory; the same tree, names
and attributes come out of a local store and a Temporal dev server.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import LocalClient, SqliteStore
from durable_agents.adapters.telemetry import names
from durable_agents.adapters.telemetry import spans as made_spans
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance.agents import Job, talk
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on
from tests.telemetry.agents import Order, traced
from tests.telemetry.conftest import span_text
from tests.telemetry.spans import EXPECTED, Tree, approve_when_asked, named, tree


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(server, ["ok"])))
        yield server


async def test_a_local_run_makes_the_span_tree(
    exported: InMemorySpanExporter,
    models: ModelServer,
    tmp_path: Path,
    run_id: str,
    configured_secret: str,
) -> None:
    client = LocalClient(SqliteStore(tmp_path / "runs.db"), poll_interval=0.02, owns_store=True)
    try:
        with trace.get_tracer("test").start_as_current_span("caller"):
            await client.start(traced, Order(order_id="A-1"), run_id=run_id)
        await approve_when_asked(client, run_id)
        result = await client.result(run_id)
    finally:
        await client.close()

    assert result["decision"] == "approve"
    spans = exported.get_finished_spans()
    (caller,) = named(spans, "caller")
    assert tree(spans, caller) == EXPECTED
    _check_attributes(spans, "local", run_id)
    _check_model_request(spans, models)
    assert not [s.name for s in spans if configured_secret in span_text(s)]


def _check_attributes(spans: Sequence[ReadableSpan], substrate: str, run_id: str) -> None:
    parent_run, child_run = sorted(named(spans, names.RUN), key=lambda s: s.start_time or 0)
    assert parent_run.attributes is not None
    assert child_run.attributes is not None
    assert parent_run.attributes[names.RUN_ID] == run_id
    assert parent_run.attributes[names.AGENT] == "telemetry.traced"
    assert parent_run.attributes[names.RUN_STATUS] == "completed"
    assert child_run.attributes[names.AGENT] == "telemetry.leaf"
    assert {
        s.attributes.get(names.SUBSTRATE) for s in spans if s.attributes and s.name != "caller"
    } <= {substrate, None}
    steps = [s.attributes for s in named(spans, names.STEP) if s.attributes]
    assert [(a[names.STEP_NAME], a[names.STEP_ATTEMPT]) for a in steps[:3]] == [
        ("telemetry.look_up", 1),
        ("telemetry.draft", 1),
        ("llm.chat", 1),
    ]
    (wait,) = named(spans, names.WAIT)
    assert wait.attributes is not None
    assert wait.attributes[names.WAIT_AS] == "waiting_for_approval"
    assert wait.attributes[names.WAIT_OUTCOME] == "received"
    (model,) = named(spans, "chat ok")
    assert dict(model.attributes or {}) == {
        names.GEN_AI_SYSTEM: "openai",
        names.GEN_AI_OPERATION: "chat",
        names.GEN_AI_REQUEST_MODEL: "ok",
        names.GEN_AI_RESPONSE_MODEL: "ok",
        names.GEN_AI_INPUT_TOKENS: 12,
        names.GEN_AI_OUTPUT_TOKENS: 3,
        names.GEN_AI_FINISH_REASONS: ("stop",),
        names.MODEL_COST: pytest.approx(0.0105),
    }
    assert model.events == ()  # no prompt or completion unless the operator turns it on


def _check_model_request(spans: Sequence[ReadableSpan], models: ModelServer) -> None:
    """The model request carried the model-call span as its parent (``traceparent``)."""
    (model,) = named(spans, "chat ok")
    assert model.context is not None
    traceparent = models.headers[-1]["traceparent"]
    assert traceparent.split("-")[1] == f"{model.context.trace_id:032x}"
    assert traceparent.split("-")[2] == f"{model.context.span_id:016x}"


async def test_a_temporal_run_makes_the_same_span_tree_and_a_replay_adds_none(
    exported: InMemorySpanExporter,
    models: ModelServer,
    temporal_server: DevServer,
    task_queue: str,
    run_id: str,
    configured_secret: str,
) -> None:
    plugin = DurableAgentsPlugin(["tests.telemetry.agents"])
    client = await Client.connect(temporal_server.address, plugins=[plugin])
    agents = AgentClient(client, task_queue=task_queue)
    async with Worker(client, task_queue=task_queue):
        with trace.get_tracer("test").start_as_current_span("caller"):
            await agents.start(traced, Order(order_id="A-1"), run_id=run_id)
        await approve_when_asked(agents, run_id)
        result = await agents.result(run_id)

    assert result["decision"] == "approve"
    spans = exported.get_finished_spans()
    (caller,) = named(spans, "caller")
    assert tree(spans, caller) == EXPECTED
    _check_attributes(spans, "temporal", run_id)
    _check_model_request(spans, models)
    assert not [s.name for s in spans if configured_secret in span_text(s)]

    # Replaying the parent's and the child's histories, traced the same way, adds no span.
    (child,) = named(spans, names.CHILD)
    assert child.attributes is not None
    exported.clear()
    replayer = Replayer(workflows=[], plugins=[DurableAgentsPlugin(["tests.telemetry.agents"])])
    for workflow_id in (run_id, str(child.attributes[names.CHILD_RUN_ID])):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        await replayer.replay_workflow(history)
    assert exported.get_finished_spans() == ()


async def test_a_worker_that_replays_every_task_makes_each_span_once(
    exported: InMemorySpanExporter,
    models: ModelServer,
    temporal_server: DevServer,
    task_queue: str,
    run_id: str,
) -> None:
    """With no workflow cache, every workflow task replays the run from its start."""
    plugin = DurableAgentsPlugin(["tests.telemetry.agents"])
    client = await Client.connect(temporal_server.address, plugins=[plugin])
    agents = AgentClient(client, task_queue=task_queue)
    async with Worker(client, task_queue=task_queue, max_cached_workflows=0):
        with trace.get_tracer("test").start_as_current_span("caller"):
            await agents.start(traced, Order(order_id="R-9"), run_id=run_id)
        await approve_when_asked(agents, run_id)
        await agents.result(run_id)

    spans = exported.get_finished_spans()
    (caller,) = named(spans, "caller")
    assert tree(spans, caller) == EXPECTED


TURN: Tree = ("durable.turn", (("durable.step", (("chat ok", ()),)),))
CONVERSATION: Tree = (
    "caller",
    (("durable.run", (("durable.child", (("durable.run", (TURN, TURN, TURN, TURN)),)),)),),
)
"""A four-turn debate, a child run of its agent's: each turn a step, each a model call."""


async def test_conversation_turns_make_the_same_spans_on_both_substrates(
    exported: InMemorySpanExporter,
    models: ModelServer,
    temporal_server: DevServer,
    task_queue: str,
    tmp_path: Path,
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(models, ["ok", "alice"])))
    job = Job(key="conformance.debate")
    local = LocalClient(SqliteStore(tmp_path / "runs.db"), owns_store=True)
    try:
        with trace.get_tracer("test").start_as_current_span("caller"):
            await local.start(talk, job, run_id=f"{run_id}-local")
        await local.result(f"{run_id}-local")
    finally:
        await local.close()
    on_local = exported.get_finished_spans()
    exported.clear()

    plugin = DurableAgentsPlugin(["tests.conformance.agents"])
    client = await Client.connect(temporal_server.address, plugins=[plugin])
    async with Worker(client, task_queue=task_queue):
        agents = AgentClient(client, task_queue=task_queue)
        with trace.get_tracer("test").start_as_current_span("caller"):
            await agents.start(talk, job, run_id=f"{run_id}-temporal")
        await agents.result(f"{run_id}-temporal")
    on_temporal = exported.get_finished_spans()

    for spans in (on_local, on_temporal):
        (caller,) = named(spans, "caller")
        assert tree(spans, caller) == CONVERSATION
        turns = [dict(s.attributes or {}) for s in named(spans, names.TURN)]
        assert [(t[names.TURN_INDEX], t[names.TURN_SPEAKER]) for t in turns] == [
            (0, "alice"),
            (1, "bob"),
            (2, "alice"),
            (3, "bob"),
        ]
        assert {t[names.TURN_OUTCOME] for t in turns} == {"committed"}


async def test_the_offline_scripted_model_is_traced_as_a_model_call(
    exported: InMemorySpanExporter, tmp_path: Path, run_id: str
) -> None:
    client = LocalClient(SqliteStore(tmp_path / "runs.db"), poll_interval=0.02, owns_store=True)
    try:
        await client.start(traced, Order(order_id="S-1", model="scripted"), run_id=run_id)
        await approve_when_asked(client, run_id)
        await client.result(run_id)
    finally:
        await client.close()

    (model,) = named(exported.get_finished_spans(), "chat scripted")
    attributes = dict(model.attributes or {})
    assert attributes[names.GEN_AI_REQUEST_MODEL] == "scripted"
    assert attributes[names.GEN_AI_FINISH_REASONS] == ("stop",)
    assert attributes[names.GEN_AI_OUTPUT_TOKENS] > 0


class _Pause:
    def __await__(self) -> Iterator[None]:
        yield


def test_a_run_closed_from_outside_its_context_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker evicting a cached run closes the run's coroutine outside the context the
    run span was made current in: nothing is restored there, and nothing is logged."""

    async def run() -> None:
        with made_spans.span(names.RUN, {}):
            await _Pause()

    coroutine = run()
    coroutine.send(None)  # the run waits, its span current
    contextvars.Context().run(coroutine.close)  # evicted from elsewhere

    assert "Failed to detach context" not in caplog.text
