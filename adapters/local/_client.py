"""``LocalClient``: the ``DurableClient`` of a local store, executing runs in this process.

Every answer comes from the store, so the client sees runs any process started
and any worker executes. The runs it starts itself it executes here, each in a
background task under its own lease, as ``run_durable`` would: through the
client's ``RunSlots``, and resumed by any worker if this process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from durable import (
    ENDED_STATUSES,
    CancelOutcome,
    Checkpoint,
    CheckpointInfo,
    DecisionOutcome,
    DelegationPolicy,
    DurableContext,
    DurableError,
    DurableRegistrationError,
    DurableRunInputMismatchError,
    DurableRunLeaseHeldError,
    DurableRunLeaseLostError,
    DurableStepFailedError,
    LiveEvent,
    PendingApproval,
    RunRecord,
    RunStatus,
    RunView,
    Started,
    StepRecord,
    TaskSpec,
    agent_definition,
    as_timedelta,
    check_name,
    derive_worker_id,
    error_for_code,
    manifest_hash,
    usage_totals,
)
from durable._checkpoints import checkpoint_not_found
from durable._failures import (
    cancelled_error,
    manifest_mismatch_error,
    replayed_failure,
    run_failed_error,
)

from ._approvals import decide_approval, pending_approvals
from ._cancel import cancel_run
from ._events import send_event
from ._live import watch_run
from ._retention import BlobDeleter, PurgeReport, purge
from ._runner import RunResult, run_durable
from ._slots import RunSlots
from ._store import RETRIED_STATUSES, DurableRunStore, run_not_found, utc_now

if TYPE_CHECKING:
    from durable import DurableClient

__all__ = ["LocalClient"]

DEFAULT_SLOTS = 100
"""Runs a client executes at once unless given ``slots``: ``DURABLE_MAX_CONCURRENT_RUNS``'s
default."""

_KEPT_OUTCOMES = 1024
"""Finished runs whose outcome a client keeps for ``result``; older ones answer from the store."""

Agent = Callable[[DurableContext, Any], Awaitable[Any]]


class LocalClient:
    """Starts, drives and reads runs in ``store``; runs it starts execute in this process.

    ``lease`` and ``poll_interval`` are those of ``run_durable``. ``slots`` caps
    how many runs this client executes at once (share a ``LocalWorker``'s
    ``slots`` to cap both together); by default it has ``DEFAULT_SLOTS`` of its
    own. With ``owns_store``, ``close`` closes the store too: pass it for a
    store opened for this client alone; a store given without it stays open.
    """

    def __init__(
        self,
        store: DurableRunStore,
        *,
        lease: timedelta | float = timedelta(seconds=30),
        worker_id: str | None = None,
        poll_interval: timedelta | float = timedelta(milliseconds=100),
        slots: RunSlots | None = None,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.lease = as_timedelta(lease, what="lease")
        if self.lease <= timedelta(0):
            raise ValueError("lease must be positive; pass a duration such as 30 seconds")
        self.poll_interval = as_timedelta(poll_interval, what="poll_interval")
        self.worker_id = worker_id or derive_worker_id()
        """The worker id this client's runs hold their leases under."""
        self.slots = slots or RunSlots(DEFAULT_SLOTS)
        self.owns_store = owns_store
        self._tasks: OrderedDict[str, asyncio.Task[RunResult[Any]]] = OrderedDict()
        self._closed = False

    async def __aenter__(self) -> LocalClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    # Starting and awaiting runs.

    async def start(
        self,
        agent: Agent | str,
        input: Any,
        *,
        run_id: str | None = None,
        delegation: DelegationPolicy | None = None,
        project_id: str = "default",
        scenario_id: str | None = None,
        task: TaskSpec | None = None,
        tags: Mapping[str, str] | None = None,
        retry_failed: bool = False,
    ) -> Started:
        """Start run ``run_id`` of ``agent`` here, or find the run with this input.

        A new run exists in the store when this returns, executing in a task of
        this process; with every slot taken, ``start`` waits for one first (back
        pressure, rather than runs queued where nobody can see them). An existing
        run with the same input is found (``created=False``): one no worker holds
        is resumed here, one another worker holds is left to it. With
        ``retry_failed``, one that failed or was cancelled (``RETRIED_STATUSES``)
        and has no child runs starts again fresh instead (``created=True``). Other
        input raises ``DurableRunInputMismatchError``, input of the wrong type
        ``DurableRunInputInvalidError``, both before anything is written.
        """
        if self._closed:
            raise RuntimeError("this LocalClient is closed; make a new one to start runs")
        definition = agent_definition(agent)
        run_id = f"{definition.name}-{_suffix()}" if run_id is None else run_id
        check_name(run_id, what="run_id")
        options: dict[str, Any] = {
            "project_id": project_id,
            "scenario_id": scenario_id,
            "task": task,
            "tags": tags,
            "delegation": delegation,
        }
        manifest = definition.manifest(input, **options)
        digest = manifest_hash(manifest)
        existing = await self.store.load_run(run_id)
        if existing is not None:
            if existing.manifest_hash != digest:
                raise manifest_mismatch_error(run_id, existing.manifest_hash, digest)
            if not (retry_failed and existing.status in RETRIED_STATUSES):
                if existing.active and not _held(existing) and not self._executing(run_id):
                    # Nobody executes it: resumed here, as run_durable would, in its turn.
                    self._keep(run_id, self._run(definition.fn, input, run_id, options, None))
                return Started(run_id=run_id, created=False)
        options["retry_failed"] = retry_failed
        held = contextlib.AsyncExitStack()
        await held.enter_async_context(self.slots.slot())
        running = self._keep(run_id, self._run(definition.fn, input, run_id, options, held))
        return Started(run_id=run_id, created=await self._created(run_id, running, existing))

    async def _run(
        self,
        fn: Agent,
        input: Any,
        run_id: str,
        options: dict[str, Any],
        held: contextlib.AsyncExitStack | None,
    ) -> RunResult[Any]:
        """``run_durable`` in a slot: ``held``, already taken by ``start``, or one it waits for."""
        async with held or contextlib.AsyncExitStack():
            return await run_durable(
                fn,
                input,
                store=self.store,
                run_id=run_id,
                worker_id=self.worker_id,
                lease=self.lease,
                poll_interval=self.poll_interval,
                slots=None if held is not None else self.slots,
                **options,
            )

    def _keep(self, run_id: str, work: Awaitable[RunResult[Any]]) -> asyncio.Task[RunResult[Any]]:
        task = asyncio.ensure_future(work)
        task.add_done_callback(_seen)
        self._tasks[run_id] = task
        self._tasks.move_to_end(run_id)
        finished = [key for key, kept in self._tasks.items() if kept.done()]
        for key in finished[: max(0, len(self._tasks) - _KEPT_OUTCOMES)]:
            del self._tasks[key]
        return task

    def _executing(self, run_id: str) -> bool:
        task = self._tasks.get(run_id)
        return task is not None and not task.done()

    async def _created(
        self, run_id: str, running: asyncio.Task[RunResult[Any]], ended: RunRecord | None
    ) -> bool:
        """Whether ``running`` (re)started the run: wait until it holds it, or is done.

        A moment ago the store had no such run, or the ``ended`` one to start
        again; another worker starting the same id meanwhile makes this task end
        with its error instead.
        """
        pause = 0.002
        while not running.done():
            found = await self.store.load_run(run_id)
            if found is not None and found.active and found.lease_holder == self.worker_id:
                return True
            await asyncio.wait({running}, timeout=pause)
            pause = min(pause * 2, self.poll_interval.total_seconds())
        if running.cancelled():
            return False  # this client closed meanwhile
        error = running.exception()
        if isinstance(error, DurableRunLeaseHeldError):
            return False  # another worker started it first, with this very input
        if isinstance(error, DurableRunInputMismatchError):
            raise error  # another worker started it first, with other input
        found = await self.store.load_run(run_id)
        if found is None and error is not None:
            raise error  # it never began: the start itself failed
        # An ended run that kept its generation was not started again (it has children).
        return ended is None or (
            found is not None and found.lease_generation != ended.lease_generation
        )

    async def result(self, run_id: str) -> Any:
        """Wait for the run's end; return its result or raise its failure.

        A run this client executes gives its own outcome: the agent's durable
        error as the agent raised it, any other error as ``DurableRunFailedError``.
        Any other run (another worker's, or one this client stopped executing when
        it closed) is awaited in the store, polled every ``poll_interval``; its
        recorded failure is raised as the durable error it recorded (a step's
        failure rebuilt from the failed step, as a replay raises it), or as
        ``DurableRunFailedError`` naming its error. A run no worker executes is
        waited for until one does.
        """
        check_name(run_id, what="run_id")
        running = self._tasks.get(run_id)
        if running is not None:
            try:
                return (await asyncio.shield(running)).result
            except (DurableRunLeaseHeldError, DurableRunLeaseLostError):
                pass  # another worker holds the run: its outcome comes through the store
            except DurableError:
                raise
            except asyncio.CancelledError:
                if not running.cancelled() or _cancelling():
                    raise  # the caller was cancelled, not the run
            except Exception as exc:
                raise run_failed_error(run_id, type(exc).__name__, str(exc)) from exc
        while True:
            run = await self.store.load_run(run_id)
            if run is None:
                raise run_not_found(run_id)
            if not run.active:
                return _outcome(run, await self.store.load_steps(run_id))
            await asyncio.sleep(self.poll_interval.total_seconds())

    # Reading runs.

    async def describe(self, run_id: str) -> RunView:
        """The run's state now, its waits, children and lease; ``DurableRunNotFoundError``
        if the store has no such run."""
        run = await self._existing(run_id)
        steps = await self.store.load_steps(run_id)
        children = [_listed(child) for child in await self.store.list_children(run_id)]
        view = _listed(run).model_copy(
            update={"error": _error_words(run), "step_count": len(steps), "children": children}
        )
        if not run.active:
            return view.model_copy(update={"waiting_for": []})
        now = utc_now()
        return view.model_copy(
            update={
                "waiting_for": [key for step in steps if (key := _awaited(step)) is not None],
                "attended": _held(run, now),
                "note": _lease_note(run, now),
            }
        )

    async def steps(self, run_id: str) -> list[StepRecord]:
        await self._existing(run_id)
        return await self.store.load_steps(run_id)

    async def runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunView]:
        """Runs, newest first (by creation, then run id); ``before`` (the last run id
        of the previous page) pages on. An unknown ``before`` raises
        ``DurableRunNotFoundError``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}; ask for a page of runs")
        records = await self.store.list_runs(
            status=status, agent=agent, limit=limit, newest=True, before=before
        )
        return [_listed(run) for run in reversed(records)]

    async def usage(self, run_id: str) -> dict[str, float | None]:
        """Tokens and cost of the run's completed model calls, from its steps."""
        return usage_totals(await self.steps(run_id))

    def watch(self, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
        return watch_run(self.store, run_id, after=after, poll_interval=self.poll_interval)

    async def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's context checkpoints by name, without payloads."""
        await self._existing(run_id)
        return await self.store.list_checkpoints(run_id)

    async def checkpoint(self, run_id: str, name: str) -> Checkpoint:
        """Checkpoint ``name`` of the run with its payload; ``DurableCheckpointNotFoundError``
        when it has none of that name."""
        await self._existing(run_id)
        found = await self.store.read_checkpoint(run_id, name)
        if found is None:
            raise checkpoint_not_found(run_id, name)
        return found

    # Acting on runs.

    async def send_event(self, run_id: str, key: str, payload: Any) -> bool | None:
        """``True`` accepted, ``False`` already sent (first wins); never ``None``: the
        store keeps the event whether or not a worker runs the run now."""
        return await send_event(self.store, run_id, key, payload)

    async def approvals(self, *, agent: str | None = None) -> list[PendingApproval]:
        return await pending_approvals(self.store, agent=agent)

    async def decide(
        self,
        target: str,
        decision: str,
        *,
        decided_by: str,
        input: Any = None,
        reason: str | None = None,
    ) -> DecisionOutcome:
        """``decide_approval``: kept in the store, applied when a worker runs the run."""
        return await decide_approval(
            self.store, target, decision, decided_by=decided_by, input=input, reason=reason
        )

    async def cancel(self, run_id: str, reason: str = "") -> CancelOutcome:
        return await cancel_run(self.store, run_id, reason)

    async def purge(
        self,
        *,
        older_than: timedelta,
        statuses: Collection[str] = ENDED_STATUSES,
        blobs: BlobDeleter | None = None,
        dry_run: bool = False,
    ) -> PurgeReport:
        """``purge`` on this client's store: ended runs older than ``older_than`` go."""
        return await purge(
            self.store, older_than=older_than, statuses=statuses, blobs=blobs, dry_run=dry_run
        )

    async def close(self) -> None:
        """Stop executing this client's runs, then close the store if it owns it.

        Nothing is cancelled or recorded: each run in flight keeps its state and
        its lease lapses, after which any worker (a ``LocalWorker``, or ``start``
        of the same run on another client) resumes it from its last step. Await
        ``result`` first for runs that should finish in this process. Idempotent.
        """
        self._closed = True
        running = [task for task in self._tasks.values() if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self.owns_store:
            await self.store.close()

    async def _existing(self, run_id: str) -> RunRecord:
        run = await self.store.load_run(check_name(run_id, what="run_id"))
        if run is None:
            raise run_not_found(run_id)
        return run


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _seen(task: asyncio.Task[Any]) -> None:
    """Mark the task's error as retrieved: ``result`` reports it, or the store does."""
    if not task.cancelled():
        task.exception()


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _held(run: RunRecord, now: datetime | None = None) -> bool:
    """Whether a worker holds a live lease on ``run``."""
    expires = run.lease_expires_at
    return run.lease_holder is not None and expires is not None and expires > (now or utc_now())


def _awaited(step: StepRecord) -> str | None:
    """The event key a step still waits for, if it is such a wait."""
    if step.kind == "event" and step.status == "running" and step.intent.startswith("await_event:"):
        return step.intent.split(":", 1)[1]
    return None


def _lease_note(run: RunRecord, now: datetime) -> str:
    """Who continues an active run: a live lease holder, or no one until a worker."""
    expires = run.lease_expires_at
    if _held(run, now):
        assert expires is not None
        return (
            f"worker {run.lease_holder!r} holds its lease until {expires.isoformat()} "
            "and continues it while it renews the lease"
        )
    lapsed = f"expired at {expires.isoformat()}" if expires is not None else "is not held"
    return (
        f"no worker holds it (its lease {lapsed}); start `durable worker --local` "
        "to resume it, then ask again"
    )


def _error_words(run: RunRecord) -> str | None:
    error = run.error
    if run.status not in ("failed", "cancelled") or error is None:
        return None
    return f"{error.type}: {error.message}"


def _listed(run: RunRecord) -> RunView:
    return RunView(
        run_id=run.run_id,
        agent=run.agent,
        status=run.status,
        parent_run_id=run.parent_run_id,
        created_at=run.created_at,
        ended_at=run.completed_at,
    )


def _outcome(run: RunRecord, steps: list[StepRecord]) -> Any:
    """An ended run's recorded result, or its recorded failure raised."""
    if run.status == "completed":
        try:
            definition = agent_definition(run.agent)
        except DurableRegistrationError:
            return run.result  # the agent is not importable here: its result as plain JSON
        return definition.output.decode(run.result, what=f"the result of run {run.run_id!r}")
    if run.status == "cancelled":
        raise cancelled_error(run.run_id, run.cancel_requested or "no reason was recorded")
    raise _failure(run, steps)


def _failure(run: RunRecord, steps: list[StepRecord]) -> DurableError:
    """The error a failed run recorded, as the agent raised it where the record holds
    enough to rebuild it (Temporal rebuilds it so too), else ``DurableRunFailedError``."""
    error = run.error
    if error is None:
        return run_failed_error(run.run_id, "an unknown error", "none was recorded")
    if error.code == DurableStepFailedError.code.value:
        failed = [step for step in steps if step.status == "failed" and step.error is not None]
        if failed:
            return replayed_failure(failed[-1])
    cls = error_for_code(error.code)
    if cls is not None:
        with contextlib.suppress(TypeError):  # errors with more than a message are not kept
            return cls(error.message)
    return run_failed_error(run.run_id, error.type, error.message)


if TYPE_CHECKING:

    def _conforms(client: LocalClient) -> DurableClient:
        return client
