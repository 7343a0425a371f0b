"""The Temporal substrate: agents run as workflows, steps as activities (pattern B)."""

from ._client import AgentClient
from ._context import TemporalContext
from ._convert import activity_id, durable_error_from, temporal_retry_policy, to_application_error
from ._devserver import SEARCH_ATTRIBUTES, DevServer, find_temporal_binary
from ._messages import (
    EVENT_SIGNAL,
    EVENT_UPDATE,
    STATUS_QUERY,
    STEPS_QUERY,
    EventMessage,
    StepOutcome,
)

__all__ = [
    "EVENT_SIGNAL",
    "EVENT_UPDATE",
    "SEARCH_ATTRIBUTES",
    "STATUS_QUERY",
    "STEPS_QUERY",
    "AgentClient",
    "DevServer",
    "EventMessage",
    "StepOutcome",
    "TemporalContext",
    "activity_id",
    "durable_error_from",
    "find_temporal_binary",
    "temporal_retry_policy",
    "to_application_error",
]
