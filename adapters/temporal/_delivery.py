"""Delivering an event to a run on Temporal, and the answers about a run that is gone."""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from typing import Any, overload

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from durable import (
    DurableApprovalNotFoundError,
    DurableError,
    DurableEventPayloadError,
    DurableRegistrationError,
    DurableRunError,
    DurableRunNotFoundError,
    agent_definition,
)
from durable._failures import run_ended_error

from ._messages import EVENT_SIGNAL, EVENT_UPDATE, EVENTS_MEMO, EventMessage

__all__ = ["deliver_event", "unreachable_run"]

_UPDATE_OUTLIVED = "AcceptedUpdateCompletedWorkflow"
"""Temporal's failure type for an update whose run ended before the update finished."""


@overload
async def deliver_event(handle: WorkflowHandle[Any, Any], key: str, payload: Any) -> bool: ...
@overload
async def deliver_event(
    handle: WorkflowHandle[Any, Any], key: str, payload: Any, *, answer_within: timedelta
) -> bool | None: ...
async def deliver_event(
    handle: WorkflowHandle[Any, Any],
    key: str,
    payload: Any,
    *,
    answer_within: timedelta | None = None,
) -> bool | None:
    """Send one checked event through the run's update; ``True`` if it was accepted.

    The one place an answer about an event is read, for clients and for the
    activity a run sends events to other runs with. A refused payload raises
    ``DurableEventPayloadError``; a run that ended, before or during the update,
    answers ``False`` for a key it took (a retried sender) and
    ``DurableRunEndedError`` for a new one. Transient RPC errors are raised as
    they are, for the caller to retry.

    Only a worker can answer an update. With ``answer_within``, when none
    answers in time the event goes by signal instead and the answer is
    ``None``: delivered, applied when a worker runs the run, not yet
    acknowledged. The update may still arrive too; first emit wins, so the
    second copy is not accepted and harms nothing.
    """
    run_id = handle.id
    message = EventMessage(key=key, payload=payload)
    try:
        accepted: bool = await handle.execute_update(
            EVENT_UPDATE, message, result_type=bool, rpc_timeout=answer_within
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        if answer_within is None:
            raise
        await _check_declared(handle, key, payload)
        try:
            await handle.signal(EVENT_SIGNAL, message)
        except RPCError as failure:
            if failure.status != RPCStatusCode.NOT_FOUND:
                raise
            return await _after_the_end(handle, key, failure)
        return None
    except WorkflowUpdateFailedError as failure:
        cause = failure.cause
        if isinstance(cause, ApplicationError) and cause.type == _UPDATE_OUTLIVED:
            return await _after_the_end(handle, key, None)
        raise _refused(run_id, key, failure.cause) from None
    except RPCError as failure:
        if failure.status != RPCStatusCode.NOT_FOUND:
            raise
        return await _after_the_end(handle, key, failure)
    return accepted


async def _check_declared(handle: WorkflowHandle[Any, Any], key: str, payload: Any) -> None:
    """Check a payload as the update's validator would, before it goes by signal.

    A signal cannot be refused: the run would log a bad payload and drop it,
    while the sender was told it was delivered.
    """
    try:
        described = await handle.describe()
    except RPCError:
        return  # the signal itself reports a missing run
    with contextlib.suppress(DurableRegistrationError):  # an agent not imported here
        agent_definition(described.workflow_type).check_event(key, payload)


async def _after_the_end(
    handle: WorkflowHandle[Any, Any], key: str, failure: RPCError | None
) -> bool:
    """The answer for an event the run could not take: it ended, or was never there.

    Temporal says "not found" both for a run that never existed and for an
    update the run's end aborted, so the run's own description decides.
    """
    try:
        described = await handle.describe()
    except RPCError as missing:
        if missing.status == RPCStatusCode.NOT_FOUND:
            raise unreachable_run(handle.id, missing) from None
        raise
    if described.status == WorkflowExecutionStatus.RUNNING and failure is not None:
        raise failure  # neither ended nor missing: transient, for the caller to retry
    if key in await described.memo_value(EVENTS_MEMO, []):
        return False
    raise run_ended_error(handle.id) from None


def _refused(run_id: str, key: str, cause: BaseException | None) -> DurableError:
    """The update validator's refusal, said once.

    The validator's error arrives as its text, which already starts with its code.
    """
    text = cause.message if isinstance(cause, FailureError) else str(cause)
    code = re.match(r"^\[(\w+)\] ", text)
    text = re.sub(r"^\[\w+\] ", "", text)
    if code is not None and code[1] == DurableApprovalNotFoundError.code:
        return DurableApprovalNotFoundError(text)
    return DurableEventPayloadError(f"run {run_id!r} refused event {key!r}: {text}")


def unreachable_run(run_id: str, failure: RPCError) -> DurableRunError:
    """The durable error for a NOT_FOUND answer about a run: ended, or never there."""
    if "already completed" in failure.message:
        return run_ended_error(run_id)
    return DurableRunNotFoundError(
        f"no run {run_id!r} on this Temporal namespace ({failure.message}); check the run id"
    )
