"""``TemporalContext``: the ``DurableContext`` of an agent running as a Temporal workflow.

Pattern B: Temporal's history is the only store. A step is an activity whose
type is the step's name, whose id is position plus intent (so Temporal's replay
check catches a changed intent), and whose summary is the intent. ``now`` and
``uuid`` are Temporal's deterministic values, ``sleep`` a timer, and
``await_event`` a condition with a durable timeout. This module does no I/O.
"""

from __future__ import annotations

import asyncio
import uuid as _uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple, Unpack

from pydantic import ValidationError
from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStreamState
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from durable import (
    UNSET,
    USAGE_KINDS,
    AgentDefinition,
    DelegationPolicy,
    DurableApprovalNotFoundError,
    DurableContext,
    DurableRunManifest,
    JsonCodec,
    LiveEvent,
    RetryPolicy,
    StepError,
    StepKind,
    StepOptions,
    StepRecord,
    WaitingState,
    add_usage,
    as_timedelta,
    canonical_hash,
    check_arguments,
    check_name,
    event_payload,
    step_definition,
)
from durable._approvals import APPROVAL_KEY_PREFIX, Approvals, approval_id
from durable._failures import (
    await_timeout_error,
    event_label,
    event_payload_error,
    heartbeat_timeout_error,
    step_error_from,
    step_failed_error,
    step_label,
    step_timeout_error,
    unrecordable,
)
from durable._patches import Patches, check_event_key
from durable_agents.adapters.telemetry import (
    RunGauge,
    names,
    run_attributes,
    spans,
    wait_attributes,
)

from ._carry import CarriedState
from ._checkpoints import TemporalCheckpoints
from ._children import TemporalChildren
from ._convert import activity_id, durable_error_from, temporal_retry_policy
from ._messages import (
    APPROVAL_MEMO_PREFIX,
    SEND_EVENT_ACTIVITY,
    USAGE_MEMO,
    RunEvent,
    StepOutcome,
)
from ._replay import TemporalReplay
from ._search import WAITING_FOR

