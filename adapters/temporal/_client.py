"""``AgentClient``: start agent runs on Temporal, send them events, read their state.

A run's id is its workflow id. The manifest hash rides in the memo, so starting
a run id again with other input raises ``DurableRunInputMismatchError`` and
starting it with the same input attaches to the existing run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from durable import (
    USAGE_FIELDS,
    DurableContext,
    DurableEventPayloadError,
    DurableRegistrationError,
    DurableRunError,
    DurableRunFailedError,
    DurableRunNotFoundError,
    LiveEvent,
    StepRecord,
    TaskSpec,
    agent_definition,
    check_name,
    event_payload,
    manifest_hash,
)
from durable._failures import manifest_mismatch_error, run_ended_error, run_failed_error

from ._convert import durable_error_from
from ._live import watch_stream
from ._messages import (
    EVENT_UPDATE,
    EVENTS_MEMO,
    STATUS_QUERY,
    STEPS_QUERY,
    USAGE_MEMO,
    EventMessage,
)
from ._search import AGENT_NAME, PROJECT_ID

__all__ = ["AgentClient", "unreachable_run"]

_RECENT_HANDLES = 1024
MANIFEST_MEMO = "manifest_hash"
SEARCH_ATTRIBUTES_MEMO = "search_attributes"
"""Memo flag: the run carries the custom search attributes, so it may update them."""


async def _recorded_failure(handle: WorkflowHandle[Any, Any], run_id: str) -> DurableRunFailedError:
    try:
        await handle.result()
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, ApplicationError):
            return run_failed_error(run_id, cause.type or "ApplicationError", cause.message)
        return run_failed_error(run_id, type(cause).__name__, str(cause))
    return run_failed_error(run_id, "an unknown error", "the run has no recorded failure")


async def deliver_event(handle: WorkflowHandle[Any, Any], key: str, payload: Any) -> bool:
    """Send one checked event through the run's update; ``True`` if it was accepted.

    The one place an answer about an event is read, for clients and for the
    activity a run sends events to other runs with. A refused payload raises
    ``DurableEventPayloadError``; a run that ended answers ``False`` for a key
    it took (a retried sender) and ``DurableRunEndedError`` for a new one.
    Transient RPC errors are raised as they are, for the caller to retry.
    """
    run_id = handle.id
    try:
        accepted: bool = await handle.execute_update(
            EVENT_UPDATE, EventMessage(key=key, payload=payload), result_type=bool
        )
    except WorkflowUpdateFailedError as failure:
        raise DurableEventPayloadError(
            f"run {run_id!r} refused event {key!r}: {failure.cause}"
        ) from None
    except RPCError as failure:
        if failure.status != RPCStatusCode.NOT_FOUND:
            raise
        if "already completed" in failure.message:
            described = await handle.describe()
            if key in await described.memo_value(EVENTS_MEMO, []):
                return False
        raise unreachable_run(run_id, failure) from None
    return accepted


def unreachable_run(run_id: str, failure: RPCError) -> DurableRunError:
    """The durable error for a NOT_FOUND answer about a run: ended, or never there."""
    if "already completed" in failure.message:
        return run_ended_error(run_id)
    return DurableRunNotFoundError(
        f"no run {run_id!r} on this Temporal namespace ({failure.message}); check the run id"
    )


class AgentClient:
    """Starts and drives agent runs on one task queue."""

    def __init__(self, client: Client, *, task_queue: str, search_attributes: bool = True) -> None:
        """``search_attributes`` needs ``AgentName``, ``ProjectId`` and ``WaitingFor``
        registered on the namespace (the embedded dev server does it; on a cluster run
        ``deploy/register_search_attributes.py``); without them, pass ``False``."""
        self.client = client
        self.task_queue = task_queue
        self.search_attributes = search_attributes
        # Handles of runs this client started wait on the exact run; the time-skipping
        # test server answers result() only through such a handle. Bounded: a long-lived
        # client keeps only the most recent ones.
        self._started: OrderedDict[str, WorkflowHandle[Any, Any]] = OrderedDict()

    def _handle(self, run_id: str) -> WorkflowHandle[Any, Any]:
        return self._started.get(run_id) or self.client.get_workflow_handle(run_id)

    async def start(
        self,
        agent: Callable[[DurableContext, Any], Awaitable[Any]] | str,
        input: Any,
        *,
        run_id: str,
        project_id: str = "default",
        scenario_id: str | None = None,
        task: TaskSpec | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> WorkflowHandle[Any, Any]:
        """Start run ``run_id`` of ``agent``, or attach to it if it exists with this input.

        Raises ``DurableRunInputMismatchError`` if the run exists with other input
        and ``DurableRunFailedError`` if it exists and already failed.
        """
        definition = agent_definition(agent)
        check_name(run_id, what="run_id")
        manifest = definition.manifest(
            input, project_id=project_id, scenario_id=scenario_id, task=task, tags=tags
        )
        digest = manifest_hash(manifest)
        try:
            handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                definition.name,
                manifest,
                id=run_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
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
            self._started[run_id] = handle
            if len(self._started) > _RECENT_HANDLES:
                self._started.popitem(last=False)
            return handle
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(run_id)
            described = await handle.describe()
            recorded = await described.memo_value(MANIFEST_MEMO, None)
            if recorded != digest:
                raise manifest_mismatch_error(run_id, str(recorded), digest) from None
            if described.status == WorkflowExecutionStatus.FAILED:
                raise await _recorded_failure(handle, run_id) from None
            return handle

    async def result(self, run_id: str) -> Any:
        """Wait for the run and return its result, typed by the agent's return annotation."""
        handle = self._handle(run_id)
        try:
            data = await handle.result()
        except WorkflowFailureError as failure:
            error = durable_error_from(failure.cause, run_id)
            if error is not None:
                raise error from None
            raise DurableRunFailedError(
                f"run {run_id!r} failed: {failure.cause}; see the run in the Temporal UI"
            ) from None
        described = await handle.describe()
        try:
            definition = agent_definition(described.workflow_type)
        except DurableRegistrationError:
            return data  # the agent is not importable here: its result as plain JSON
        return definition.output.decode(data, what=f"the result of run {run_id!r}")

    async def send_event(self, run_id: str, key: str, payload: Any) -> bool:
        """Send an event; ``True`` if accepted, ``False`` if the key was already emitted.

        A malformed event is refused with ``DurableEventPayloadError`` and leaves the
        run unharmed.
        """
        check_name(key, what="event key")
        # Checked here, as the local store checks it: a refused payload never travels.
        data = event_payload(payload, what=f"event {key!r}")
        return await deliver_event(self._handle(run_id), key, data)

    async def watch(self, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
        """Yield the run's live entries after ``after`` as they come, until it ends.

        Steps starting, retrying and finishing, model token deltas, and waits;
        pass the ``seq`` of the last entry seen as ``after`` to pick up there.
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
        handle = self._handle(run_id)
        steps: list[StepRecord] = await handle.query(STEPS_QUERY, result_type=list[StepRecord])
        return steps

    async def usage(self, run_id: str) -> dict[str, float]:
        """Tokens and cost of the run's model calls so far, from its memo."""
        described = await self._handle(run_id).describe()
        totals: dict[str, float] = dict.fromkeys(USAGE_FIELDS, 0.0)
        totals.update(await described.memo_value(USAGE_MEMO, {}))
        return totals

    async def status(self, run_id: str) -> dict[str, Any]:
        handle = self._handle(run_id)
        status: dict[str, Any] = await handle.query(STATUS_QUERY, result_type=dict[str, Any])
        return status
