"""The agent workflow: every ``@agent`` runs as a workflow whose type is the agent's name.

One dynamic workflow serves every registered agent. Its input is the run's
``DurableRunManifest``; events arrive by the ``event`` signal or the
``send_event`` update, first emit wins; queries report status and steps. A
failure of the agent fails the workflow (never only the workflow task); the
worker lists nondeterminism as a workflow failure too, which the client reports
as a divergence.

The agent runs as the sandbox imports it: each run imports the agent's module
inside the workflow sandbox (not passed through), so what the agent does, such
as reading the clock with ``datetime.now()``, meets the sandbox's checks and
fails the run, saying what to use instead. The registries stay the worker's:
the copy registers nothing (``registering_copies``), and its steps run as the
worker's activities by name.

A long run continues as new by itself when Temporal suggests it, at a safe
point (see ``durable_agents.adapters.temporal._replay``): the manifest is passed on unchanged
(the run's identity), and a second argument, ``RunCarry``, carries the run's
steps, events, usage and live stream to the next execution, which replays them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import CodeType
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamState
from temporalio.exceptions import ApplicationError
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

with workflow.unsafe.imports_passed_through():
    # Passed through: the registries must be the worker's own, not sandbox copies.
    from durable import (
        USAGE_FIELDS,
        AgentDefinition,
        DurableError,
        DurableRegistrationError,
        DurableRunManifest,
        LiveEvent,
        LiveKind,
        StepRecord,
        agent_definition,
        child_envelope,
        event_payload,
    )
    from durable._failures import cancelled_error, parent_cancelled_reason
    from durable._patches import check_event_key
    from durable._registry import registering_copies
    from durable_agents.adapters.temporal import (
        EVENT_SIGNAL,
        EVENT_UPDATE,
        EVENTS_MEMO,
        EVENTS_MEMO_PATCH,
        EVENTS_MEMO_WHEN_ANY_PATCH,
        LIVE_TOPIC,
        SEARCH_ATTRIBUTES_MEMO,
        STATUS_QUERY,
        STEPS_QUERY,
        EventMessage,
        TemporalContext,
        run_on_workflow_step,
        to_application_error,
    )
    from durable_agents.adapters.temporal._carry import CarriedState, RunCarry, live_tail, unpack

__all__ = ["AgentWorkflow"]

_compiled: dict[str, tuple[ModuleSpec, CodeType | None]] = {}
"""Each agent module's spec and code, found and read once per worker (see ``_import_copy``)."""


