"""``run_durable``: run an agent against a local store, resuming whatever was recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from opentelemetry.trace import Span

from durable import (
    AgentDefinition,
    ChildSpec,
    DelegationPolicy,
    DurableContext,
    DurableError,
    DurableRunCancelledError,
    DurableRunDivergenceError,
    DurableRunInputInvalidError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableRunManifest,
    DurableRunRecoveryExhaustedError,
    DurableStepTimeoutError,
    DurableStoreError,
    Lease,
    LiveEvent,
    RunOutcome,
    RunRecord,
    StepRecord,
    TaskSpec,
    agent_definition,
    as_timedelta,
    check_name,
    derive_worker_id,
)
from durable._failures import (
    cancelled_error,
    parent_cancelled_reason,
    run_failed_error,
    step_error_from,
)
from durable_agents.adapters.telemetry import names, run_attributes, spans

from ._children import ChildControl, ChildOutcome
from ._context import LocalContext
from ._live import LivePublisher
from ._recovery import recovery_exhausted_error, resumed_entry
from ._slots import RunSlots
from ._store import DurableRunStore, run_not_found, utc_now

__all__ = ["RunResult", "resume_run", "run_durable"]

logger = logging.getLogger(__name__)

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")


@dataclass(frozen=True)
class RunResult(Generic[OutputT]):
    result: OutputT
    run: RunRecord
    steps: list[StepRecord]
    """Every step of the run, replayed and freshly executed."""


async def run_durable(
    agent: Callable[[DurableContext, InputT], Awaitable[OutputT]],
    input: InputT,
    *,
    store: DurableRunStore,
    run_id: str,
    project_id: str = "default",
    scenario_id: str | None = None,
    task: TaskSpec | None = None,
    tags: Mapping[str, str] | None = None,
    worker_id: str | None = None,
    lease: timedelta | float = timedelta(seconds=30),
    poll_interval: timedelta | float = timedelta(milliseconds=100),
    outcome: RunOutcome | None = None,
    delegation: DelegationPolicy | None = None,
    slots: RunSlots | None = None,
    retry_failed: bool = False,
) -> RunResult[OutputT]:
    """Run ``agent`` as run ``run_id``, or resume it where it stopped.

    Completed steps replay from ``store`` without running again. The lease is
    renewed every ``lease``/3; if another worker takes the run over, the agent
    is cancelled and ``DurableRunLeaseLostError`` is raised with nothing more
    written. A run that already ended returns its recorded result, or raises
    ``DurableRunFailedError`` with its recorded error. ``delegation`` replaces
    the agent's own ``DelegationPolicy`` for this run. With ``slots``, the run
    waits for a free slot before it takes its lease (first come, first served).
    With ``retry_failed``, a run that failed or was cancelled starts again fresh
    instead (see ``RETRIED_STATUSES``); a completed run still returns its result.
    """
    definition = agent_definition(agent)
    check_name(run_id, what="run_id")
    lease_for = _positive_lease(lease)
    poll = as_timedelta(poll_interval, what="poll_interval")
    manifest = definition.manifest(
        input,
        project_id=project_id,
        scenario_id=scenario_id,
        task=task,
        tags=_traced(tags),
        delegation=delegation,
    )
    async with _slot(slots):
        return await _execute(
            definition,
            manifest,
            store=store,
            run_id=run_id,
            worker_id=worker_id,
            lease_for=lease_for,
            poll=poll,
            outcome=outcome,
            retry_failed=retry_failed,
        )


async def resume_run(
    store: DurableRunStore,
    run_id: str,
    *,
    worker_id: str | None = None,
    lease: timedelta | float = timedelta(seconds=30),
    poll_interval: timedelta | float = timedelta(milliseconds=100),
    slots: RunSlots | None = None,
    max_recovery_attempts: int | None = None,
) -> RunResult[Any]:
    """Continue run ``run_id`` from what ``store`` recorded: its agent, input and steps.

    This is how a worker picks up a run whose previous worker died without
    knowing how it was started. The agent's module must be imported, so that
    its ``@agent`` registration is known. With ``max_recovery_attempts``, a run
    that has lost its worker more often than that (``RunRecord.recoveries``) is
    not run: it ends failed under the lease just taken, and
    ``DurableRunRecoveryExhaustedError`` is raised.
    """
    if max_recovery_attempts is not None and max_recovery_attempts < 0:
        raise ValueError(
            f"max_recovery_attempts must be 0 or more, got {max_recovery_attempts}; "
            "pass None for no bound"
        )
    check_name(run_id, what="run_id")
    run = await store.load_run(run_id)
    manifest = await store.load_manifest(run_id)
    if run is None or manifest is None:
        raise run_not_found(run_id)
    definition = agent_definition(run.agent)
    lease_for = _positive_lease(lease)
    poll = as_timedelta(poll_interval, what="poll_interval")
    async with _slot(slots):
        return await _execute(
            definition,
            manifest,
            store=store,
            run_id=run_id,
            worker_id=worker_id,
            lease_for=lease_for,
            poll=poll,
            outcome=None,
            max_recoveries=max_recovery_attempts,
        )


def _slot(slots: RunSlots | None) -> contextlib.AbstractAsyncContextManager[None]:
    return contextlib.nullcontext() if slots is None else slots.slot()


def _positive_lease(lease: timedelta | float) -> timedelta:
    lease_for = as_timedelta(lease, what="lease")
    if lease_for <= timedelta(0):
        raise ValueError("lease must be positive; pass a duration such as 30 seconds")
    return lease_for


async def _execute(
    definition: AgentDefinition,
    manifest: DurableRunManifest,
    *,
    store: DurableRunStore,
    run_id: str,
    worker_id: str | None,
    lease_for: timedelta,
    poll: timedelta,
    outcome: RunOutcome | None,
    control: ChildControl | None = None,
    max_recoveries: int | None = None,
    retry_failed: bool = False,
) -> RunResult[Any]:
    label = f"agent {definition.name!r}"
    worker = worker_id or derive_worker_id()
    resumed = await store.start_or_resume(
        run_id=run_id,
        agent=definition.name,
        manifest=manifest,
        worker_id=worker,
        lease_for=lease_for,
        retry_failed=retry_failed,
    )
    if control is not None:
        control.started.set()
    if resumed.lease is None:
        return _ended(resumed.run, resumed.steps, definition.output.decode, label)

    async def run_child(spec: ChildSpec, child_control: ChildControl) -> ChildOutcome:
        # A worker that died holding this run held its children too: their leases
        # lapse within a lease of this one's, and are waited out that long at most.
        patience = asyncio.get_running_loop().time() + 2 * lease_for.total_seconds()
        while True:
            try:
                child = await _execute(
                    spec.definition,
                    spec.manifest,
                    store=store,
                    run_id=spec.run_id,
                    worker_id=worker,
                    lease_for=lease_for,
                    poll=poll,
                    outcome=None,
                    control=child_control,
                )
            except DurableRunLeaseHeldError:
                if asyncio.get_running_loop().time() > patience:
                    raise
                await asyncio.sleep(min(0.2, lease_for.total_seconds() / 3))
                continue
            return ChildOutcome(run=child.run, steps=child.steps)

    live = LivePublisher(store, run_id)
    if max_recoveries is not None and resumed.run.recoveries > max_recoveries:
        # Under the lease just taken: a worker racing this one finds the lease held,
        # then the run failed; neither runs the agent.
        try:
            raise await _give_up(store, resumed.lease, resumed.run, live, max_recoveries)
        finally:
            await live.flush()
    if resumed.resumed is not None:
        live.publish(resumed_entry(resumed))
    ctx = LocalContext(
        store=store,
        lease=resumed.lease,
        run=resumed.run,
        steps=resumed.steps,
        poll_interval=poll,
        live=live,
        declared=definition.events,
        manifest=manifest,
        delegation=manifest.delegation or definition.delegation,
        run_child=run_child,
    )
    try:
        agent_input = definition.decode_input(manifest, run_id=run_id)
    except DurableRunInputInvalidError as invalid:
        # Failed once, not resumed again: no worker can ever start this run's agent.
        await _fail(store, ctx, live, invalid)
        await live.flush()
        raise
    run_span = _run_span(definition, manifest, run_id, resumed=resumed.resumed is not None)
    ctx.gauge.move("running")
    work = asyncio.create_task(
        definition.fn(ctx, agent_input),
        name=f"durable:{run_id}",
        context=spans.task_context(run_span),  # the agent's steps are the run span's children
    )
    ctx.work, ctx.control = work, control
    lost: list[DurableRunLeaseLostError] = []

    def lease_lost(exc: DurableRunLeaseLostError) -> None:
        lost.append(exc)
        work.cancel()

    def cancel(reason: str) -> None:
        if ctx.cancel_reason is None:
            ctx.cancel_reason = reason
            # Children the agent awaits get the cancellation through it: with the reason.
            ctx._doom_children(parent_cancelled_reason(run_id, reason))
            work.cancel()

    ctx.on_cancel = cancel

    # Renewed from the store's keeper thread, not this loop: a step that blocks the loop
    # longer than the lease must not let another worker take the run over and rerun it.
    kept = store.lease_keeper.keep(ctx.lease, lease_for=lease_for, on_lost=lease_lost)
    watcher = asyncio.create_task(_watch_cancel(store, run_id, poll, cancel, resumed.run))
    try:
        try:
            value = await _agent(work, control, cancel)
        except asyncio.CancelledError:
            if lost:
                raise lost[0] from None
            if ctx.cancel_reason is None:
                ctx._abandon_children()  # the worker stops: the children resume with this run
                raise
            await _end_cancelled(store, ctx, live, control)
            raise _cancelled_error(run_id, ctx.cancel_reason, control) from None
        except DurableRunLeaseLostError:
            ctx._abandon_children()
            raise
        except Exception as exc:
            if lost:
                ctx._abandon_children()
                raise lost[0] from None
            if ctx.fatal is None and await ctx._being_cancelled():
                # The agent turned its cancellation into an error: the run is still cancelled.
                await _end_cancelled(store, ctx, live, control)
                raise _cancelled_error(run_id, ctx.cancel_reason, control) from exc
            # A run-fatal error the agent caught still ends the run, with its own code.
            failure = ctx.fatal or exc
            if isinstance(failure, DurableRunLeaseLostError):
                ctx._abandon_children()  # a lost lease may write nothing
            else:
                await _no_orphans(store, ctx, f"its parent run {run_id!r} failed")
                await _fail(store, ctx, live, failure)
            if failure is exc:
                raise
            raise failure from exc
        if lost:
            ctx._abandon_children()
            raise lost[0]  # the agent swallowed its cancellation
        await _no_orphans(store, ctx, f"its parent run {run_id!r} finished")
        if ctx.fatal is not None:
            if not isinstance(ctx.fatal, DurableRunLeaseLostError):
                await _fail(store, ctx, live, ctx.fatal)
            raise ctx.fatal
        unvisited = ctx.unvisited_recorded_steps()
        if unvisited:
            error = DurableRunDivergenceError(
                f"run {run_id!r} recorded {len(unvisited)} step(s) from position "
                f"{unvisited[0].step_index} ({unvisited[0].intent!r}) on, but the code now "
                f"finishes after {ctx.positions_used}; restore the removed steps or start a new run"
            )
            await _fail(store, ctx, live, error)
            raise error
        try:
            data, result = definition.output.round_trip(value, what=f"{label} run {run_id!r}")
        except DurableError as exc:
            await _fail(store, ctx, live, exc)
            raise
        record = await store.end_run(ctx.lease, status="completed", result=data, outcome=outcome)
        live.publish(LiveEvent(kind="run_completed"))
        _run_ended(ctx, run_span, None)
    except BaseException as exc:
        _run_ended(ctx, run_span, exc)
        raise
    finally:
        watcher.cancel()
        kept.release()
        work.cancel()
        await live.flush()
    return RunResult(result=result, run=record, steps=await store.load_steps(run_id))


def _run_span(
    definition: AgentDefinition, manifest: DurableRunManifest, run_id: str, *, resumed: bool
) -> Span:
    """The run's span: under the caller's span when there is one, else under the trace
    context its starter kept in the run's tags (a run another worker resumes)."""
    parent = None
    if not spans.current_is_traced():
        parent = spans.caller_context((manifest.tags or {}).get(names.TRACEPARENT))
    attributes = run_attributes("local", run_id, definition.name)
    return spans.open_span(names.RUN, {**attributes, names.RESUMED: resumed}, parent=parent)


