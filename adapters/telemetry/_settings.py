"""``TelemetrySettings``: what traces and metrics this process exports, read once at start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TelemetrySettings"]


def _address(value: str | None, name: str) -> str | None:
    """``host:port`` with a numeric port, or ``None`` (off)."""
    if value is None or not value.strip():
        return None
    host, colon, port = value.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            "must be host:port, such as 127.0.0.1:9464 (port 0 picks a free one), "
            f"got {value!r}; unset it to turn these metrics off"
        )
    return f"{host}:{port}"


class TelemetrySettings(BaseSettings):
    """Tracing and metrics, from ``DURABLE_*`` and the standard ``OTEL_*`` variables.

    Everything is off by default: no exporter, no metrics endpoint, no prompts in spans.
    """

    model_config = SettingsConfigDict(env_prefix="DURABLE_", extra="ignore", populate_by_name=True)

    trace_content: bool = False
    """``DURABLE_TRACE_CONTENT``: put prompts and completions on model-call spans (as
    events). Off: spans carry model names, token counts and cost, never text."""
    metrics_address: str | None = None
    """``DURABLE_METRICS_ADDRESS``: ``host:port`` where this project's own metrics are
    served for Prometheus (``/metrics``); unset, they are served nowhere."""
    temporal_metrics_address: str | None = None
    """``DURABLE_TEMPORAL_METRICS_ADDRESS``: ``host:port`` where the Temporal SDK's runtime
    metrics (workflow and activity task latencies, slots, polls) are served for Prometheus."""
    traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        default=None, validation_alias="OTEL_TRACES_EXPORTER"
    )
    """``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or ``none``. Unset: ``otlp`` when an
    OTLP endpoint is set, else ``none``."""
    metrics_exporter: Literal["otlp", "console", "none"] | None = Field(
        default=None, validation_alias="OTEL_METRICS_EXPORTER"
    )
    """``OTEL_METRICS_EXPORTER``: push this project's metrics by ``otlp`` or to the
    ``console`` as well; unset, as ``OTEL_TRACES_EXPORTER``."""
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    """``OTEL_EXPORTER_OTLP_ENDPOINT``: the collector, such as ``http://localhost:4318``
    (HTTP) or ``http://localhost:4317`` (gRPC)."""
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
    )
    """``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf`` (the default) or ``grpc``."""
    service_name: str = Field(
        default="durable-agents",
        min_length=1,
        validation_alias="OTEL_SERVICE_NAME",
    )
    """``OTEL_SERVICE_NAME``: the ``service.name`` every span and metric carries."""
    export_queue_size: int = Field(default=2048, ge=1)
    """``DURABLE_EXPORT_QUEUE_SIZE``: spans held for export at most; beyond it new spans are
    dropped (and counted in a log line) rather than holding up a run."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        """The settings the environment (or ``env``) gives; ``ValueError`` naming every
        unusable variable and what it takes."""
        try:
            if env is None:
                return cls()
            wanted = {_variable(name): name for name in cls.model_fields}
            given = {wanted[k]: v for k, v in env.items() if k in wanted}
            return cls.model_validate(given)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else "?"
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{_variable(field)}: {message}")
            raise ValueError("; ".join(problems)) from None

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, value: str | None) -> str | None:
        return _address(value, "DURABLE_METRICS_ADDRESS")

    @field_validator("temporal_metrics_address")
    @classmethod
    def _temporal_metrics_address(cls, value: str | None) -> str | None:
        return _address(value, "DURABLE_TEMPORAL_METRICS_ADDRESS")

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"must start with http:// or https://, such as http://localhost:4318, got {value!r}"
            )
        return value.rstrip("/")

    @property
    def traces_to(self) -> Literal["otlp", "console", "none"]:
        """Where spans go: the exporter asked for, else OTLP when an endpoint is set."""
        if self.traces_exporter is not None:
            return self.traces_exporter
        return "otlp" if self.otlp_endpoint else "none"

    @property
    def metrics_to(self) -> Literal["otlp", "console", "none"]:
        if self.metrics_exporter is not None:
            return self.metrics_exporter
        return "otlp" if self.otlp_endpoint else "none"


def _variable(field: str) -> str:
    """The environment variable of a settings field (or alias)."""
    alias = TelemetrySettings.model_fields.get(field)
    if alias is not None and isinstance(alias.validation_alias, str):
        return alias.validation_alias
    if field.isupper():
        return field
    return f"DURABLE_{field.upper()}"
