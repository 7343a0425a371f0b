"""Export: spans reach a real OTLP/HTTP receiver; an unreachable one never holds up a run."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_agents.adapters.local import LocalClient, SqliteStore
from durable_agents.adapters.telemetry import (
    Telemetry,
    TelemetrySettings,
    configure_telemetry,
    names,
)
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on
from tests.telemetry.agents import Order, traced
from tests.telemetry.conftest import span_text
from tests.telemetry.receiver import otlp_grpc_receiver, otlp_receiver
from tests.telemetry.spans import approve_when_asked


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(server, ["ok"])))
        yield server


async def _run(tmp_path: Path, run_id: str) -> dict[str, object]:
    client = LocalClient(SqliteStore(tmp_path / "runs.db"), poll_interval=0.02, owns_store=True)
    try:
        with trace.get_tracer("test").start_as_current_span("caller"):
            await client.start(traced, Order(order_id="B-2"), run_id=run_id)
        await approve_when_asked(client, run_id)
        result: dict[str, object] = await client.result(run_id)
        return result
    finally:
        await client.close()


async def test_spans_reach_an_otlp_http_receiver(
    exported: InMemorySpanExporter,
    models: ModelServer,
    tmp_path: Path,
    run_id: str,
    configured_secret: str,
) -> None:
    with otlp_receiver() as received:
        settings = TelemetrySettings(otlp_endpoint=received.endpoint, service_name="agents-test")
        assert settings.traces_to == "otlp"  # an endpoint alone turns OTLP on
        telemetry = configure_telemetry(settings)
        try:
            await _run(tmp_path, run_id)
            assert telemetry.flush()
        finally:
            telemetry.close()

    assert set(received.paths) == {"/v1/traces"}
    in_memory = sorted(s.name for s in exported.get_finished_spans())
    assert sorted(received.names()) == in_memory
    assert {names.RUN, names.STEP, names.WAIT, names.CHILD, "chat ok"} <= set(received.names())
    model = next(attributes for name, attributes, _ in received.spans if name == "chat ok")
    assert model[names.GEN_AI_INPUT_TOKENS] == 12
    # The process's providers were installed first by the session: its service name stands.
    assert {resource["service.name"] for _, _, resource in received.spans} == {"durable-agents"}
    assert configured_secret not in json.dumps(received.spans, default=str)
    assert "Bearer" not in json.dumps(received.spans, default=str)


async def test_spans_reach_an_otlp_grpc_receiver(
    exported: InMemorySpanExporter, models: ModelServer, tmp_path: Path, run_id: str
) -> None:
    with otlp_grpc_receiver() as received:
        settings = TelemetrySettings(otlp_endpoint=received.endpoint, otlp_protocol="grpc")
        telemetry = configure_telemetry(settings)
        try:
            await _run(tmp_path, run_id)
            assert telemetry.flush()
        finally:
            telemetry.close()

    assert received.paths
    assert sorted(received.names()) == sorted(s.name for s in exported.get_finished_spans())


async def test_content_goes_on_model_spans_only_when_turned_on(
    exported: InMemorySpanExporter, models: ModelServer, tmp_path: Path, run_id: str
) -> None:
    telemetry = configure_telemetry(TelemetrySettings(trace_content=True))
    try:
        await _run(tmp_path, run_id)
    finally:
        telemetry.close()
        configure_telemetry(TelemetrySettings()).close()  # content off again

    (model,) = [s for s in exported.get_finished_spans() if s.name == "chat ok"]
    events = {e.name: dict(e.attributes or {}) for e in model.events}
    assert "refund 25.00" in str(events[names.GEN_AI_PROMPT_EVENT]["gen_ai.prompt"])
    assert events[names.GEN_AI_COMPLETION_EVENT] == {"gen_ai.completion": "Durable hello"}


async def test_an_unreachable_collector_never_holds_up_a_run(
    exported: InMemorySpanExporter,
    models: ModelServer,
    tmp_path: Path,
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    settings = TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{port}")
    telemetry = configure_telemetry(settings)
    try:
        result = await _run(tmp_path, run_id)
        assert result["decision"] == "approve"
        with caplog.at_level(logging.WARNING, logger="durable_agents.adapters.telemetry._setup"):
            telemetry.flush(5_000)
    finally:
        telemetry.close()

    assert "exporting spans to OTLP/HTTP failed" in caplog.text
    assert [s.name for s in exported.get_finished_spans()].count(names.RUN) == 2


def test_bad_settings_name_the_variable_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"^DURABLE_METRICS_ADDRESS: must be host:port"):
        TelemetrySettings.from_env({"DURABLE_METRICS_ADDRESS": "9464"})
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_ENDPOINT: must start with http"):
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})
    with pytest.raises(ValueError, match=r"^OTEL_TRACES_EXPORTER: Input should be 'otlp'"):
        TelemetrySettings.from_env({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(ValueError, match=r"^DURABLE_TRACE_CONTENT: Input should be a valid bool"):
        TelemetrySettings.from_env({"DURABLE_TRACE_CONTENT": "perhaps"})


def test_a_taken_metrics_port_names_the_variable(telemetry: Telemetry) -> None:
    assert telemetry.metrics_address is not None
    with pytest.raises(ValueError, match=r"DURABLE_METRICS_ADDRESS=.*cannot serve metrics there"):
        configure_telemetry(TelemetrySettings(metrics_address=telemetry.metrics_address))


def test_the_span_search_finds_a_value_anywhere_in_a_span(exported: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("planted", attributes={"note": "canary-7f3a-a"}) as span:
        span.add_event("event", {"deep": ["x", "canary-7f3a-b"]})

    (planted,) = exported.get_finished_spans()
    assert "canary-7f3a-a" in span_text(planted)
    assert "canary-7f3a-b" in span_text(planted)


def test_a_taken_temporal_metrics_port_names_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ValueError, match=r"^DURABLE_TEMPORAL_METRICS_ADDRESS=.*free port"):
            configure_telemetry(TelemetrySettings(temporal_metrics_address=address))
