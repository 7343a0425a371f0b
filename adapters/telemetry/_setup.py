"""``configure_telemetry``: install the tracer and meter providers and start exporting.

The tracer provider is temporalio's replay-safe one, so workflow code can make
spans; spans go out through a batch processor with a bounded queue, whose
export failures are logged and dropped, so exporting never holds up a run. The
providers are process-wide and installed once; each ``configure_telemetry``
adds its exporters to them, and ``Telemetry.close`` removes them again.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import prometheus_client
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID
from temporalio.client import Client
from temporalio.contrib.opentelemetry import (
    OpenTelemetryInterceptor,
    ReplaySafeMeterProvider,
    ReplaySafeTracerProvider,
    create_tracer_provider,
)
from temporalio.contrib.opentelemetry import TracingInterceptor as ContribTracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import WorkflowInboundInterceptor, WorkflowInterceptorClassInput

from ._calls import set_trace_content
from ._settings import TelemetrySettings

__all__ = [
    "Telemetry",
    "TracingInterceptor",
    "configure_telemetry",
    "traced_client",
    "tracing_interceptors",
]

logger = logging.getLogger(__name__)


class TracingInterceptor(OpenTelemetryInterceptor):
    """temporalio's OpenTelemetry interceptor: trace context from clients into workflows,
    from workflows into activities and child workflows.

    Unlike the contrib's own, a worker whose process has no replay-safe tracer provider
    (``configure_telemetry`` never ran) still starts: its workflows then make no spans.
    """

    # The contrib narrows the worker interceptor's return type; None is what the worker
    # interceptor protocol allows for "no workflow interceptor".
    def workflow_interceptor_class(  # type: ignore[override]
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        if not isinstance(trace.get_tracer_provider(), ReplaySafeTracerProvider):
            return None
        return super().workflow_interceptor_class(input)


def traced_client(client: Client) -> Client:
    """``client``, or a client like it that carries the caller's trace context into the runs
    it starts and the events it sends (when its interceptors do not already)."""
    active = client.config(active_config=True)["interceptors"]
    if any(isinstance(i, OpenTelemetryInterceptor | ContribTracingInterceptor) for i in active):
        return client
    config = client.config()
    config["interceptors"] = [*config["interceptors"], *tracing_interceptors()]
    return Client(**config)


def tracing_interceptors() -> list[TracingInterceptor]:
    """What a Temporal client (and so its workers) needs for traces: add to ``interceptors``."""
    return [TracingInterceptor()]


class _Guarded(SpanExporter):
    """An exporter whose failures are one log line, never an exception in the exporter thread."""

    def __init__(self, exporter: SpanExporter, name: str) -> None:
        self._exporter = exporter
        self._name = name
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            if not self._failing:
                logger.warning("exporting spans to %s failed (%r); dropping them", self._name, exc)
        else:
            if result is SpanExportResult.FAILURE and not self._failing:
                logger.warning("exporting spans to %s failed; dropping them", self._name)
        self._failing = result is SpanExportResult.FAILURE
        return result

    def shutdown(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception as exc:
            logger.warning("closing the span exporter %s failed: %r", self._name, exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _Switch(SpanProcessor):
    """The provider's one processor, passing spans to the processors configured now."""

    def __init__(self) -> None:
        self.processors: tuple[SpanProcessor, ...] = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


@dataclass
class _Process:
    """What this process installed once: the providers and the metrics registry."""

    tracer_provider: ReplaySafeTracerProvider
    switch: _Switch
    meter_provider: MeterProvider
    registry: prometheus_client.CollectorRegistry
    pushes_metrics: bool
    lock: threading.Lock = field(default_factory=threading.Lock)


_process: _Process | None = None
_process_lock = threading.Lock()


def _span_exporter(settings: TelemetrySettings) -> tuple[SpanExporter, str] | None:
    kind = settings.traces_to
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stderr), "the console"
    if kind == "none":
        return None
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=settings.otlp_endpoint), "OTLP/gRPC"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = None if settings.otlp_endpoint is None else f"{settings.otlp_endpoint}/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint), "OTLP/HTTP"


def _metric_exporter(settings: TelemetrySettings) -> MetricExporter | None:
    kind = settings.metrics_to
    if kind == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    if kind == "none":
        return None
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(endpoint=settings.otlp_endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    endpoint = None if settings.otlp_endpoint is None else f"{settings.otlp_endpoint}/v1/metrics"
    return OTLPMetricExporter(endpoint=endpoint)


def _install(settings: TelemetrySettings) -> _Process:
    """The process's providers: installed by the first call, the same ones after."""
    global _process
    with _process_lock:
        if _process is not None:
            return _process
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        resource = Resource.create({SERVICE_NAME: settings.service_name})
        tracer_provider = create_tracer_provider(resource=resource, id_generator=_SystemIds())
        switch = _Switch()
        tracer_provider.add_span_processor(switch)
        trace.set_tracer_provider(tracer_provider)
        if trace.get_tracer_provider() is not tracer_provider:
            raise RuntimeError(
                "another tracer provider was installed in this process before "
                "configure_telemetry; call configure_telemetry first, before anything "
                "else sets a global OpenTelemetry tracer provider"
            )
        registry = prometheus_client.CollectorRegistry()
        readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
        pushed = _metric_exporter(settings)
        if pushed is not None:
            readers.append(PeriodicExportingMetricReader(pushed))
        # No exemplars: they draw on the global random module (see _SystemIds), and neither
        # Prometheus text nor this project's dashboards read them.
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter()
        )
        metrics.set_meter_provider(ReplaySafeMeterProvider(meter_provider))
        _process = _Process(tracer_provider, switch, meter_provider, registry, pushed is not None)
        return _process


