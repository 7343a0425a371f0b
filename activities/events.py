"""The event activity: a run sends an event to another run, learning if it was accepted.

A workflow cannot call another workflow's update itself, and a signal answers
nothing; this activity sends the ``send_event`` update through the worker's own
client, so the sender learns whether its emit won (first emit wins).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from adapters.temporal import (
    EVENT_UPDATE,
    SEND_EVENT_ACTIVITY,
    EventMessage,
    RunEvent,
    unreachable_run,
)
from durable import ErrorCode

__all__ = ["send_event"]


@activity.defn(name=SEND_EVENT_ACTIVITY)
async def send_event(event: RunEvent) -> bool:
    handle = activity.client().get_workflow_handle(event.run_id)
    try:
        accepted: bool = await handle.execute_update(
            EVENT_UPDATE, EventMessage(key=event.key, payload=event.payload), result_type=bool
        )
    except WorkflowUpdateFailedError as failure:
        raise ApplicationError(
            f"run {event.run_id!r} refused event {event.key!r}: {failure.cause}",
            {"code": ErrorCode.EVENT_PAYLOAD_INVALID.value},
            type="DurableEventPayloadError",
            non_retryable=True,
        ) from None
    except RPCError as failure:
        if failure.status != RPCStatusCode.NOT_FOUND:
            raise  # transient: Temporal retries the activity
        error = unreachable_run(event.run_id, failure)
        raise ApplicationError(
            error.message, {"code": error.code.value}, type=type(error).__name__, non_retryable=True
        ) from None
    return accepted
