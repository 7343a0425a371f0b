"""What a run on Temporal is doing, told truthfully with or without a worker.

The run's worker answers the steps and what the run waits for through a query,
but only a live worker on the run's task queue can answer one. Describe and
history need none: they give the state, the task queue, the pending step's live
attempt and last failure, the run's failure and the steps run as activities.
A run that continued as new started its latest execution with the records of
the ones before (``RunCarry``): history gives those whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.failure.v1 import Failure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from durable import StepRecord, StepStatus
from durable._failures import cancelled_error

from ._carry import RunCarry, unpack
from ._convert import durable_error_from, failure_error, step_of_activity
from ._messages import SEND_EVENT_ACTIVITY, STATUS_QUERY, STEP_MEMO, STEPS_QUERY
from ._search import WAITING_FOR

__all__ = ["QUERY_WITHIN", "RunSnapshot", "run_snapshot", "state_of"]

QUERY_WITHIN = timedelta(seconds=5)
"""How long a status waits for the run's worker to answer its query."""


@dataclass(frozen=True)
class RunSnapshot:
    """A run's state as Temporal knows it, with or without a worker."""

    run_id: str
    agent: str
    state: str
    """``running``, ``completed``, ``failed``, ``terminated``, ``timed_out``, ..."""
    task_queue: str
    steps: list[StepRecord]
    waiting_for: list[str] | None
    """The events the run waits for; ``None`` when no worker answered."""
    unanswered: str | None = None
    """Why the worker's query gave no answer (the steps then come from history)."""
    failure: str | None = None
    """How the run failed, for a failed run; why it was cancelled, for a cancelled one."""
    next_attempts: dict[int, str] = field(default_factory=dict)
    """When a retrying step's next attempt starts, by step index."""


def state_of(status: WorkflowExecutionStatus | None, waiting_for: str | None = None) -> str:
    """A workflow's state in the words local runs use (``cancelled``, not ``canceled``).

    A running workflow whose ``WaitingFor`` search attribute is set waits: for an
    approval (``approval:<id>``) or an event. The status query, when a worker
    answers it, also knows whether a step runs beside the wait.
    """
    if status is None:
        return "unknown"
    if status == WorkflowExecutionStatus.RUNNING and waiting_for:
        return "waiting_for_approval" if waiting_for.startswith("approval:") else "waiting"
    return "cancelled" if status == WorkflowExecutionStatus.CANCELED else status.name.lower()


async def workflow_pollers(client: Client, task_queue: str) -> int | None:
    """Workers polling ``task_queue`` for workflow tasks; ``None`` if the server did not say."""
    try:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=QUERY_WITHIN,
        )
    except RPCError:
        return None
    return len(answer.pollers)


_ACTIVITY_ENDED_IN_FAILURE = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
}
"""History events that end an activity's last attempt in failure, and where their failure is."""

_CHILD_ENDED: dict[int, tuple[str, StepStatus]] = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "child_workflow_execution_completed_event_attributes", "completed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "child_workflow_execution_failed_event_attributes", "failed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "child_workflow_execution_canceled_event_attributes", "failed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "child_workflow_execution_timed_out_event_attributes", "failed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "child_workflow_execution_terminated_event_attributes", "failed"),
}  # fmt: skip
"""History events that end a child run, where their attributes are, and the step's status."""


def _no_worker(task_queue: str) -> str:
    return (
        f"no worker polls task queue {task_queue!r}; start `durable worker` with "
        f"TASK_QUEUE={task_queue} to run it"
    )


async def _failure_text(client: Client, failure: Failure, run_id: str) -> str:
    error = await client.data_converter.decode_failure(failure)
    durable = durable_error_from(error, run_id)
    return str(durable) if durable is not None else f"{type(error).__name__}: {error}"


async def run_snapshot(
    client: Client, run_id: str, *, query_within: timedelta = QUERY_WITHIN
) -> RunSnapshot:
    """The run's state; raises ``RPCError`` NOT_FOUND when there is no such run."""
    handle = client.get_workflow_handle(run_id)
    described = await handle.describe()
    raw = described.raw_description
    task_queue = raw.execution_config.task_queue.name
    state = state_of(described.status, described.typed_search_attributes.get(WAITING_FOR))
    running = described.status == WorkflowExecutionStatus.RUNNING
    history = await handle.fetch_history()
    failure: str | None = None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            attributes = event.workflow_execution_failed_event_attributes
            failure = await _failure_text(client, attributes.failure, run_id)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            cause = event.workflow_execution_cancel_requested_event_attributes.cause
            if described.status == WorkflowExecutionStatus.CANCELED:
                error = cancelled_error(run_id, cause or "no reason given")
                failure = f"{type(error).__name__}: {error.message}"

    steps: list[StepRecord] | None = None
    waiting_for: list[str] | None = None
    unanswered: str | None = None
    if running and await workflow_pollers(client, task_queue) == 0:
        unanswered = _no_worker(task_queue)
    else:
        try:
            status: dict[str, Any] = await handle.query(
                STATUS_QUERY, result_type=dict[str, Any], rpc_timeout=query_within
            )
            steps = await handle.query(
                STEPS_QUERY, result_type=list[StepRecord], rpc_timeout=query_within
            )
            waiting_for = list(status["waiting_for"])
            if running:
                state = str(status["status"])  # the worker knows whether a step runs beside
        except WorkflowQueryFailedError as exc:
            # A worker answered, but could not replay the run (a nondeterminism failure).
            unanswered = f"the worker could not replay the run: {exc}"
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise
            unanswered = (
                f"no worker answered within {query_within.total_seconds():g}s; "
                + _no_worker(task_queue)
            )
    if steps is None:
        carried = await _carried_steps(client, history.events)
        steps = _steps_from_history(run_id, history.events, carried=carried)
    steps, next_attempts = _with_pending(steps, raw.pending_activities)
    return RunSnapshot(
        run_id=run_id,
        agent=described.workflow_type,
        state=state,
        task_queue=task_queue,
        steps=steps,
        waiting_for=[] if not running else waiting_for,
        unanswered=unanswered,
        failure=failure,
        next_attempts=next_attempts,
    )


