"""What a worker hosts and how much it runs at once, on either substrate."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from durable_agents.adapters.local import parse_duration

from ._env import EnvGroup

__all__ = ["WorkerSettings"]

_DRAIN = "DURABLE_WORKER_DRAIN_SECONDS"


class WorkerSettings(EnvGroup):
    """The worker's queue, agent modules, leases and concurrency limits."""

    task_queue: str = Field(default="durable-agents", validation_alias="TASK_QUEUE")
    """The Temporal task queue agent runs are scheduled on."""
    agent_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("durable_agents.examples.refund",), validation_alias="DURABLE_AGENT_MODULES"
    )
    """Comma-separated modules whose agents and steps are hosted."""
    lease: timedelta = Field(
        default=timedelta(seconds=30), validation_alias="DURABLE_LEASE_SECONDS"
    )
    """Local leases: how long a run stays its worker's without a renewal (seconds)."""
    drain: timedelta = Field(
        default=timedelta(seconds=30), validation_alias="DURABLE_WORKER_DRAIN_SECONDS"
    )
    """On SIGTERM or SIGINT, how long a worker lets the steps in flight finish before it
    cancels them and exits (seconds); 0 cancels them at once."""
    max_concurrent_runs: int = Field(default=100, validation_alias="DURABLE_MAX_CONCURRENT_RUNS")
    """Local runs a local worker executes at once."""
    max_recovery_attempts: int = Field(default=5, validation_alias="DURABLE_MAX_RECOVERY_ATTEMPTS")
    """How many times a local worker resumes a run whose worker died before failing it."""
    max_workflow_tasks: int | None = Field(
        default=None, validation_alias="DURABLE_MAX_WORKFLOW_TASKS"
    )
    """Workflow tasks a Temporal worker runs at once; unset: the SDK's default."""
    max_activities: int | None = Field(default=None, validation_alias="DURABLE_MAX_ACTIVITIES")
    """Steps (activities) a Temporal worker runs at once; unset: the SDK's default."""
    max_local_activities: int | None = Field(
        default=None, validation_alias="DURABLE_MAX_LOCAL_ACTIVITIES"
    )
    """Local-activity steps a Temporal worker runs at once; unset: the SDK's default."""
    retention: timedelta | None = Field(default=None, validation_alias="DURABLE_RETENTION")
    """A local worker purges runs that ended longer ago than this (``30d``, ``12h``)."""

    @field_validator("agent_modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(m.strip() for m in value.split(",") if m.strip())
        if not value:
            raise ValueError(
                "DURABLE_AGENT_MODULES is empty; name at least one module that defines agents"
            )
        return value

    @field_validator("lease", "drain", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            name = "DURABLE_LEASE_SECONDS" if info.field_name == "lease" else _DRAIN
            try:
                value = timedelta(seconds=float(value))
            except (ValueError, OverflowError):
                raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value, what="DURABLE_RETENTION")
        return value

    @model_validator(mode="after")
    def _limits(self) -> WorkerSettings:
        if self.lease <= timedelta(0):
            raise ValueError("DURABLE_LEASE_SECONDS must be a positive number of seconds")
        if self.drain < timedelta(0):
            raise ValueError(
                f"{_DRAIN} must be 0 or more seconds, got {self.drain.total_seconds():g}; "
                "0 stops a worker at once, cancelling the steps in flight"
            )
        if self.retention is not None and self.retention <= timedelta(0):
            raise ValueError("DURABLE_RETENTION must be a positive duration, such as 30d")
        if not self.task_queue.strip():
            raise ValueError("TASK_QUEUE must not be empty; unset it for `durable-agents`")
        if self.max_recovery_attempts < 0:
            raise ValueError(
                "DURABLE_MAX_RECOVERY_ATTEMPTS must be 0 or more, got "
                f"{self.max_recovery_attempts}; 0 fails a run as soon as its worker dies"
            )
        for name, limit in (
            ("DURABLE_MAX_CONCURRENT_RUNS", self.max_concurrent_runs),
            ("DURABLE_MAX_WORKFLOW_TASKS", self.max_workflow_tasks),
            ("DURABLE_MAX_ACTIVITIES", self.max_activities),
            ("DURABLE_MAX_LOCAL_ACTIVITIES", self.max_local_activities),
        ):
            if limit is not None and limit < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {limit}; unset it for the default"
                )
        return self

    def worker_limits(self) -> dict[str, int]:
        """The Temporal worker's concurrency limits that are set (the SDK's defaults otherwise)."""
        limits = {
            "max_concurrent_workflow_tasks": self.max_workflow_tasks,
            "max_concurrent_activities": self.max_activities,
            "max_concurrent_local_activities": self.max_local_activities,
        }
        return {name: value for name, value in limits.items() if value is not None}
