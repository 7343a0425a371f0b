"""Child runs on a local store: a run in the same store, executed by the parent's worker.

The parent's step at the call's position records the child's envelope once it
ends. A resumed parent reaches that step again: a step still running resumes
the child run (its own steps replay), a completed one returns the recorded
result without touching the child. The policy, ids and "no orphans" are
written once in ``durable._children``; this module only runs the child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span

from durable import (
    ChildCalls,
    ChildSpec,
    DurableChildRunFailedError,
    DurableError,
    DurableRunCancelledError,
    DurableRunFailedError,
    DurableRunInputMismatchError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    LiveEvent,
    RunRecord,
    StepError,
    StepRecord,
    child_envelope,
    usage_totals,
)
from durable._children import cancelled_here
from durable._failures import (
    child_failed_error,
    child_id_taken_error,
    parent_cancelled_reason,
    step_error_from,
)
from durable_agents.adapters.telemetry import child_attributes, names, spans

from ._store import DurableRunStore, utc_now

if TYPE_CHECKING:
    from ._context import LocalContext

__all__ = ["ChildControl", "ChildOutcome", "LocalChildren", "RunChild"]


@dataclass
class ChildControl:
    """How a parent ends a child it cancels: set before the child's task is cancelled.

    A child task cancelled with no ``reason`` (the worker shutting down) stays
    running in the store, to be resumed with its parent.
    """

    reason: str | None = None
    timed_out: bool = False
    parent: LocalContext | None = None
    """The parent's context: it tells whether a cancellation reaching the child is the
    parent's doing (the child ends) or the worker stopping (the child resumes later)."""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the child's run exists in the store (created, resumed or found ended)."""


@dataclass(frozen=True)
class ChildOutcome:
    """A child run that ended with a result: its record and its steps."""

    run: RunRecord
    steps: list[StepRecord] = field(default_factory=list)


RunChild = Callable[[ChildSpec, ChildControl], Awaitable[ChildOutcome]]
"""Executes (or resumes) one child run to its end; the runner provides it."""


class LocalChildren(ChildCalls):
    """``LocalContext``'s child runs."""

    _store: DurableRunStore
    _poll: float
    _run_child: RunChild | None

    def _init_local_children(self, run_child: RunChild | None) -> None:
        self._init_children()
        self._run_child = run_child
        self._controls: dict[asyncio.Future[dict[str, Any]], ChildControl] = {}
        self.work: asyncio.Task[Any] | None = None
        """The agent's task; the runner sets it."""
        self.on_cancel: Callable[[str], None] | None = None
        """Cancels this run with a reason; the runner sets it."""
        self.control: ChildControl | None = None
        """How this run's parent controls it, when it is a child run; the runner sets it."""

    async def _start_child(self, spec: ChildSpec) -> asyncio.Future[dict[str, Any]]:
        ctx: LocalContext = self  # type: ignore[assignment]
        index, record = ctx._position(spec.intent, spec.kind, spec.input_hash)
        loop = asyncio.get_running_loop()
        if record is not None and record.status == "completed":
            done: asyncio.Future[dict[str, Any]] = loop.create_future()
            done.set_result(_envelope(spec, record.result))
            return done
        if record is not None and record.status == "failed":
            failed: asyncio.Future[dict[str, Any]] = loop.create_future()
            failed.set_exception(await self._recorded_failure(spec, record))
            return failed
        if self._run_child is None:
            raise RuntimeError("this context was made without a way to run child runs")
        asked = None if spec.timeout is None else utc_now() + spec.timeout
        deadline = await ctx._begin(index, spec.intent, spec.kind, spec.input_hash, asked)
        taken = None if record is not None else await self._taken(spec)
        if taken is not None:
            await ctx._failed(index, step_error_from(taken), final=True)
            raise taken
        ctx.live.publish(LiveEvent(kind="step_started", step=index, intent=spec.intent, attempt=1))
        control = ChildControl(parent=ctx)
        span = spans.open_span(
            names.CHILD,
            child_attributes(
                "local", self.run_id, index, spec.intent, spec.run_id, spec.definition.name
            ),
        )
        task = asyncio.create_task(
            self._traced_child(span, self._child(ctx, index, spec, control, deadline)),
            name=f"durable:{spec.run_id}",
            context=spans.task_context(span),  # the child run's span is this one's child
        )
        self._controls[task] = control
        task.add_done_callback(lambda t: self._controls.pop(t, None))
        # As on Temporal, the child exists once the call returns: cancelling it right
        # away cancels a run, never one that is yet to start.
        starting = asyncio.ensure_future(control.started.wait())
        await asyncio.wait({task, starting}, return_when=asyncio.FIRST_COMPLETED)
        starting.cancel()
        return task

    async def _cancel_child(self, task: asyncio.Future[dict[str, Any]], reason: str) -> None:
        control = self._controls.get(task)
        if control is not None and control.reason is None:
            control.reason = reason
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _doom_children(self, reason: str) -> None:
        """Children cancelled from now on end ``cancelled`` with ``reason``."""
        for control in self._controls.values():
            control.reason = control.reason or reason

    def _abandon_children(self) -> None:
        """The worker stops: cancel child tasks, leaving their runs to resume with the parent."""
        for task in list(self._controls):
            task.cancel()

    async def _child(
        self,
        ctx: LocalContext,
        index: int,
        spec: ChildSpec,
        control: ChildControl,
        deadline: Any,
    ) -> dict[str, Any]:
        assert self._run_child is not None
        forwarding = None
        if spec.forward:
            forwarding = asyncio.create_task(self._forward(spec))
        try:
            outcome = await self._within(deadline, self._attempts(spec, control), control)
        except DurableChildRunFailedError as error:
            if error.error_code == "cancelled" and cancelled_here():
                # The agent stopped awaiting it (a timeout of its own): its cancellation.
                raise asyncio.CancelledError() from None
            if error.error_code == "cancelled" and await self._being_cancelled():
                # Cancelled along with this run: the agent sees its own cancellation.
                raise asyncio.CancelledError(ctx.cancel_reason) from None
            failure = StepError(message=error.message, type=type(error).__name__, code=error.code)
            await ctx._failed(index, failure, final=True)
            ctx.live.publish(
                LiveEvent(kind="step_failed", step=index, intent=spec.intent, error=error.message)
            )
            raise
        finally:
            if forwarding is not None:
                forwarding.cancel()
        envelope = child_envelope(spec.run_id, outcome.run.result, usage_totals(outcome.steps))
        await ctx._complete(index, envelope)
        ctx.live.publish(LiveEvent(kind="step_completed", step=index, intent=spec.intent))
        return envelope

    @staticmethod
    async def _traced_child(span: Span, child: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """The child run under its ``durable.child`` span, ended by how the child ends."""
        try:
            envelope = await child
        except (Exception, asyncio.CancelledError) as exc:
            spans.finish(span, exc)
            raise
        spans.finish(span)
        return envelope

    async def _within(
        self, deadline: Any, work: Awaitable[ChildOutcome], control: ChildControl
    ) -> ChildOutcome:
        """``work`` bounded by the child's durable deadline, fixed when it first started."""
        if deadline is None:
            return await work
        task = asyncio.ensure_future(work)
        remaining = max((deadline - utc_now()).total_seconds(), 0.0)
        done, _ = await asyncio.wait({task}, timeout=remaining)
        if not done:
            control.reason = control.reason or "its timeout passed"
            control.timed_out = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return await task

    async def _attempts(self, spec: ChildSpec, control: ChildControl) -> ChildOutcome:
        """Run the child; with a retry policy, run it again from the start as ``<id>.<n>``."""
        assert self._run_child is not None
        attempt = 1
        while True:
            attempt_spec = spec if attempt == 1 else _nth(spec, attempt)
            try:
                return await self._resumed(attempt_spec, control)
            except DurableChildRunFailedError as error:
                retry = spec.retry
                # As on Temporal: the agent's own errors are retried, this library's never.
                again = (
                    retry is not None
                    and error.error_code is None
                    and retry.retries(error.error_type)
                    and retry.allows_attempt(attempt + 1)
                )
                if not again or retry is None:
                    raise
                await asyncio.sleep(retry.delay_before(attempt + 1).total_seconds())
                attempt += 1

    async def _resumed(self, spec: ChildSpec, control: ChildControl) -> ChildOutcome:
        """Run the child; its own failure becomes the parent's ``DurableChildRunFailedError``."""
        assert self._run_child is not None
        try:
            return await self._run_child(spec, control)
        except (DurableRunCancelledError, DurableRunFailedError):
            raise await self._failure_of(spec) from None
        except (DurableRunLeaseLostError, DurableRunLeaseHeldError, asyncio.CancelledError):
            raise
        except Exception:
            failure = await self._failure_of(spec)
            if failure.error_type == "unknown":
                raise  # the child never ended: not a failure of the child run
            raise failure from None

    def reason_for_children(self) -> str | None:
        """Why a child of this run that is being cancelled ends for good; ``None`` when
        the worker is stopping, and the child is to resume with this run later."""
        work = self.work
        if work is None or work.done():
            return None  # ended: its end path cancels its children with the reason
        if not work.cancelling():
            return f"its parent run {self.run_id!r} stopped awaiting it"
        ending = self._ending_reason()
        return None if ending is None else parent_cancelled_reason(self.run_id, ending)

    def _ending_reason(self) -> str | None:
        """Why this run is ending for good, as far as anyone knows yet."""
        ctx: LocalContext = self  # type: ignore[assignment]
        if ctx.cancel_reason is not None:
            return ctx.cancel_reason
        control = self.control
        if control is None:
            return None
        if control.reason is not None:
            return control.reason
        return None if control.parent is None else control.parent.reason_for_children()

    async def _being_cancelled(self) -> bool:
        """Whether this run is being cancelled, asked here or seen by its watcher yet or not.

        Children are asked first, so a child's watcher may see its request before
        this run's does; this run then cancels itself at once instead of failing.
        """
        ctx: LocalContext = self  # type: ignore[assignment]
        if ctx.cancel_reason is None:
            own = await self._store.load_run(self.run_id)
            if own is not None and own.cancel_requested is not None and self.on_cancel:
                self.on_cancel(own.cancel_requested)
        return ctx.cancel_reason is not None

    async def _taken(self, spec: ChildSpec) -> DurableRunInputMismatchError | None:
        """Why a ``run_id=`` naming a run that is not this run's child is refused."""
        found = await self._store.load_run(spec.run_id)
        if found is None or found.parent_run_id == self.run_id:
            return None
        return child_id_taken_error(spec.run_id, self.run_id)

    async def _recorded_failure(
        self, spec: ChildSpec, record: StepRecord
    ) -> DurableChildRunFailedError:
        error = await self._failure_of(spec)
        if error.error_type != "unknown":
            return error
        recorded = record.error or StepError(message="no error was recorded", type="unknown")
        return DurableChildRunFailedError(
            recorded.message, child_run_id=spec.run_id, error_type=recorded.type
        )

    async def _failure_of(self, spec: ChildSpec) -> DurableChildRunFailedError:
        """The child's own recorded error, as the parent raises it."""
        run = await self._store.load_run(spec.run_id)
        error = None if run is None else run.error
        status = "running" if run is None else run.status
        if error is None:
            return DurableChildRunFailedError(
                f"child run {spec.run_id!r} ({spec.definition.name}) ended {status} without "
                "a recorded error",
                child_run_id=spec.run_id,
                error_type="unknown",
            )
        return child_failed_error(
            spec.run_id, spec.definition.name, cancelled=status == "cancelled",
            error_type=error.type, error_code=error.code, detail=error.message,
        )  # fmt: skip

    async def _forward(self, spec: ChildSpec) -> None:
        """Pass the parent's events on to the child as they arrive (first emit wins)."""
        assert spec.forward is not None
        waiting = dict(spec.forward)
        while waiting:
            for key, child_key in list(waiting.items()):
                event = await self._store.load_event(self.run_id, key)
                if event is None:
                    continue
                try:
                    await self._store.emit_event(spec.run_id, child_key, event.payload)
                except DurableError:
                    continue  # the child run does not exist yet; try again
                del waiting[key]
            await asyncio.sleep(max(self._poll, 0.05))


def _envelope(spec: ChildSpec, recorded: Any) -> dict[str, Any]:
    """A completed child step's envelope; a conversation recorded before conversations
    were child runs holds the bare result, which is wrapped the same way."""
    if isinstance(recorded, dict) and set(recorded) == {"run_id", "result", "usage"}:
        return recorded
    usage = recorded.get("usage", {}) if isinstance(recorded, dict) else {}
    return child_envelope(spec.run_id, recorded, usage if isinstance(usage, dict) else {})


def _nth(spec: ChildSpec, attempt: int) -> ChildSpec:
    return replace(spec, run_id=f"{spec.run_id}.{attempt}")
