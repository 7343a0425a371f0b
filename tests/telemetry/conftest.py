"""One telemetry configuration for the whole session, its spans kept in memory.

The providers are process-wide (an OpenTelemetry process has one tracer provider),
so the session configures them once; each test reads the spans it made and clears
them. When the session ends, every span any test exported is searched for the
session's secret (the model API key), as every Temporal history is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_agents.adapters.telemetry import Telemetry, TelemetrySettings, configure_telemetry

_seen: list[ReadableSpan] = []


class _Kept(InMemorySpanExporter):
    """An in-memory exporter that also keeps every span for the session's secret scan."""

    def export(self, spans: Any) -> Any:
        _seen.extend(spans)
        return super().export(spans)


_exporter = _Kept()


@pytest.fixture(scope="session")
def telemetry(configured_secret: str) -> Iterator[Telemetry]:
    configured = configure_telemetry(
        TelemetrySettings(metrics_address="127.0.0.1:0"),
        processors=[SimpleSpanProcessor(_exporter)],
    )
    yield configured
    configured.close()
    leaked = [s.name for s in _seen if configured_secret in span_text(s)]
    assert not leaked, f"the configured secret appears in the spans {leaked}"


@pytest.fixture
def task_queue() -> str:
    return f"telemetry-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def exported(telemetry: Telemetry) -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def span_text(span: ReadableSpan) -> str:
    """Everything a span carries as text: name, attributes, events and their attributes."""
    return json.dumps(
        {
            "name": span.name,
            "attributes": dict(span.attributes or {}),
            "events": [[e.name, dict(e.attributes or {})] for e in span.events],
            "status": span.status.description,
        },
        default=str,
    )