@workflow.defn(dynamic=True)
class AgentWorkflow:
    @workflow.init
    def __init__(self, args: Sequence[RawValue]) -> None:
        # An execution continued as new gets what the run carried as its second argument.
        carry = (
            workflow.payload_converter().from_payload(args[1].payload, RunCarry)
            if len(args) > 1
            else None
        )
        self._carry = carry
        self._carried: CarriedState | None = None if carry is None else unpack(carry.state)
        self._events: dict[str, Any] = {} if self._carried is None else dict(self._carried.events)
        self._context: TemporalContext | None = None
        self._status = "running"
        # The run's live stream: steps, waits and token deltas, for watchers. Its
        # offsets go on across executions, so a watcher's position stays valid.
        self._stream = WorkflowStream(prior_state=None if carry is None else carry.stream)
        self._live = self._stream.topic(LIVE_TOPIC, type=LiveEvent)

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        info = workflow.info()
        manifest = workflow.payload_converter().from_payload(args[0].payload, DurableRunManifest)
        try:
            definition = _agent_here(info.workflow_type)
            context = TemporalContext(
                project_id=manifest.project_id,
                scenario_id=manifest.scenario_id,
                events=self._events,
                declared=definition.events,
                search_attributes=bool(workflow.memo_value(SEARCH_ATTRIBUTES_MEMO, False)),
                live=self._live.publish,
                manifest=manifest,
                agent=definition,
                before_continue=self._release_handlers,
                carried=self._carried,
                execution=1 if self._carry is None else self._carry.execution,
                stream_state=self._stream_state,
            )
            self._context = context
            data = await self._agent(context, definition, manifest)
        except asyncio.CancelledError:
            if workflow.cancellation_reason() is None:
                self._remember_events()
                raise
            await self._cancelled()
            raise
        except Exception as exc:
            if workflow.cancellation_reason() is not None:
                # The agent turned its cancellation into an error: the run is still cancelled.
                await self._cancelled()
                raise asyncio.CancelledError(workflow.cancellation_reason()) from exc
            await self._settle(f"its parent run {info.workflow_id!r} failed")
            if isinstance(exc, DurableError):
                await self._end("failed", exc.message)
                raise to_application_error(exc) from None
            if isinstance(exc, RestrictedWorkflowAccessError):
                message = _restricted(info.workflow_type, exc)
                await self._end("failed", message)
                raise ApplicationError(
                    message, {"code": None}, type=type(exc).__name__, non_retryable=True
                ) from exc
            # An agent's own error fails the run, as it does on the local store. It is not
            # marked final: a child run started with a retry policy runs again on it.
            await self._end("failed", str(exc) or repr(exc))
            raise ApplicationError(
                str(exc) or repr(exc), {"code": None}, type=type(exc).__name__
            ) from exc
        await self._settle(f"its parent run {info.workflow_id!r} finished")
        await self._end("completed")
        if manifest.parent_run_id is not None:
            # A child run hands its parent its usage along with its result.
            totals = dict.fromkeys(USAGE_FIELDS, 0) | context.usage
            return child_envelope(info.workflow_id, data, totals)
        return data

    @staticmethod
    async def _agent(
        context: TemporalContext, definition: AgentDefinition, manifest: DurableRunManifest
    ) -> Any:
        """The agent's result; at the safe point, a continue-as-new instead.

        A divergence found on replay fails the run even if the agent caught it, and
        the signal to leave ends the execution even if the agent kept it from
        propagating: either way the agent went on from a state the run never had.
        """
        try:
            data = await run_on_workflow_step(context, definition, manifest)
        except GeneratorExit:
            raise  # evicted from the worker's cache: no workflow call may be made
        except BaseException:
            if context.fatal is not None:
                raise context.fatal from None
            if not context.leaving or workflow.cancellation_reason() is not None:
                raise
            await context.continue_here()
        if context.fatal is not None:
            raise context.fatal
        if context.leaving:
            await context.continue_here()
        return data

    def _stream_state(self) -> WorkflowStreamState:
        """The live stream for the next execution: its offset and latest entries."""
        return live_tail(self._stream.get_state())

    async def _cancelled(self) -> None:
        """This run was cancelled: its children first, then the run itself."""
        run_id = workflow.info().workflow_id
        reason = workflow.cancellation_reason() or "no reason given"
        await self._settle(parent_cancelled_reason(run_id, reason))
        await self._end("cancelled", cancelled_error(run_id, reason).message)

    async def _settle(self, reason: str) -> None:
        """No orphans: children still in flight are cancelled, and settle, before the end."""
        if self._context is not None:
            await self._context._settle_children(reason)

    async def _release_handlers(self) -> None:
        """Before continuing as new: watchers detached, handlers finished."""
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _end(self, status: str, error: str | None = None) -> None:
        self._status = status
        kinds: dict[str, LiveKind] = {
            "completed": "run_completed",
            "failed": "run_failed",
            "cancelled": "run_cancelled",
        }
        kind = kinds[status]
        self._live.publish(LiveEvent(kind=kind, error=error, at=workflow.now()))
        # Watchers read by query; this releases any long-poll update still waiting (a
        # subscriber of the stream library's own, or an earlier client's), which would
        # keep the run from closing.
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._remember_events()

    def _remember_events(self) -> None:
        """Keep the accepted keys in the memo, where senders read them after the end."""
        if not self._events and workflow.patched(EVENTS_MEMO_WHEN_ANY_PATCH):
            return
        if workflow.patched(EVENTS_MEMO_PATCH):
            workflow.upsert_memo({EVENTS_MEMO: sorted(self._events)})

    @workflow.signal(name=EVENT_SIGNAL)
    async def event(self, message: Any) -> None:
        try:
            event = _parse_event(message)
        except (ValueError, DurableError) as exc:
            # A signal cannot be refused; a malformed one is logged and never harms the run.
            workflow.logger.warning("ignored a malformed event signal: %s", exc)
            return
        await self._after_the_agent_settles()
        if event.key not in self._events:
            self._events[event.key] = event.payload
            await self._passed_on(event.key)

    @workflow.update(name=EVENT_UPDATE)
    async def send_event(self, message: Any) -> bool:
        event = _parse_event(message)
        await self._after_the_agent_settles()
        if event.key in self._events:
            return False
        self._events[event.key] = event.payload
        await self._passed_on(event.key)
        return True

    async def _passed_on(self, key: str) -> None:
        if self._context is not None:
            await self._context.event_arrived(key)

    @send_event.validator
    def _validate_event(self, message: Any) -> None:
        event = _parse_event(message)
        # Only here, never in a handler: validators do not run on replay, so a run that
        # took such an event before this check existed replays it unchanged.
        event_payload(event.payload, what=f"event {event.key!r}")
        if self._context is not None:
            self._context.check_decision_key(event.key)

    async def _after_the_agent_settles(self) -> None:
        """Apply an external event only once the agent has caught up and blocked.

        A replay from scratch can deliver a handler in the same activation as the
        history before it, ahead of the agent re-running its own emits; waiting for
        the agent to settle keeps first-emit-wins identical on every replay.
        """
        await workflow.wait_condition(
            lambda: (
                self._status != "running" or (self._context is not None and self._context.settled())
            )
        )

    @workflow.query(name=STEPS_QUERY)
    def steps(self) -> list[StepRecord]:
        """Every step of the run, those of earlier executions included."""
        return [] if self._context is None else self._context.recorded_steps()

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> dict[str, Any]:
        context = self._context
        running = self._status == "running" and context is not None
        return {
            "status": context.state() if running and context is not None else self._status,
            "steps": 0 if context is None else len(context.recorded_steps()),
            "waiting_for": [] if context is None else sorted(context.waiting),
        }