__all__ = ["TemporalContext", "run_on_workflow_step"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class TemporalContext(TemporalChildren, Approvals, TemporalReplay, Patches, TemporalCheckpoints):
    """Implements ``DurableContext`` inside a workflow; ``events`` is the run's event map.

    ``carried`` is what the executions before this one recorded, replayed position by
    position; ``stream_state`` gives the live stream's state to carry on continuing.
    """

    def __init__(
        self,
        *,
        project_id: str,
        scenario_id: str | None,
        events: dict[str, Any],
        declared: Mapping[str, JsonCodec[Any]] | None = None,
        search_attributes: bool = False,
        live: Callable[[LiveEvent], None] | None = None,
        manifest: DurableRunManifest | None = None,
        agent: AgentDefinition | None = None,
        before_continue: Callable[[], Awaitable[None]] | None = None,
        carried: CarriedState | None = None,
        execution: int = 1,
        stream_state: Callable[[], WorkflowStreamState] | None = None,
    ) -> None:
        self._run_id = workflow.info().workflow_id
        self._project_id = project_id
        self._scenario_id = scenario_id
        self.events = events
        self.steps: list[StepRecord] = []
        self.waiting: dict[str, datetime | None] = {}
        self.waiting_as: dict[str, WaitingState] = {}
        self._approvals: dict[str, dict[str, Any]] = {}
        """Memo entries of this run's approvals, by decision key."""
        self._codecs: dict[Any, JsonCodec[Any]] = {}
        self._declared = dict(declared or {})
        self._wakes_on: Callable[[], bool] | None = None
        self.usage: dict[str, float | None] = {} if carried is None else dict(carried.usage)
        self._search_attributes = search_attributes
        self._live = live
        self._manifest = manifest
        self._agent = agent
        self._before_continue = before_continue
        self._stream_state = stream_state
        self.gauge = RunGauge("temporal")
        """This run in the run gauges; moves made while history replays record nothing."""
        self._init_temporal_children()
        self._init_replay(carried, execution=execution)
        self._init_checkpoints()
        self._init_patches()

    def _own_manifest(self) -> DurableRunManifest:
        if self._manifest is None:
            raise RuntimeError("this context was made without its run's manifest")
        return self._manifest

    def _own_policy(self) -> DelegationPolicy | None:
        manifest = self._own_manifest()
        agent = self._agent
        return manifest.delegation or (None if agent is None else agent.delegation)

    def _next_position(self) -> int:
        return len(self.steps)

    def _cancel_reason(self) -> str | None:
        return workflow.cancellation_reason()

    async def has_event(self, key: str) -> bool:
        check_event_key(key)
        record = await self._take(f"has_event:{key}", "event")
        if record is not None:
            return bool(self._outcome(record).result["arrived"])
        index = self._begin(f"has_event:{key}", "event")
        arrived = key in self.events
        self._finish(index, status="completed", result={"arrived": arrived})
        return arrived

    def continue_as_new_suggested(self) -> bool:
        self._manages_continue_as_new()
        return workflow.info().is_continue_as_new_suggested()

    async def continue_as_new(self, input: Any) -> NoReturn:
        agent = self._agent
        if agent is None:
            raise RuntimeError("this context was made without its agent's definition")
        data = agent.input.encode(input, what=f"the input of agent {agent.name!r}")
        manifest = self._own_manifest().model_copy(update={"input": data})
        await self._continue_as_new(manifest, positions=False)

    def publish(self, event: LiveEvent) -> bool:
        """Append to the run's live stream; replays rebuild it identically."""
        if self.replaying:
            return False  # the execution that recorded these positions published it
        if self._live is not None:
            self._live(event.model_copy(update={"at": workflow.now()}))
        return True

    def settled(self) -> bool:
        """True when the agent is blocked on something that has not happened yet.

        Temporal evaluates conditions only once no coroutine can run, so at that
        moment the agent waits either on an unresolved activity or timer, or on an
        event still missing. Event handlers wait for this state, so they apply
        external events at the same point of the agent's progress on every replay.
        """
        return self._wakes_on is None or not self._wakes_on()

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def project_id(self) -> str:
        return self._project_id

    @property
    def scenario_id(self) -> str | None:
        return self._scenario_id

    def _begin(
        self, intent: str, kind: StepKind, input_hash: str = "", deadline: datetime | None = None
    ) -> int:
        check_name(intent, what="step intent")
        index = len(self.steps)
        self._check_fresh(index)
        self.steps.append(
            StepRecord(
                run_id=self._run_id,
                step_index=index,
                intent=intent,
                kind=kind,
                input_hash=input_hash,
                status="running",
                attempts=1,
                started_at=workflow.now(),
                deadline=deadline,
            )
        )
        return index

    def _finish(self, index: int, **changes: Any) -> None:
        changes.setdefault("completed_at", workflow.now())
        self.steps[index] = replace(self.steps[index], **changes)

    async def step(
        self,
        intent: str,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: *Ts,
        input_fingerprint: object = UNSET,
        kind: StepKind = "logic",
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        heartbeat: timedelta | float | None = None,
    ) -> T:
        definition = step_definition(fn)
        input_hash = "" if input_fingerprint is UNSET else canonical_hash(input_fingerprint)
        # Before scheduling: an activity input over the limit could never be recorded.
        check_arguments(args, what=f"step {intent!r} ({definition.name})")
        record = await self._take(intent, kind, input_hash, waits=True)
        if record is not None:
            replayed: T = definition.result.decode(
                self._outcome(record).result,
                what=step_label(record.step_index, intent, definition.name),
            )
            return replayed
        index = self._begin(intent, kind, input_hash)
        label = step_label(index, intent, definition.name)
        options = definition.options.with_overrides(
            timeout=timeout, retry=retry, heartbeat=heartbeat
        )
        call: dict[str, Any] = {
            "args": args,
            "activity_id": activity_id(index, intent, input_hash),
            "start_to_close_timeout": options.timeout,
            "retry_policy": temporal_retry_policy(options.retry),
            "result_type": StepOutcome,
        }
        self.publish(LiveEvent(kind="step_started", step=index, intent=intent, attempt=1))
        try:
            if options.local_activity:
                # The UI shows a local activity by its id, which already reads
                # "<position>:<intent>"; a summary would only add latency here.
                outcome = await self._arrival(
                    index, workflow.execute_local_activity(definition.name, **call)
                )
            else:
                outcome = await self._arrival(
                    index,
                    workflow.execute_activity(
                        definition.name,
                        summary=intent,
                        heartbeat_timeout=options.heartbeat_timeout,
                        **call,
                    ),
                )
        except ActivityError as failure:
            error, attempts = _activity_failure(failure, label, options)
            self._finish(index, status="failed", error=error, attempts=attempts)
            self.publish(
                LiveEvent(kind="step_failed", step=index, intent=intent, error=error.message)
            )
            unrecorded = unrecordable(error)
            if unrecorded is not None:
                raise self._raising(index, unrecorded) from None
            raise self._raising(
                index,
                step_failed_error(
                    intent, index, error, attempts, maximum_attempts=options.retry.maximum_attempts
                ),
            ) from None
        value: T = definition.result.decode(outcome.result, what=label)
        self._finish(index, status="completed", result=outcome.result, attempts=outcome.attempt)
        self.publish(LiveEvent(kind="step_completed", step=index, intent=intent))
        if kind in USAGE_KINDS:
            # The run's totals in the memo: visible in the UI and to clients while it runs.
            workflow.upsert_memo({USAGE_MEMO: add_usage(self.usage, outcome.result)})
        return value

    async def now(self) -> datetime:
        record = await self._take("now", "deterministic")
        if record is not None:
            return datetime.fromisoformat(self._outcome(record).result)
        index = self._begin("now", "deterministic")
        value = workflow.now()
        self._finish(index, status="completed", result=value.isoformat())
        return value

    async def uuid(self) -> _uuid.UUID:
        record = await self._take("uuid", "deterministic")
        if record is not None:
            return _uuid.UUID(self._outcome(record).result)
        index = self._begin("uuid", "deterministic")
        value = workflow.uuid4()
        self._finish(index, status="completed", result=str(value))
        return value

    async def sleep(self, duration: timedelta | float) -> None:
        delta = as_timedelta(duration, what="sleep duration")
        if await self._take("sleep", "timer", waits=True) is not None:
            return
        index = self._begin("sleep", "timer", deadline=workflow.now() + delta)
        self.publish(LiveEvent(kind="sleeping", step=index, until=workflow.now() + delta))
        await self._arrival(index, workflow.sleep(delta, summary=f"sleep {delta}"))
        self._finish(index, status="completed")

    async def await_event(
        self,
        key: str,
        *,
        timeout: timedelta | float | None = None,
        type: Any = None,
        waiting_as: WaitingState = "waiting",
    ) -> Any:
        check_event_key(key)
        record = await self._take(f"await_event:{key}", "event", waits=True)
        if record is not None:
            payload = self._outcome(record).result
            codec = self._codec_for(key, type)
            label = event_label(key, self._run_id)
            return payload if codec is None else codec.decode(payload, what=label)
        wait = None if timeout is None else as_timedelta(timeout, what="await_event timeout")
        deadline = None if wait is None else workflow.now() + wait
        index = self._begin(f"await_event:{key}", "event", deadline=deadline)
        label = event_label(key, self._run_id)
        self.waiting[key] = deadline
        self.waiting_as[key] = waiting_as
        until = f" until {deadline.isoformat()}" if deadline is not None else ""
        if waiting_as == "waiting_for_approval":
            identity = approval_id(self._run_id, index - 1)
            request = self._approvals[key]["request"]
            workflow.set_current_details(
                f"waiting for approval `{identity}`{until}: {request['action']}: "
                f"{request['summary']}"
            )
            self._show_waiting(f"approval:{identity}")
        else:
            workflow.set_current_details(f"waiting for event `{key}`{until}")
            self._show_waiting(key)
        self.publish(LiveEvent(kind="waiting", step=index, key=key, until=deadline))
        self._wakes_on = lambda: key in self.events
        waited = spans.open_span(
            names.WAIT, wait_attributes("temporal", self._run_id, index, key, waiting_as)
        )
        self.gauge.move(self.state())  # as local runs count it: from every wait and step
        # No `finally`: a run evicted from the worker's cache is closed outside the
        # workflow's event loop, where no workflow call may be made.
        try:
            await self._arrival(
                index,
                workflow.wait_condition(
                    self._wakes_on, timeout=wait, timeout_summary=f"deadline of `{key}`"
                ),
            )
        except TimeoutError:
            waited.set_attribute(names.WAIT_OUTCOME, "timed_out")
            spans.finish(waited)
            self._stop_waiting(key)
            self.gauge.move(self.state())
            self.publish(LiveEvent(kind="wait_timed_out", step=index, key=key))
            assert deadline is not None
            timed_out = await_timeout_error(label, deadline)
            self._finish(index, status="failed", error=step_error_from(timed_out))
            raise self._raising(index, timed_out) from None
        except (Exception, asyncio.CancelledError) as exc:
            spans.finish(waited, exc)
            self.gauge.move("running")
            raise
        waited.set_attribute(names.WAIT_OUTCOME, "received")
        spans.finish(waited)
        self._stop_waiting(key)
        self.gauge.move(self.state())
        self.publish(LiveEvent(kind="event_received", step=index, key=key))
        payload = self.events[key]
        codec = self._codec_for(key, type)
        if codec is None:
            self._finish(index, status="completed", result=payload)
            return payload
        try:
            value = codec.validate(payload)
        except ValidationError as exc:
            error = event_payload_error(
                label, codec.annotation, exc.errors(include_url=False, include_input=False)
            )
            self._finish(index, status="failed", error=step_error_from(error))
            raise self._raising(index, error) from None
        self._finish(index, status="completed", result=payload)
        return value

    def _codec_for(self, key: str, type: Any) -> JsonCodec[Any] | None:
        """How an event's payload is typed: by ``type``, else as the agent declared ``key``."""
        if type is None:
            return self._declared.get(key)
        codec = self._codecs.get(type)
        if codec is None:
            codec = self._codecs[type] = JsonCodec(type)
        return codec

    async def _emit_to(self, run_id: str, key: str, payload: object) -> bool:
        """Send the event through the event activity, which learns whether it won."""
        check_name(run_id, what="run_id")
        data = event_payload(payload, what=f"event {key!r}")
        record = await self._take(f"emit_event:{key}->{run_id}", "event", waits=True)
        if record is not None:
            return bool(self._outcome(record).result["accepted"])
        index = self._begin(f"emit_event:{key}->{run_id}", "event")
        event = RunEvent(run_id=run_id, key=key, payload=data)
        try:
            accepted: bool = await self._arrival(
                index,
                workflow.execute_activity(
                    SEND_EVENT_ACTIVITY,
                    event,
                    activity_id=activity_id(index, f"emit_event:{key}->{run_id}"),
                    start_to_close_timeout=timedelta(seconds=30),
                    summary=f"send `{key}` to run {run_id}",
                    result_type=bool,
                ),
            )
        except ActivityError as failure:
            error = durable_error_from(failure.cause, self._run_id)
            if error is None:
                raise
            self._finish(index, status="failed", error=step_error_from(error))
            raise self._raising(index, error) from None
        self._finish(index, status="completed", result={"accepted": accepted})
        return accepted

    def _stop_waiting(self, key: str) -> None:
        self._wakes_on = None
        del self.waiting[key]
        del self.waiting_as[key]
        workflow.set_current_details("")
        self._show_waiting(None)

    def _show_waiting(self, key: str | None) -> None:
        if self._search_attributes:
            update = WAITING_FOR.value_set(key) if key else WAITING_FOR.value_unset()
            workflow.upsert_search_attributes([update])

    def state(self) -> str:
        """``waiting_for_approval``, ``waiting`` (for events, with nothing else under
        way: no activity, timer or child run) or ``running``, as local runs say it."""
        if not self.waiting:
            return "running"
        busy = any(s.status == "running" and s.kind != "event" for s in self.steps)
        if busy:
            return "running"
        approval = "waiting_for_approval" in self.waiting_as.values()
        return "waiting_for_approval" if approval else "waiting"

    async def _record_value(self, intent: str, kind: StepKind, produce: Callable[[], Any]) -> Any:
        record = await self._take(intent, kind)
        if record is not None:
            return self._outcome(record).result
        index = self._begin(intent, kind)
        value = produce()
        self._finish(index, status="completed", result=value)
        return value

    def _await_decision(
        self, key: str, timeout: timedelta | None, waiting_as: WaitingState
    ) -> Awaitable[Any]:
        return self.await_event(key, timeout=timeout, waiting_as=waiting_as)

    def _show_approval(self, position: int, request: Any, decision: Any = None) -> None:
        key = f"{APPROVAL_KEY_PREFIX}{position}"
        entry = self._approvals.get(key) or {}
        if "requested_at" not in entry:
            now = workflow.now()
            wait = request.get("timeout")
            entry["requested_at"] = now.isoformat()
            entry["deadline"] = (
                None if wait is None else (now + timedelta(seconds=wait)).isoformat()
            )
        entry |= {"request": request, "decision": decision or self.events.get(key)}
        self._approvals[key] = entry
        workflow.upsert_memo({f"{APPROVAL_MEMO_PREFIX}{position}": self._approvals[key]})

    def check_decision_key(self, key: str) -> None:
        """Refuse a decision for a position this run has passed with no approval there."""
        position = key.removeprefix(APPROVAL_KEY_PREFIX)
        if key.startswith(APPROVAL_KEY_PREFIX) and position.isdigit():
            index, steps = int(position), self.recorded_steps()  # carried ones too
            if index < len(steps) and steps[index].kind != "approval":
                step = steps[index]
                raise DurableApprovalNotFoundError(
                    f"no approval {approval_id(self._run_id, index)!r}: position {index} of "
                    f"run {self._run_id!r} holds a step of kind {step.kind!r} "
                    f"({step.intent}); list approvals with `durable approvals`"
                )

    async def event_arrived(self, key: str) -> None:
        """An approval's first decision goes in its memo, where callers read it."""
        await super().event_arrived(key)
        if key.startswith(APPROVAL_KEY_PREFIX):
            entry = self._approvals.setdefault(key, {"request": None, "decision": None})
            entry["decision"] = self.events[key]
            position = key.removeprefix(APPROVAL_KEY_PREFIX)
            workflow.upsert_memo({f"{APPROVAL_MEMO_PREFIX}{position}": entry})

    async def emit_event(self, key: str, payload: object, *, run_id: str | None = None) -> bool:
        check_event_key(key)
        if run_id is not None and run_id != self._run_id:
            return await self._emit_to(run_id, key, payload)
        data = event_payload(payload, what=f"event {key!r}")
        record = await self._take(f"emit_event:{key}", "event")
        if record is not None:
            return bool(self._outcome(record).result["accepted"])
        index = self._begin(f"emit_event:{key}", "event")
        accepted = key not in self.events
        if accepted:
            self.events[key] = data
        self._finish(index, status="completed", result={"accepted": accepted})
        return accepted


def _activity_failure(
    failure: ActivityError, label: str, options: StepOptions
) -> tuple[StepError, int]:
    """The recorded error and the number of attempts of a failed step."""
    cause = failure.cause
    retry = options.retry
    exhausted = failure.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    attempts = retry.maximum_attempts if exhausted and retry.maximum_attempts else 1
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        error = StepError(
            message=cause.message, type=cause.type or "ApplicationError", code=details.get("code")
        )
        return error, int(details.get("attempt", attempts))
    if isinstance(cause, TemporalTimeoutError):
        if cause.type == TimeoutType.HEARTBEAT:
            beat = options.heartbeat_timeout.total_seconds()
            return step_error_from(heartbeat_timeout_error(attempts, label, beat)), attempts
        timeout = options.timeout.total_seconds()
        return step_error_from(step_timeout_error(attempts, label, timeout)), attempts
    return step_error_from(cause or failure), attempts


if TYPE_CHECKING:
    # mypy proves the workflow context satisfies the protocol agents are written against.
    def _conforms(ctx: TemporalContext) -> DurableContext:
        return ctx


async def run_on_workflow_step(
    context: TemporalContext, agent: AgentDefinition, manifest: DurableRunManifest
) -> Any:
    """Run ``agent`` inside the current workflow on ``context``; return its result as JSON.

    The named entry point of pattern B: any workflow class, the generic
    ``AgentWorkflow`` or one written for a single agent, runs an agent through
    it. Temporal's history is the only store, so nothing else is recorded.
    """
    label = f"agent {agent.name!r}"
    agent_input = agent.decode_input(manifest, run_id=context.run_id)
    attributes = run_attributes("temporal", context.run_id, agent.name)
    context.gauge.move("running")
    try:
        with spans.span(names.RUN, attributes) as run:
            value = await agent.fn(context, agent_input)
            run.set_attribute(names.RUN_STATUS, "completed")
    except asyncio.CancelledError:
        context.gauge.end("cancelled")
        raise
    except Exception:
        context.gauge.end("failed")
        raise
    except BaseException as exc:
        if type(exc).__name__ == "ContinueAsNewError":
            context.gauge.end("continued")
        raise  # evicted from the worker's cache: the worker that goes on ends it
    context.gauge.end("completed")
    return agent.output.encode(value, what=f"{label} run {context.run_id!r}")
