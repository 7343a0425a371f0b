"""The typed messages exchanged with Temporal: a stored contract, so change them with care."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "APPROVAL_MEMO_PREFIX",
    "EVENTS_MEMO",
    "EVENTS_MEMO_PATCH",
    "EVENTS_MEMO_WHEN_ANY_PATCH",
    "EVENT_SIGNAL",
    "EVENT_UPDATE",
    "LIVE_TOPIC",
    "MANIFEST_MEMO",
    "SEARCH_ATTRIBUTES_MEMO",
    "SEND_EVENT_ACTIVITY",
    "STATUS_QUERY",
    "STEPS_QUERY",
    "STEP_MEMO",
    "USAGE_MEMO",
    "EventMessage",
    "RunEvent",
    "StepOutcome",
]

EVENT_SIGNAL = "event"
"""Signal carrying one ``EventMessage``: ``{"key": ..., "payload": ...}``."""
EVENT_UPDATE = "send_event"
"""Update carrying one ``EventMessage``; returns whether it was accepted (first emit wins)."""
STEPS_QUERY = "steps"
LIVE_TOPIC = "live"
"""Topic of the run's live stream: steps, waits and token deltas, for watchers."""
EVENTS_MEMO = "events"
"""Memo key of the event keys an ended run accepted: a sender retried after the end
learns its key was taken (not accepted) without a worker replaying the run."""
EVENTS_MEMO_PATCH = "durable.events-memo"
"""Patch id under which ended runs record ``EVENTS_MEMO``; older histories replay without it."""
EVENTS_MEMO_WHEN_ANY_PATCH = "durable.events-memo-when-any"
"""Patch id under which an ended run that accepted no event writes no ``EVENTS_MEMO``
(absent reads as none): a memo update is a write of the server's visibility record,
paid by every run. Histories from before it replay the update they recorded."""
MANIFEST_MEMO = "manifest_hash"
"""Memo key of the run's manifest hash: starting its id again with other input is refused."""
SEARCH_ATTRIBUTES_MEMO = "search_attributes"
"""Memo flag: the run carries the custom search attributes, so it may update them."""
STEP_MEMO = "parent_step"
"""Memo of a child run: its position, intent and kind in its parent, so the parent's
steps can be read from history without a worker."""
APPROVAL_MEMO_PREFIX = "approval:"
"""Memo keys ``approval:<position>``: an approval's request and, once sent, its first
decision, ``{"request": ..., "decision": ...}``; readable with no worker running."""
USAGE_MEMO = "usage"
"""Memo key of the run's model-call totals: input_tokens, output_tokens, cost."""
SEND_EVENT_ACTIVITY = "durable.send_event"
"""Activity that sends one run's event to another (``activities/events.py``)."""
STATUS_QUERY = "status"


class EventMessage(BaseModel):
    """An event sent to a run from outside."""

    model_config = ConfigDict(extra="forbid")

    key: str
    payload: Any = None


class RunEvent(BaseModel):
    """An event one run sends to another through the event activity."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    key: str
    payload: Any = None


class StepOutcome(BaseModel):
    """What the step activity returns: the result as JSON, and the attempt that produced it."""

    result: Any
    attempt: int
