"""The Temporal substrate: agents run as workflows, steps as activities (pattern B).

Importing this package loads only its workflow-side face: the context, the
messages, the converters and the names they share, deterministic code that the
workflow sandbox passes through (``WORKFLOW_SIDE_MODULES``). Everything that
talks to a server or a process (the client, event delivery, run status, live
watching, the dev server, process helpers, the sandbox runner) is imported on
first use of its name, so workflow code never loads it.
"""

from __future__ import annotations

import importlib
import typing

from ._checkpoints import (
    CHECKPOINTS_BASE_MEMO,
    CHECKPOINTS_MEMO,
    GET_CHECKPOINT_ACTIVITY,
    PUT_CHECKPOINT_ACTIVITY,
)
from ._context import TemporalContext, run_on_workflow_step
from ._convert import (
    activity_id,
    durable_error_from,
    failure_error,
    step_of_activity,
    temporal_retry_policy,
    to_application_error,
)
from ._messages import (
    EVENT_SIGNAL,
    EVENT_UPDATE,
    EVENTS_MEMO,
    EVENTS_MEMO_PATCH,
    EVENTS_MEMO_WHEN_ANY_PATCH,
    LIVE_TOPIC,
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
from ._search import AGENT_NAME, PROJECT_ID, SEARCH_ATTRIBUTES, WAITING_FOR

if typing.TYPE_CHECKING:
    from ._client import AgentClient
    from ._compat import check_workflows
    from ._connect import TemporalConnectError, connect
    from ._delivery import deliver_event, unreachable_run
    from ._devserver import DevServer, PortInUseError, find_temporal_binary
    from ._live import ActivityTokens, watch_stream
    from ._process import exit_without_teardown
    from ._sandbox import PASSTHROUGH_MODULES, WORKFLOW_SIDE_MODULES, workflow_runner
    from ._status import RunSnapshot, state_of

_OUTSIDE_WORKFLOWS = {
    "AgentClient": "_client",
    "check_workflows": "_compat",
    "TemporalConnectError": "_connect",
    "connect": "_connect",
    "deliver_event": "_delivery",
    "unreachable_run": "_delivery",
    "DevServer": "_devserver",
    "PortInUseError": "_devserver",
    "find_temporal_binary": "_devserver",
    "ActivityTokens": "_live",
    "watch_stream": "_live",
    "exit_without_teardown": "_process",
    "PASSTHROUGH_MODULES": "_sandbox",
    "WORKFLOW_SIDE_MODULES": "_sandbox",
    "workflow_runner": "_sandbox",
    "RunSnapshot": "_status",
    "state_of": "_status",
}
"""Names used outside workflows only, by the module that defines each; loaded on first use."""


def __getattr__(name: str) -> object:
    module = _OUTSIDE_WORKFLOWS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AGENT_NAME",
    "CHECKPOINTS_BASE_MEMO",
    "CHECKPOINTS_MEMO",
    "EVENTS_MEMO",
    "EVENTS_MEMO_PATCH",
    "EVENTS_MEMO_WHEN_ANY_PATCH",
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
    "WORKFLOW_SIDE_MODULES",
    "ActivityTokens",
    "AgentClient",
    "DevServer",
    "EventMessage",
    "PortInUseError",
    "RunEvent",
    "RunSnapshot",
    "StepOutcome",
    "TemporalConnectError",
    "TemporalContext",
    "activity_id",
    "check_workflows",
    "connect",
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
