"""The Temporal substrate: agents run as workflows, steps as activities (pattern B)."""

from ._client import SEARCH_ATTRIBUTES_MEMO, AgentClient
from ._context import TemporalContext
from ._convert import activity_id, durable_error_from, temporal_retry_policy, to_application_error
from ._devserver import DevServer, find_temporal_binary
from ._messages import (
    EVENT_SIGNAL,
    EVENT_UPDATE,
    STATUS_QUERY,
    STEPS_QUERY,
    EventMessage,
    StepOutcome,
)
from ._process import exit_without_teardown
from ._sandbox import PASSTHROUGH_MODULES, workflow_runner
from ._search import AGENT_NAME, PROJECT_ID, SEARCH_ATTRIBUTES, WAITING_FOR

__all__ = [
    "AGENT_NAME",
    "EVENT_SIGNAL",
    "EVENT_UPDATE",
    "PASSTHROUGH_MODULES",
    "PROJECT_ID",
    "SEARCH_ATTRIBUTES",
    "SEARCH_ATTRIBUTES_MEMO",
    "STATUS_QUERY",
    "STEPS_QUERY",
    "WAITING_FOR",
    "AgentClient",
    "DevServer",
    "EventMessage",
    "StepOutcome",
    "TemporalContext",
    "activity_id",
    "durable_error_from",
    "exit_without_teardown",
    "find_temporal_binary",
    "temporal_retry_policy",
    "to_application_error",
    "workflow_runner",
]
