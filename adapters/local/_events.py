"""Sending events to local runs from outside them."""

from __future__ import annotations

import contextlib
from typing import Any

from durable import DurableRegistrationError, agent_definition, check_name
from durable._approvals import check_decision_event
from durable._patches import check_event_key

from ._store import DurableRunStore, run_not_found

__all__ = ["send_event"]


async def send_event(store: DurableRunStore, run_id: str, key: str, payload: Any) -> bool:
    """Send an event to a local run from outside; ``True`` if accepted (first emit wins).

    A payload that does not match the type the run's agent declared for ``key``
    is refused with ``DurableEventPayloadError`` and never reaches the run.
    """
    check_event_key(key)
    run = await store.load_run(check_name(run_id, what="run_id"))
    if run is None:
        raise run_not_found(run_id)
    check_decision_event(key, payload)
    with contextlib.suppress(DurableRegistrationError):
        # An agent not imported here has no declarations to check against.
        agent_definition(run.agent).check_event(key, payload)
    return (await store.emit_event(run_id, key, payload)).accepted