def _run_ended(ctx: LocalContext, span: Span, error: BaseException | None) -> None:
    """End the run's span and move it out of the run gauges, by how its execution ended."""
    if error is None:
        status: str | None = "completed"
    elif isinstance(error, DurableRunCancelledError):
        status, error = "cancelled", asyncio.CancelledError()
    elif isinstance(error, asyncio.CancelledError | DurableRunLeaseLostError):
        status = None  # the worker stops, or another took the run over: it goes on elsewhere
    else:
        status = "failed"
    if status is None:
        ctx.gauge.move(None)
    else:
        span.set_attribute(names.RUN_STATUS, status)
        ctx.gauge.end(status)
    spans.finish(span, error)


def _traced(tags: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """``tags`` with the caller's trace context, so whichever worker resumes the run
    continues the caller's trace (the tags are not part of the run's identity)."""
    traceparent = spans.traceparent()
    if traceparent is None or (tags is not None and names.TRACEPARENT in tags):
        return tags
    return {**(tags or {}), names.TRACEPARENT: traceparent}


async def _agent(
    work: asyncio.Task[Any], control: ChildControl | None, cancel: Callable[[str], None]
) -> Any:
    """Await the agent; a parent cancelling this child run cancels it with its reason.

    The parent's agent may also stop awaiting its child itself (a timeout of its
    own, a task group), or be cancelled for good: the child then ends
    ``cancelled`` too. Only a worker that stops leaves the child to resume later.
    """
    try:
        return await work
    except asyncio.CancelledError:
        if control is not None and control.reason is None and control.parent is not None:
            control.reason = control.parent.reason_for_children()
        if control is not None and control.reason is not None:
            cancel(control.reason)
            if not work.done():
                await asyncio.gather(work, return_exceptions=True)
        raise


async def _watch_cancel(
    store: DurableRunStore,
    run_id: str,
    poll: timedelta,
    cancel: Callable[[str], None],
    run: RunRecord,
) -> None:
    """Cancel the run once someone asked to (``cancel`` from any process)."""
    every = min(max(poll.total_seconds() * 5, 0.2), 1.0)
    while run.cancel_requested is None:
        await asyncio.sleep(every)
        try:
            found = await store.load_run(run_id)
        except (DurableStoreError, OSError) as exc:
            logger.warning("run %r: reading a cancellation failed (%s); trying again", run_id, exc)
            continue
        if found is None:
            return
        run = found
    cancel(run.cancel_requested)


async def _no_orphans(store: DurableRunStore, ctx: LocalContext, reason: str) -> None:
    """Before a run ends: its children in flight are cancelled and settle, and any
    child run still running in the store (one a crash or an earlier execution left)
    is cancelled too, so no child outlives its parent."""
    await ctx._settle_children(reason)
    await _cancel_children(store, ctx.run_id, reason, gone=(ctx.lease.holder,))


async def _cancel_children(
    store: DurableRunStore, run_id: str, reason: str, *, gone: Collection[str | None]
) -> None:
    """Cancel every child of ``run_id`` still running in the store.

    A child held by one of the ``gone`` workers (this one, which no longer executes
    it, or one that died) has a lease as good as lapsed, and ends at once.
    """
    for child in await store.list_children(run_id):
        if not child.active:
            continue
        now = utc_now()
        if child.lease_holder in gone and child.lease_expires_at is not None:
            now = max(now, child.lease_expires_at)
        await store.request_cancel(child.run_id, reason, now=now)


async def _give_up(
    store: DurableRunStore, lease: Lease, run: RunRecord, live: LivePublisher, limit: int
) -> DurableRunRecoveryExhaustedError:
    """End ``run`` failed with ``recovery_exhausted``, its children first; return the error."""
    error = recovery_exhausted_error(run, limit)
    reason = f"its parent run {run.run_id!r} failed"
    await _cancel_children(store, run.run_id, reason, gone=(lease.holder, run.recovered_from))
    failure = step_error_from(error)
    await store.end_run(lease, status="failed", error=failure)
    live.publish(LiveEvent(kind="run_failed", error=failure.message))
    logger.error("%s", error)
    return error


def _cancelled_error(
    run_id: str, reason: str | None, control: ChildControl | None
) -> DurableRunCancelledError | DurableStepTimeoutError:
    if control is not None and control.timed_out:
        return DurableStepTimeoutError(f"child run {run_id!r} ran past its timeout")
    return cancelled_error(run_id, reason or "no reason given")


async def _end_cancelled(
    store: DurableRunStore, ctx: LocalContext, live: LivePublisher, control: ChildControl | None
) -> None:
    """Cancel the children first, then end the run ``cancelled`` (or timed out)."""
    reason = ctx.cancel_reason or "cancelled"
    await _no_orphans(store, ctx, parent_cancelled_reason(ctx.run_id, reason))
    error = step_error_from(_cancelled_error(ctx.run_id, reason, control))
    if control is not None and control.timed_out:
        await store.end_run(ctx.lease, status="failed", error=error)
        live.publish(LiveEvent(kind="run_failed", error=error.message))
        return
    await store.end_run(ctx.lease, status="cancelled", error=error)
    live.publish(LiveEvent(kind="run_cancelled", error=error.message))


async def _fail(
    store: DurableRunStore, ctx: LocalContext, live: LivePublisher, error: BaseException
) -> None:
    """End the run as failed with ``error``: recorded once, so it is never resumed again."""
    failure = step_error_from(error)
    await store.end_run(ctx.lease, status="failed", error=failure)
    live.publish(LiveEvent(kind="run_failed", error=failure.message))


def _ended(
    run: RunRecord,
    steps: list[StepRecord],
    decode: Callable[..., Any],
    label: str,
) -> RunResult[Any]:
    if run.status == "completed":
        result = decode(run.result, what=f"the result of {label} run {run.run_id!r}")
        return RunResult(result=result, run=run, steps=steps)
    error = run.error
    if run.status == "cancelled":
        raise cancelled_error(run.run_id, run.cancel_requested or "no reason was recorded")
    if error is None:
        raise run_failed_error(run.run_id, "an unknown error", "none was recorded")
    raise run_failed_error(run.run_id, error.type, error.message)
