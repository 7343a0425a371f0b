"""``AgentClient``: start agent runs on Temporal, send them events, read their state.

A run's id is its workflow id. The manifest hash rides in the memo, so starting
a run id again with other input raises ``DurableRunInputMismatchError`` and
starting it with the same input attaches to the existing run. ``AgentClient``
is the ``DurableClient`` of Temporal: the same answers as ``LocalClient``, with
what only Temporal knows (a run no worker answers for) said in them.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import (
    CancelledError,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode

from durable import (
    ACTIVE_STATUSES,
    USAGE_FIELDS,
    CancelOutcome,
    Checkpoint,
    CheckpointInfo,
    DecisionOutcome,
    DelegationPolicy,
    DurableContext,
    DurableRegistrationError,
    DurableRunFailedError,
    LiveEvent,
    PendingApproval,
    RunStatus,
    RunView,
    Started,
    StepRecord,
    TaskSpec,
    agent_definition,
    as_timedelta,
    check_name,
    event_payload,
    manifest_hash,
)
from durable._failures import cancelled_error, manifest_mismatch_error
from durable._patches import check_event_key
from durable_agents.adapters.blobs import BlobStore, default_blob_store
from durable_agents.adapters.telemetry import traced_client

from . import _approvals
from ._checkpoint_reads import read_checkpoint, read_checkpoints
from ._convert import durable_error_from
from ._delivery import deliver_event, unreachable_run
from ._live import watch_stream
from ._messages import (
    MANIFEST_MEMO,
    SEARCH_ATTRIBUTES_MEMO,
    STATUS_QUERY,
    USAGE_MEMO,
)
from ._search import AGENT_NAME, PROJECT_ID, SEARCH_ATTRIBUTES, WAITING_FOR, quoted
from ._status import QUERY_WITHIN, RunSnapshot, run_snapshot, state_of

if TYPE_CHECKING:
    from durable import DurableClient

__all__ = ["ANSWER_WITHIN", "AgentClient"]

_RECENT_HANDLES = 1024

ANSWER_WITHIN = timedelta(seconds=10)
"""How long ``send_event`` waits for the run's worker before the event goes by signal."""


def _unregistered_attribute(failure: RPCError) -> bool:
    text = failure.message.lower()
    return failure.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in text


def _unregistered_attributes_error(namespace: str) -> DurableRegistrationError:
    names = ", ".join(SEARCH_ATTRIBUTES)
    return DurableRegistrationError(
        f"the Temporal namespace {namespace!r} has not registered the search attributes "
        f"agent runs carry ({names}); register them with "
        "deploy/register_search_attributes.py (TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE "
        "name the server), or start runs without them: AgentClient(..., search_attributes=False)"
    )