@dataclass
class Telemetry:
    """What ``configure_telemetry`` started; ``close`` stops exporting and serving."""

    settings: TelemetrySettings
    processors: tuple[SpanProcessor, ...]
    metrics_address: str | None
    """Where this project's metrics are served (``host:port``, the port as bound)."""
    _process: _Process
    _server: WSGIServer | None = None
    _runtime: Runtime | None = None
    _closed: bool = False

    @property
    def temporal_runtime(self) -> Runtime | None:
        """A Temporal runtime serving the SDK's metrics at ``temporal_metrics_address``;
        pass it to ``Client.connect(runtime=...)``. ``None`` when that is unset."""
        return self._runtime

    def flush(self, timeout_millis: int = 10_000) -> bool:
        """Export what is queued now; False if an exporter did not finish in time."""
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def close(self) -> None:
        """Flush and stop this configuration's exporters and its metrics endpoint."""
        if self._closed:
            return
        self._closed = True
        switch = self._process.switch
        with self._process.lock:
            switch.processors = tuple(p for p in switch.processors if p not in self.processors)
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception as exc:
                logger.warning("closing a span processor failed: %r", exc)
        try:
            # Pushed metrics go out now: a command may end the process without exit hooks.
            self._process.meter_provider.force_flush(timeout_millis=5_000)
        except Exception as exc:
            logger.warning("flushing metrics failed: %r", exc)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def configure_telemetry(
    settings: TelemetrySettings | None = None,
    *,
    processors: Sequence[SpanProcessor] = (),
) -> Telemetry:
    """Install tracing and metrics for this process, as ``settings`` say.

    Spans go to the exporter of ``OTEL_TRACES_EXPORTER`` (or OTLP when an endpoint
    is set) and to any extra ``processors``; this project's metrics are served at
    ``DURABLE_METRICS_ADDRESS``. The pushed-metrics exporter and ``service.name``
    are fixed by the first call in a process.
    """
    settings = TelemetrySettings() if settings is None else settings
    process = _install(settings)
    set_trace_content(settings.trace_content)
    own: list[SpanProcessor] = []
    exporter = _span_exporter(settings)
    if exporter is not None:
        own.append(
            BatchSpanProcessor(
                _Guarded(*exporter),
                max_queue_size=settings.export_queue_size,
                max_export_batch_size=min(512, settings.export_queue_size),
            )
        )
    own.extend(processors)
    with process.lock:
        process.switch.processors = (*process.switch.processors, *own)
    telemetry = Telemetry(settings, tuple(own), None, process)
    if settings.metrics_to != "none" and not process.pushes_metrics:
        logger.warning(
            "OTEL_METRICS_EXPORTER=%s is ignored: this process's metrics pipeline was set "
            "up by an earlier configure_telemetry; configure it once, at start",
            settings.metrics_to,
        )
    address = settings.temporal_metrics_address
    if address is not None:
        try:
            config = TelemetryConfig(metrics=PrometheusConfig(bind_address=address))
            telemetry._runtime = Runtime(telemetry=config)
        except ValueError as exc:
            telemetry.close()
            raise ValueError(
                f"DURABLE_TEMPORAL_METRICS_ADDRESS={address}: cannot serve the Temporal SDK's "
                f"metrics there ({exc}); pick a free port or unset it"
            ) from None
    if settings.metrics_address is not None:
        host, _, port = settings.metrics_address.rpartition(":")
        try:
            server, _thread = prometheus_client.start_http_server(
                int(port), addr=host, registry=process.registry
            )
        except OSError as exc:
            telemetry.close()
            raise ValueError(
                f"DURABLE_METRICS_ADDRESS={settings.metrics_address}: cannot serve metrics "
                f"there ({exc.strerror or exc}); pick a free port or unset it"
            ) from None
        telemetry._server = server
        telemetry.metrics_address = f"{host}:{server.server_port}"
    return telemetry


class _SystemIds(IdGenerator):
    """Span and trace ids from the system's randomness, outside workflows (inside one the
    contrib's generator uses the workflow's deterministic random instead).

    The SDK's default draws on the global ``random`` module, whose state belongs to the
    application (a seeded simulation, a property-based test) and must not move under it.
    """

    _random = random.SystemRandom()

    def generate_span_id(self) -> int:
        span_id = self._random.getrandbits(64)
        while span_id == INVALID_SPAN_ID:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._random.getrandbits(128)
        while trace_id == INVALID_TRACE_ID:
            trace_id = self._random.getrandbits(128)
        return trace_id
