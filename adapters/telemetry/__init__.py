"""Tracing and metrics for both substrates, with OpenTelemetry.

``configure_telemetry(TelemetrySettings())`` at a process's start installs the
providers and exporters; ``tracing_interceptors()`` goes on every Temporal
client. Span and metric names live in ``_names``, one home for both substrates.
"""

from . import _metrics as metrics
from . import _names as names
from . import _spans as spans
from ._calls import (
    ModelCall,
    child_attributes,
    command_span,
    model_call,
    run_attributes,
    step_attempt,
    trace_content,
    turn_attributes,
    wait_attributes,
)
from ._metrics import RunGauge
from ._settings import TelemetrySettings
from ._setup import (
    Telemetry,
    TracingInterceptor,
    configure_telemetry,
    traced_client,
    tracing_interceptors,
)

__all__ = [
    "ModelCall",
    "RunGauge",
    "Telemetry",
    "TelemetrySettings",
    "TracingInterceptor",
    "child_attributes",
    "command_span",
    "configure_telemetry",
    "metrics",
    "model_call",
    "names",
    "run_attributes",
    "spans",
    "step_attempt",
    "trace_content",
    "traced_client",
    "tracing_interceptors",
    "turn_attributes",
    "wait_attributes",
]
