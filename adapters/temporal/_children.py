"""Child runs on Temporal: a child workflow of the agent's own type, id derived from its parent.

The policy, ids and "no orphans" are written once in ``durable._children``.
Here a child is started with ``PARENT_CLOSE_POLICY`` request-cancel (a parent
that vanishes never leaves it running) and waits for the child's cancellation
to complete when cancelled, so a parent ends only once its children settled.
This module does no I/O: it runs inside the workflow.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span
from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.workflow import (
    ChildWorkflowCancellationType,
    ChildWorkflowHandle,
    ParentClosePolicy,
)

from durable import (
    USAGE_KINDS,
    ChildCalls,
    ChildSpec,
    DurableChildRunFailedError,
    LiveEvent,
    StepError,
    StepRecord,
    add_usage,
    manifest_hash,
)
from durable._children import cancelled_here
from durable._failures import child_failed_error, child_id_taken_error, step_error_from
from durable_agents.adapters.telemetry import child_attributes, names, spans

from ._convert import temporal_retry_policy
from ._messages import (
    EVENT_SIGNAL,
    MANIFEST_MEMO,
    SEARCH_ATTRIBUTES_MEMO,
    STEP_MEMO,
    USAGE_MEMO,
)
from ._search import AGENT_NAME, PROJECT_ID

if TYPE_CHECKING:
    from ._context import TemporalContext

__all__ = ["TemporalChildren"]


@dataclass
class _Child:
    spec: ChildSpec
    handle: ChildWorkflowHandle[Any, Any]
    span: Span


class TemporalChildren(ChildCalls):
    """``TemporalContext``'s child runs."""

    events: dict[str, Any]
    _search_attributes: bool

    def _init_temporal_children(self) -> None:
        self._init_children()
        self._forwarding: dict[str, _Child] = {}

    async def _start_child(self, spec: ChildSpec) -> asyncio.Future[dict[str, Any]]:
        ctx: TemporalContext = self  # type: ignore[assignment]
        record = await ctx._take(spec.intent, spec.kind, spec.input_hash)
        if record is not None:
            return await self._replayed_child(ctx, record)
        index = ctx._begin(spec.intent, spec.kind, spec.input_hash)
        ctx.publish(LiveEvent(kind="step_started", step=index, intent=spec.intent, attempt=1))
        span = spans.open_span(
            names.CHILD,
            child_attributes(
                "temporal", self.run_id, index, spec.intent, spec.run_id, spec.definition.name
            ),
        )
        try:
            # Two outcomes reach the agent: the start (keyed -(index + 1)) and the end.
            with spans.current(span):  # the child's trace context goes with its start
                handle = await ctx._arrival(-(index + 1), self._start_workflow(spec, index))
        except WorkflowAlreadyStartedError as exc:
            spans.finish(span, exc)
            taken = child_id_taken_error(spec.run_id, self.run_id)
            ctx._finish(index, status="failed", error=step_error_from(taken))
            raise ctx._raising(index, taken) from None
        except (Exception, asyncio.CancelledError) as exc:
            spans.finish(span, exc)
            raise
        child = _Child(spec, handle, span)
        if spec.forward:
            self._forwarding[spec.run_id] = child
            for key in spec.forward:
                if key in self.events:
                    await self._pass_on(child, key)
        return asyncio.ensure_future(self._child(ctx, index, child))

    async def _replayed_child(
        self, ctx: TemporalContext, record: StepRecord
    ) -> asyncio.Future[dict[str, Any]]:
        """A child run an earlier execution started: its start and end at their turns."""
        index = record.step_index
        await ctx._turn(-(index + 1))
        if record.status == "failed" and index not in ctx._turns:
            ctx._outcome(record)  # it failed to start: raises that error again

        async def ended() -> dict[str, Any]:
            await ctx._turn(index)
            envelope: dict[str, Any] = ctx._outcome(record).result
            return envelope

        return asyncio.ensure_future(ended())

    async def _start_workflow(self, spec: ChildSpec, index: int) -> ChildWorkflowHandle[Any, Any]:
        definition, manifest = spec.definition, spec.manifest
        return await workflow.start_child_workflow(
            definition.name,
            manifest,
            id=spec.run_id,
            # As a run a caller starts: an id another run ever had is refused, as locally.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            result_type=dict,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            cancellation_type=ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            execution_timeout=spec.timeout,
            retry_policy=None if spec.retry is None else temporal_retry_policy(spec.retry),
            memo={
                MANIFEST_MEMO: manifest_hash(manifest),
                SEARCH_ATTRIBUTES_MEMO: self._search_attributes,
                STEP_MEMO: {"step": index, "intent": spec.intent, "kind": spec.kind},
            },
            search_attributes=(
                TypedSearchAttributes(
                    [
                        SearchAttributePair(AGENT_NAME, definition.name),
                        SearchAttributePair(PROJECT_ID, manifest.project_id),
                    ]
                )
                if self._search_attributes
                else None
            ),
            static_summary=(spec.summary or f"{definition.name}: {definition.description}")[:200],
            static_details=f"child run of `{self.run_id}` at step {index} ({spec.intent})",
        )

    async def _child(self, ctx: TemporalContext, index: int, child: _Child) -> dict[str, Any]:
        try:
            envelope = await self._awaited(ctx, index, child)
        except (Exception, asyncio.CancelledError) as exc:
            spans.finish(child.span, exc)
            raise
        spans.finish(child.span)
        return envelope

    async def _awaited(self, ctx: TemporalContext, index: int, child: _Child) -> dict[str, Any]:
        spec = child.spec
        try:
            envelope: dict[str, Any] = await ctx._arrival(index, child.handle)
        except ChildWorkflowError as failure:
            if isinstance(failure.cause, CancelledError) and cancelled_here():
                # The agent stopped awaiting it (a timeout of its own): its cancellation.
                raise asyncio.CancelledError() from None
            if (
                isinstance(failure.cause, CancelledError)
                and workflow.cancellation_reason() is not None
            ):
                # Cancelled along with this run: the agent sees its own cancellation.
                raise asyncio.CancelledError(workflow.cancellation_reason()) from None
            error = _child_failure(spec, failure)
            recorded = StepError(message=error.message, type=type(error).__name__, code=error.code)
            ctx._finish(index, status="failed", error=recorded)
            ctx.publish(
                LiveEvent(kind="step_failed", step=index, intent=spec.intent, error=error.message)
            )
            raise ctx._raising(index, error) from None
        finally:
            self._forwarding.pop(spec.run_id, None)
        ctx._finish(index, status="completed", result=envelope)
        ctx.publish(LiveEvent(kind="step_completed", step=index, intent=spec.intent))
        if spec.kind in USAGE_KINDS:
            workflow.upsert_memo({USAGE_MEMO: add_usage(ctx.usage, envelope)})
        return envelope

    async def event_arrived(self, key: str) -> None:
        """Pass an event on to the children that forward it (a conversation's abort)."""
        for child in list(self._forwarding.values()):
            if child.spec.forward and key in child.spec.forward:
                await self._pass_on(child, key)

    async def _pass_on(self, child: _Child, key: str) -> None:
        assert child.spec.forward is not None
        message = {"key": child.spec.forward[key], "payload": self.events[key]}
        await child.handle.signal(EVENT_SIGNAL, message)


def _child_failure(spec: ChildSpec, failure: ChildWorkflowError) -> DurableChildRunFailedError:
    """The child's own error, as its parent raises it: type, code and run id kept."""
    cause = failure.cause
    code: str | None = None
    cancelled = False
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        code, error_type, detail = (
            details.get("code"),
            cause.type or "ApplicationError",
            cause.message,
        )
    elif isinstance(cause, CancelledError):
        cancelled, error_type, code = True, "DurableRunCancelledError", "cancelled"
        detail = "its history keeps the reason"
    elif isinstance(cause, TemporalTimeoutError):
        error_type, code, detail = (
            "DurableStepTimeoutError",
            "step_timeout",
            "it ran past its timeout",
        )
    elif isinstance(cause, TerminatedError):
        error_type, detail = "TerminatedError", f"terminated: {cause.message}"
    else:
        error_type, detail = type(cause or failure).__name__, str(cause or failure)
    return child_failed_error(
        spec.run_id, spec.definition.name, cancelled=cancelled, error_type=error_type,
        error_code=code, detail=detail,
    )  # fmt: skip
