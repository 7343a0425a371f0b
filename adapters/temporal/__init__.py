"""The Temporal substrate: agents run as workflows, steps as activities (pattern B)."""

from ._checkpoints import (
    CHECKPOINTS_BASE_MEMO,
    CHECKPOINTS_MEMO,
    GET_CHECKPOINT_ACTIVITY,
    PUT_CHECKPOINT_ACTIVITY,
)
from ._client import AgentClient
from ._context import TemporalContext, run_on_workflow_step
from ._convert import (
    activity_id,
    durable_error_from,
    failure_error,
    step_of_activity,
    temporal_retry_policy,
    to_application_error,
)
from ._delivery import deliver_event, unreachable_run
from ._devserver import DevServer, PortInUseError, find_temporal_binary
from ._live import LIVE_TOPIC, ActivityTokens, watch_stream
from ._messages import (
    EVENT_SIGNAL,
    EVENT_UPDATE,
    EVENTS_MEMO,
    EVENTS_MEMO_PATCH,
    MANIFEST_MEMO,
    SEARCH_ATTRIBUTES_MEMO,
    SEND_EVENT_ACTIVITY,
    STATUS_QUERY,
    STEPS_QUERY,
    USAGE_MEMO,
    EventMessage,
    RunEvent,
    StepOutcome,
)
from ._process import exit_without_teardown
from ._sandbox import PASSTHROUGH_MODULES, workflow_runner
from ._search import AGENT_NAME, PROJECT_ID, SEARCH_ATTRIBUTES, WAITING_FOR
from ._status import RunSnapshot, state_of

__all__ = [
    "AGENT_NAME",
    "CHECKPOINTS_BASE_MEMO",
    "CHECKPOINTS_MEMO",
    "EVENTS_MEMO",
    "EVENTS_MEMO_PATCH",
    "EVENT_SIGNAL",
    "EVENT_UPDATE",
    "GET_CHECKPOINT_ACTIVITY",
    "LIVE_TOPIC",
    "MANIFEST_MEMO",
    "PASSTHROUGH_MODULES",
    "PROJECT_ID",
    "PUT_CHECKPOINT_ACTIVITY",
    "SEARCH_ATTRIBUTES",
    "SEARCH_ATTRIBUTES_MEMO",
    "SEND_EVENT_ACTIVITY",
    "STATUS_QUERY",
    "STEPS_QUERY",
    "USAGE_MEMO",
    "WAITING_FOR",
    "ActivityTokens",
    "AgentClient",
    "DevServer",
    "EventMessage",
    "PortInUseError",
    "RunEvent",
    "RunSnapshot",
    "StepOutcome",
    "TemporalContext",
    "activity_id",
    "deliver_event",
    "durable_error_from",
    "exit_without_teardown",
    "failure_error",
    "find_temporal_binary",
    "run_on_workflow_step",
    "state_of",
    "step_of_activity",
    "temporal_retry_policy",
    "to_application_error",
    "unreachable_run",
    "watch_stream",
    "workflow_runner",
]