def _agent_here(name: str) -> AgentDefinition:
    """Agent ``name`` as this workflow's sandbox imports it: a copy of its module.

    Agent modules are not passed through, so each run runs its agent's own code
    under the sandbox's checks (``_import_copy``). An agent defined in the
    script the worker runs (``__main__``) cannot be imported again: it runs as
    the worker registered it.
    """
    module_name = agent_definition(name).fn.__module__
    if module_name != "__main__" and module_name not in sys.modules:
        _import_copy(module_name)
    return agent_definition(name)  # names resolve to the copies this sandbox imported


def _import_copy(module_name: str) -> None:
    """Import ``module_name`` anew in this sandbox, passing through what it imports.

    The module's own code runs in the sandbox: the modules it names, such as
    ``datetime``, are the sandbox's restricted views, so an agent calling
    ``datetime.now()`` is refused. What it imports is passed through: libraries
    its steps use (an HTTP client, say) load once in the worker, not for every
    run, and need not be importable inside a sandbox. The copy registers nothing
    (``registering_copies``): the worker's registries stay as they are.

    The module is found and its code read once per worker, at its first run
    (``_compiled``), not for every run: finding and reading it cost more than
    the rest of a short run's workflow side. Every run still executes that code
    afresh in its own sandbox; a changed file takes effect, as a changed step
    already did, when the worker restarts.
    """
    parent = module_name.rpartition(".")[0]
    with workflow.unsafe.imports_passed_through():
        if parent:
            __import__(parent)
        found = _compiled.get(module_name) or _compile(module_name)
    spec, code = found
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # this sandbox's modules, not the worker's
    try:
        with registering_copies(), workflow.unsafe.imports_passed_through():
            if code is not None:
                exec(code, module.__dict__)  # what the loader's exec_module does
            elif spec.loader is not None:
                spec.loader.exec_module(module)  # a loader that gives no code object
    except BaseException:
        del sys.modules[module_name]
        raise


def _compile(module_name: str) -> tuple[ModuleSpec, CodeType | None]:
    """Find agent module ``module_name`` and read its code, as its loader would run it
    (``None`` from a loader that only executes modules)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise DurableRegistrationError(
            f"the workflow sandbox cannot find agent module {module_name!r}, which the worker "
            "imported; make it importable by name (not a file run as a script)"
        )
    get_code = getattr(spec.loader, "get_code", None)
    code = get_code(module_name) if callable(get_code) else None
    found = _compiled[module_name] = spec, code
    return found


def _restricted(agent: str, exc: RestrictedWorkflowAccessError) -> str:
    """What the sandbox refused, and what an agent does instead."""
    used = exc.qualified_name.removesuffix(".__call__")
    return (
        f"agent {agent!r} used {used}, which the workflow sandbox refuses, as a replay "
        "would not see the same: use ctx.now() for the time, ctx.uuid() for ids and "
        "ctx.sleep() to wait, and do I/O or anything else that differs between runs in a @step"
    )


def _parse_event(message: Any) -> EventMessage:
    """A well-formed event of the declared type, or an error with the reason for the sender."""
    try:
        event = EventMessage.model_validate(message)
    except ValidationError as exc:
        raise ValueError(
            'an event must be one JSON object {"key": "<name>", "payload": <any JSON>}; '
            f"this one failed with {exc.errors(include_url=False, include_input=False)}"
        ) from None
    check_event_key(event.key)
    try:
        # Looked up by type, not from run(): a handler can run before the agent starts.
        definition = agent_definition(workflow.info().workflow_type)
    except DurableError:
        return event  # an unknown agent fails the run itself; nothing to check against
    definition.check_event(event.key, event.payload)
    return event