async def _carried_steps(client: Client, events: Any) -> list[StepRecord]:
    """The steps of the executions before this one, as it was started with them."""
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        return []
    payloads = events[0].workflow_execution_started_event_attributes.input.payloads
    if len(payloads) < 2:
        return []  # the run's first execution: nothing came before it
    (carry,) = await client.data_converter.decode([payloads[1]], [RunCarry])
    assert isinstance(carry, RunCarry)
    return unpack(carry.state).steps


def _steps_from_history(
    run_id: str, events: Any, *, carried: list[StepRecord] | None = None
) -> list[StepRecord]:
    """The steps run as activities, as history records them (no worker needed), after
    the ``carried`` steps of the executions before this one."""
    steps: dict[int, StepRecord] = {record.step_index: record for record in carried or ()}
    scheduled: dict[int, int] = {}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child = _child_step(run_id, event)
            if child is not None:
                scheduled[event.event_id] = child.step_index
                steps[child.step_index] = child
        elif kind in _CHILD_ENDED:
            where, status = _CHILD_ENDED[kind]
            ended = getattr(event, where)
            index_of = scheduled.get(ended.initiated_event_id)
            if index_of is not None:
                steps[index_of] = replace(steps[index_of], status=status)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            position = step_of_activity(attributes.activity_id)
            if position is None:
                continue
            index, intent = position
            scheduled[event.event_id] = index
            is_event = attributes.activity_type.name == SEND_EVENT_ACTIVITY
            steps[index] = StepRecord(
                run_id=run_id,
                step_index=index,
                intent=intent,
                kind="event" if is_event else "logic",
                input_hash="",
                status="running",
                attempts=1,
                started_at=event.event_time.ToDatetime(),
            )
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            index_of = scheduled.get(attributes.scheduled_event_id)
            if index_of is not None:
                steps[index_of] = replace(steps[index_of], attempts=attributes.attempt)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            index_of = scheduled.get(completed.scheduled_event_id)
            if index_of is not None:
                steps[index_of] = replace(steps[index_of], status="completed")
        elif kind in _ACTIVITY_ENDED_IN_FAILURE:
            ended = getattr(event, _ACTIVITY_ENDED_IN_FAILURE[kind])
            index_of = scheduled.get(ended.scheduled_event_id)
            if index_of is not None:
                steps[index_of] = replace(
                    steps[index_of], status="failed", error=failure_error(ended.failure)
                )
    return [steps[index] for index in sorted(steps)]


def _child_step(run_id: str, event: Any) -> StepRecord | None:
    """The parent's step of a child run, from the position its memo carries."""
    attributes = event.start_child_workflow_execution_initiated_event_attributes
    payload = attributes.memo.fields.get(STEP_MEMO)
    if payload is None:
        return None
    try:
        step = json.loads(payload.data)
        index, intent, kind = int(step["step"]), str(step["intent"]), str(step["kind"])
    except (ValueError, KeyError, TypeError):
        return None
    return StepRecord(
        run_id=run_id,
        step_index=index,
        intent=intent,
        kind="conversation" if kind == "conversation" else "agent",
        input_hash="",
        status="running",
        attempts=1,
        started_at=event.event_time.ToDatetime(),
    )


def _with_pending(steps: list[StepRecord], pending: Any) -> tuple[list[StepRecord], dict[int, str]]:
    """The live attempt and last failure of each step still pending on the server.

    The workflow learns a step's attempts only when the step ends, so while it
    retries only the server's pending activity knows them.
    """
    by_index = {record.step_index: i for i, record in enumerate(steps)}
    next_attempts: dict[int, str] = {}
    merged = list(steps)
    for activity in pending:
        position = step_of_activity(activity.activity_id)
        if position is None or position[0] not in by_index:
            continue
        at = by_index[position[0]]
        record = merged[at]
        error = record.error
        if activity.HasField("last_failure"):
            error = failure_error(activity.last_failure)
        merged[at] = replace(record, attempts=max(activity.attempt, record.attempts), error=error)
        if activity.HasField("next_attempt_schedule_time"):
            when = activity.next_attempt_schedule_time.ToDatetime().strftime("%H:%M:%S")
            next_attempts[position[0]] = f"{when} UTC"
    return merged, next_attempts
