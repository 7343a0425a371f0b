"""The event activity: a run sends an event to another run, learning if it was accepted.

A workflow cannot call another workflow's update itself, and a signal answers
nothing; this activity sends the ``send_event`` update through the worker's own
client, so the sender learns whether its emit won (first emit wins).
"""

from __future__ import annotations

from temporalio import activity

from durable import DurableError
from durable_agents.adapters.temporal import (
    SEND_EVENT_ACTIVITY,
    RunEvent,
    deliver_event,
    to_application_error,
)

__all__ = ["send_event"]


@activity.defn(name=SEND_EVENT_ACTIVITY)
async def send_event(event: RunEvent) -> bool:
    handle = activity.client().get_workflow_handle(event.run_id)
    try:
        return await deliver_event(handle, event.key, event.payload)
    except DurableError as error:
        # Final answers; a transient RPC error is raised as is, and Temporal retries it.
        raise to_application_error(error) from None