class AgentClient:
    """Starts and drives agent runs on one task queue."""

    def __init__(self, client: Client, *, task_queue: str, search_attributes: bool = True) -> None:
        """``search_attributes`` needs ``AgentName``, ``ProjectId`` and ``WaitingFor``
        registered on the namespace (the embedded dev server does it; on a cluster run
        ``deploy/register_search_attributes.py``); without them, pass ``False``.

        The caller's trace context goes with every run it starts and event it sends:
        ``client`` is used as is if its interceptors carry it, else a copy that does."""
        self.client = traced_client(client)
        self.task_queue = task_queue
        self.search_attributes = search_attributes
        # Handles of runs this client started wait on the exact run; the time-skipping
        # test server answers result() only through such a handle. With each, the run's
        # agent: result() then needs no describe to type the result. Bounded: a
        # long-lived client keeps only the most recent ones.
        self._started: OrderedDict[str, tuple[WorkflowHandle[Any, Any], str]] = OrderedDict()

    def _handle(self, run_id: str) -> WorkflowHandle[Any, Any]:
        started = self._started.get(run_id)
        return started[0] if started else self.client.get_workflow_handle(run_id)

    async def start(
        self,
        agent: Callable[[DurableContext, Any], Awaitable[Any]] | str,
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
        """Start run ``run_id`` of ``agent`` (by default ``<agent>-<8 hex>``), or find
        it (``created=False``) if it exists with this input, ended or not.

        ``delegation`` replaces the agent's own ``DelegationPolicy`` for this run.
        Raises ``DurableRunInputMismatchError`` if the run exists with other input;
        a run that exists and failed raises its failure from ``result``. With
        ``retry_failed``, a run that failed, was cancelled, terminated or timed out,
        and has no child runs, starts again as a new execution of the same workflow
        id (``ALLOW_DUPLICATE_FAILED_ONLY``), as a local store starts it again; a
        completed run never does.
        """
        definition = agent_definition(agent)
        run_id = f"{definition.name}-{uuid.uuid4().hex[:8]}" if run_id is None else run_id
        check_name(run_id, what="run_id")
        manifest = definition.manifest(
            input,
            project_id=project_id,
            scenario_id=scenario_id,
            task=task,
            tags=tags,
            delegation=delegation,
        )
        digest = manifest_hash(manifest)
        reuse = WorkflowIDReusePolicy.REJECT_DUPLICATE
        if retry_failed and await self._may_start_again(run_id, digest):
            reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
        try:
            handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                definition.name,
                manifest,
                id=run_id,
                task_queue=self.task_queue,
                id_reuse_policy=reuse,
                memo={MANIFEST_MEMO: digest, SEARCH_ATTRIBUTES_MEMO: self.search_attributes},
                search_attributes=(
                    TypedSearchAttributes(
                        [
                            SearchAttributePair(AGENT_NAME, definition.name),
                            SearchAttributePair(PROJECT_ID, project_id),
                        ]
                    )
                    if self.search_attributes
                    else TypedSearchAttributes.empty
                ),
                static_summary=f"{definition.name}: {definition.description}"[:200],
                static_details=f"project `{project_id}`, manifest {digest[:12]}",
            )
            self._started[run_id] = handle, definition.name
            if len(self._started) > _RECENT_HANDLES:
                self._started.popitem(last=False)
            return Started(run_id=run_id, created=True)
        except RPCError as failure:
            if self.search_attributes and _unregistered_attribute(failure):
                raise _unregistered_attributes_error(self.client.namespace) from None
            raise
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(run_id)
            described = await handle.describe()
            recorded = await described.memo_value(MANIFEST_MEMO, None)
            if recorded != digest:
                raise manifest_mismatch_error(run_id, str(recorded), digest) from None
            return Started(run_id=run_id, created=False)

    async def _may_start_again(self, run_id: str, digest: str) -> bool:
        """Whether ``retry_failed`` lets run ``run_id`` start again: it exists, ended in a
        way Temporal lets ``ALLOW_DUPLICATE_FAILED_ONLY`` reuse, and has no child runs.

        Its manifest is checked first: a new execution with other input would pass
        Temporal's id check and change the run's identity.
        """
        try:
            described = await self.client.get_workflow_handle(run_id).describe()
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        recorded = await described.memo_value(MANIFEST_MEMO, None)
        if recorded != digest:
            raise manifest_mismatch_error(run_id, str(recorded), digest)
        ended = described.status not in (None, WorkflowExecutionStatus.RUNNING)
        return (
            ended
            and described.status != WorkflowExecutionStatus.COMPLETED
            and not await self.children(run_id)
        )

    async def result(self, run_id: str) -> Any:
        """Wait for the run and return its result, typed by the agent's return annotation
        (plain JSON when the agent is not registered here); raise its failure."""
        started = self._started.get(check_name(run_id, what="run_id"))
        handle = started[0] if started else self.client.get_workflow_handle(run_id)
        try:
            data = await handle.result()
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                raise unreachable_run(run_id, failure) from None
            raise
        except WorkflowFailureError as failure:
            if isinstance(failure.cause, CancelledError):
                raise cancelled_error(run_id, await _cancel_reason(handle)) from None
            error = durable_error_from(failure.cause, run_id)
            if error is not None:
                raise error from None
            raise DurableRunFailedError(
                f"run {run_id!r} failed: {failure.cause}; see the run in the Temporal UI"
            ) from None
        if started is not None:
            # This client started the run: a run of its agent with no parent, and the
            # handle follows that execution only, so there is nothing to describe.
            parent_id, agent = None, started[1]
        else:
            described = await handle.describe()
            parent_id, agent = described.parent_id, described.workflow_type
        if parent_id is not None and isinstance(data, dict) and "result" in data:
            data = data["result"]  # a child run's envelope: its result, with its usage
        try:
            definition = agent_definition(agent)
        except DurableRegistrationError:
            return data  # the agent is not importable here: its result as plain JSON
        return definition.output.decode(data, what=f"the result of run {run_id!r}")

    async def cancel(self, run_id: str, reason: str = "") -> CancelOutcome:
        """Cancel run ``run_id`` and, first, its children; ``already_ended`` if it had ended.

        The run's agent gets the cancellation at the point it waits (a step's
        activity is cancelled too), its children are cancelled and settle, and
        the run ends ``cancelled`` with ``reason``, which its history keeps.
        """
        check_name(run_id, what="run_id")
        handle = self._handle(run_id)
        try:
            described = await handle.describe()
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                raise unreachable_run(run_id, failure) from None
            raise
        if described.status != WorkflowExecutionStatus.RUNNING:
            return "already_ended"
        try:
            await handle.cancel(reason=reason or "cancelled by a caller")
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                return "already_ended"  # it ended between the two calls
            raise
        return "requested"

    async def approvals(self, *, agent: str | None = None) -> list[PendingApproval]:
        """Every approval a run waits for (of ``agent`` only, if given); no worker needed."""
        return await _approvals.pending_approvals(self.client, agent=agent)

    async def decide(
        self,
        target: str,
        decision: str,
        *,
        decided_by: str,
        input: Any = None,
        reason: str | None = None,
    ) -> DecisionOutcome:
        """Approve, edit or reject the approval ``target`` (its id, or a run waiting for
        one): the rules of the local store's ``decide_approval``, plus ``delivered``
        when no worker answers in time (kept, applied when one runs the run)."""
        return await _approvals.decide(
            self.client, target, decision, decided_by=decided_by, input=input, reason=reason
        )

    async def runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunView]:
        """Runs, newest first (by start time, then run id), from visibility; ``before``
        (the last run id of the previous page) pages on. An unknown ``before``
        raises ``DurableRunNotFoundError``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}; ask for a page of runs")
        cursor = None
        if before is not None:
            cursor = (await self._describe(before)).start_time, before
        found = await _approvals.list_runs(
            self.client, status=status, agent=agent, limit=limit, before=cursor
        )
        return [_listed(execution, state) for execution, state in found]

    async def describe(self, run_id: str) -> RunView:
        """The run's state, waits, failure and children, with or without a worker
        (``attended`` says whether one answers); ``DurableRunNotFoundError`` if there
        is no such run."""
        snapshot = await self.snapshot(run_id)
        described = await self._describe(run_id)
        active = snapshot.state in ACTIVE_STATUSES
        retries = [
            f"step {index} tries again at {when}"
            for index, when in sorted(snapshot.next_attempts.items())
        ]
        unanswered = [] if snapshot.unanswered is None else [snapshot.unanswered]
        if unanswered:
            unanswered.append("its steps come from the run's history")
        note = "; ".join(unanswered + retries)
        return RunView(
            run_id=run_id,
            agent=snapshot.agent,
            status=snapshot.state,
            parent_run_id=described.parent_id,
            created_at=described.start_time,
            ended_at=described.close_time,
            error=snapshot.failure,
            waiting_for=snapshot.waiting_for,
            step_count=len(snapshot.steps),
            children=await self._children(run_id),
            attended=(snapshot.unanswered is None) if active else None,
            note=note or None,
        )

    async def children(self, run_id: str) -> list[str]:
        """The ids of the child runs ``run_id`` started, oldest first."""
        return [child.run_id for child in await self._children(run_id)]

    async def _children(self, run_id: str) -> list[RunView]:
        check_name(run_id, what="run_id")
        query = f"ParentWorkflowId = '{quoted(run_id)}'"
        found = [
            _listed(w, state_of(w.status, w.typed_search_attributes.get(WAITING_FOR)))
            async for w in self.client.list_workflows(query)
        ]
        return sorted(
            found, key=lambda view: (view.created_at is None, view.created_at, view.run_id)
        )

    async def _describe(self, run_id: str) -> WorkflowExecutionDescription:
        try:
            return await self._handle(check_name(run_id, what="run_id")).describe()
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                raise unreachable_run(run_id, failure) from None
            raise

    async def send_event(
        self,
        run_id: str,
        key: str,
        payload: Any,
        *,
        answer_within: timedelta | float | None = ANSWER_WITHIN,
    ) -> bool | None:
        """Send an event; ``True`` if accepted, ``False`` if the key was already emitted.

        A malformed event is refused with ``DurableEventPayloadError`` and leaves the
        run unharmed. Only a worker answers: when none answers within
        ``answer_within``, the event is delivered by signal and the answer is
        ``None``: it is applied when a worker runs the run, but nobody has
        acknowledged it yet. ``answer_within=None`` waits for a worker however long.
        """
        check_event_key(key)
        # Checked here, as the local store checks it: a refused payload never travels.
        data = event_payload(payload, what=f"event {key!r}")
        if answer_within is None:
            return await deliver_event(self._handle(run_id), key, data)
        bound = as_timedelta(answer_within, what="answer_within")
        return await deliver_event(self._handle(run_id), key, data, answer_within=bound)

    async def watch(self, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
        """Yield the run's live entries after ``after`` as they come, until it ends.

        Steps starting, retrying and finishing, model token deltas, and waits;
        pass the ``seq`` of the last entry seen as ``after`` to pick up there.
        Watching adds no events to the run's history: it reads the stream by query,
        again at once while entries come and at most ``IDLE_POLL`` apart when idle.
        A query needs a worker; while none answers, the watch waits.
        """
        check_name(run_id, what="run_id")
        try:
            await self._handle(run_id).describe()
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                raise unreachable_run(run_id, failure) from None
            raise
        async for event in watch_stream(self.client, run_id, after=after):
            yield event

    async def steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps: its worker's, or its history's when no worker answers."""
        return (await self.snapshot(run_id)).steps

    async def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's context checkpoints by name, from its memo: no worker needed."""
        return await read_checkpoints(self._handle(run_id))

    async def checkpoint(
        self, run_id: str, name: str, *, blobs: BlobStore | None = None
    ) -> Checkpoint:
        """Checkpoint ``name`` of the run with its payload, read from ``blobs`` (by default
        the blob store ``DURABLE_BLOBS`` names, which the run's workers share).

        Raises ``DurableCheckpointNotFoundError`` when the run has none of that name.
        """
        return await read_checkpoint(self._handle(run_id), name, blobs or default_blob_store())

    async def usage(self, run_id: str) -> dict[str, float | None]:
        """Tokens and cost of the run's model calls so far, from its memo (``None``: unknown)."""
        described = await self._describe(run_id)
        totals: dict[str, float | None] = dict.fromkeys(USAGE_FIELDS, 0.0)
        totals.update(await described.memo_value(USAGE_MEMO, {}))
        return totals

    async def snapshot(self, run_id: str, *, query_within: timedelta = QUERY_WITHIN) -> RunSnapshot:
        """The run's state, steps and failure; answered from describe and history when
        no worker answers its query within ``query_within``."""
        check_name(run_id, what="run_id")
        try:
            return await run_snapshot(self.client, run_id, query_within=query_within)
        except RPCError as failure:
            if failure.status == RPCStatusCode.NOT_FOUND:
                raise unreachable_run(run_id, failure) from None
            raise

    async def status(self, run_id: str) -> dict[str, Any]:
        """The run's worker's own status query; it needs a worker (``describe`` does not)."""
        handle = self._handle(run_id)
        status: dict[str, Any] = await handle.query(STATUS_QUERY, result_type=dict[str, Any])
        return status

    async def close(self) -> None:
        """Forget the handles of the runs this client started; runs go on, on Temporal.

        The ``Client`` it was given stays usable: it is the caller's, and Temporal's
        client holds no connection that needs closing before the process ends.
        """
        self._started.clear()


def _listed(execution: WorkflowExecution, state: str) -> RunView:
    """A run as a listing gives it: no steps, waits or failure."""
    return RunView(
        run_id=execution.id,
        agent=execution.workflow_type,
        status=state,
        parent_run_id=execution.parent_id,
        created_at=execution.start_time,
        ended_at=execution.close_time,
    )


if TYPE_CHECKING:

    def _conforms(client: AgentClient) -> DurableClient:
        return client


async def _cancel_reason(handle: WorkflowHandle[Any, Any]) -> str:
    """The reason a cancelled run was given, as its history keeps it."""
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_cancel_requested_event_attributes"):
            cause = event.workflow_execution_cancel_requested_event_attributes.cause
            return cause or "no reason given"
    return "no reason given"
