"""The substrates the conformance scenarios run on, behind one small interface.

A scenario starts runs, sends events, crashes and resumes workers, and reads
back the recorded steps only through ``Substrate``, so a new substrate joins the
suite by implementing it and adding one fixture parameter. What a caller does
(read a run, send it an event, decide, cancel, watch, list) goes through the
substrate's ``DurableClient``, written once here; starting, awaiting, crashing
and resuming runs stand for a worker, and are each substrate's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Worker

from durable import (
    CancelOutcome,
    Checkpoint,
    CheckpointInfo,
    DecisionOutcome,
    DelegationPolicy,
    DurableContext,
    DurableError,
    LiveEvent,
    PendingApproval,
    RunStatus,
    StepRecord,
    derive_worker_id,
)
from durable._compat import CompatReport
from durable._failures import run_failed_error
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import DurableRunStore, LocalClient, check_runs, run_durable
from durable_agents.adapters.temporal import EVENT_SIGNAL, AgentClient, check_workflows

Agent = Callable[[DurableContext, Any], Awaitable[Any]]

MODULES = (
    "tests.conformance.agents",
    "tests.conformance.family",
    "tests.conformance.approval_agents",
    "tests.conformance.checkpoint_agents",
)
"""The agent modules a Temporal worker of the suite hosts."""


class Substrate(ABC):
    name: str
    local: bool
    """True when the substrate is a local store, whose leases scenarios may race."""
    client: LocalClient | AgentClient
    """The substrate's ``DurableClient``, which callers read and drive runs through."""

    @abstractmethod
    async def start(
        self, agent: Agent, job: Any, *, run_id: str, delegation: DelegationPolicy | None = None
    ) -> None:
        """Begin the run in the background (``delegation``: its own policy)."""

    @abstractmethod
    async def result(self, run_id: str, *, timeout: float = 20) -> Any:
        """Wait for the run and return its result, or raise its error."""

    async def run(
        self, agent: Agent, job: Any, *, run_id: str, delegation: DelegationPolicy | None = None
    ) -> Any:
        await self.start(agent, job, run_id=run_id, delegation=delegation)
        return await self.result(run_id)

    @abstractmethod
    async def signal_event(self, run_id: str, key: str, payload: Any) -> None:
        """Send an event without waiting for an answer (it may wake the run)."""

    @abstractmethod
    async def crash(self, run_id: str) -> None:
        """Stop executing the run abruptly, recording nothing more."""

    @abstractmethod
    async def resume(self, agent: Agent, job: Any, *, run_id: str) -> None:
        """Continue a crashed run on a fresh worker."""

    # What a caller does, through the client.

    async def send_event(self, run_id: str, key: str, payload: Any) -> bool:
        """Send an event from outside the run; ``True`` if this send was accepted."""
        accepted = await self.client.send_event(run_id, key, payload)
        assert accepted is not None, f"no worker answered for run {run_id!r} in time"
        return accepted

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.client.steps(run_id)

    def live(self, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
        """The run's live stream, through the client's ``watch``."""
        return self.client.watch(run_id, after=after)

    async def watch(self, run_id: str, *, after: int = 0, timeout: float = 20) -> list[LiveEvent]:
        """Every live entry after ``after`` until the run's end."""

        async def collect() -> list[LiveEvent]:
            return [event async for event in self.live(run_id, after=after)]

        return await asyncio.wait_for(collect(), timeout)

    async def wait_for_step(self, run_id: str, intent: str, *, timeout: float = 10) -> StepRecord:
        """Wait until the run has begun the step ``intent`` (for example, is waiting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                steps = await self.steps(run_id)
            except Exception:  # a child run may not exist yet, or have no worker yet
                steps = []
            for record in steps:
                if record.intent == intent:
                    return record
            await asyncio.sleep(0.02)
        raise AssertionError(f"run {run_id!r} never reached step {intent!r}")

    async def cancel(self, run_id: str, reason: str) -> CancelOutcome:
        """Cancel the run, its children first."""
        return await self.client.cancel(run_id, reason)

    async def status(self, run_id: str) -> str:
        """The run's state in the run-state words (``waiting_for_approval`` and all)."""
        return (await self.client.describe(run_id)).status

    async def state(self, run_id: str) -> str:
        return await self.status(run_id)

    async def children(self, run_id: str) -> list[str]:
        """The ids of the run's child runs, oldest first."""
        return [child.run_id for child in (await self.client.describe(run_id)).children]

    async def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's context checkpoints, read from outside the run."""
        return await self.client.checkpoints(run_id)

    async def checkpoint(self, run_id: str, name: str) -> Checkpoint:
        """One checkpoint with its payload, read from outside the run."""
        return await self.client.checkpoint(run_id, name)

    async def approvals(self, *, agent: str | None = None) -> list[PendingApproval]:
        return await self.client.approvals(agent=agent)

    async def decide(
        self, target: str, decision: str, *, decided_by: str = "ana", **more: Any
    ) -> DecisionOutcome:
        return await self.client.decide(target, decision, decided_by=decided_by, **more)

    async def runs(self, status: RunStatus) -> list[str]:
        """The ids of the runs in ``status``."""
        return [run.run_id for run in await self.client.runs(status=status, limit=1000)]

    async def pending(self, run_id: str, *, timeout: float = 20) -> PendingApproval:
        """The one approval ``run_id`` waits for, once it is listed."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in await self.approvals() if p.run_id == run_id]
            if found:
                (approval,) = found
                return approval
            assert time.monotonic() < deadline, f"run {run_id!r} never listed an approval"
            await asyncio.sleep(0.05)

    @abstractmethod
    async def check_compat(self, agents: list[str] | None = None) -> CompatReport:
        """What ``durable check-compat`` finds: the active runs the code now would not replay."""

    async def close(self) -> None:
        await self.client.close()


class LocalSubstrate(Substrate):
    """``run_durable`` over one local store, with short leases so takeovers are quick.

    Each start or resume is a worker of its own (a fresh worker id), so a crash
    leaves a lease another worker must wait out, as a real crash does.
    """

    local = True

    def __init__(
        self, name: str, store: DurableRunStore, *, location: str = "", lease: float = 0.6
    ) -> None:
        self.name = name
        self.store = store
        self.location = location
        """Where another process finds the same store: a path or a DSN; empty for memory."""
        self.lease = timedelta(seconds=lease)
        self.client = LocalClient(store, lease=self.lease, poll_interval=0.01)
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    async def start(
        self,
        agent: Agent,
        job: Any,
        *,
        run_id: str,
        delegation: DelegationPolicy | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._tasks[run_id] = asyncio.create_task(
            run_durable(
                agent,
                job,
                store=self.store,
                run_id=run_id,
                worker_id=worker_id or derive_worker_id(),
                lease=self.lease,
                poll_interval=0.01,
                delegation=delegation,
            )
        )
        await asyncio.sleep(0)

    async def result(self, run_id: str, *, timeout: float = 20) -> Any:
        outcome = await asyncio.wait_for(self._tasks[run_id], timeout)
        return outcome.result

    async def signal_event(self, run_id: str, key: str, payload: Any) -> None:
        await self.store.emit_event(run_id, key, payload)

    async def crash(self, run_id: str) -> None:
        task = self._tasks.pop(run_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def check_compat(self, agents: list[str] | None = None) -> CompatReport:
        return await check_runs(self.store, agents=agents)

    async def resume(self, agent: Agent, job: Any, *, run_id: str) -> None:
        # The crashed worker's lease is still live; a new worker takes over once it expires.
        await asyncio.sleep(self.lease.total_seconds() + 0.1)
        await self.start(agent, job, run_id=run_id)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
            # Outcomes were already asserted by the scenario; teardown only collects them.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()
        await self.store.close()


class TemporalSubstrate(Substrate):
    """Runs as Temporal workflows on a real dev server, through ``AgentClient``.

    The worker keeps no workflow cache, so every workflow task replays the run's
    history: the strictest test of the workflow code's determinism. A crash shuts
    the worker down; a resume starts a fresh one.
    """

    local = False
    name = "temporal"
    client: AgentClient

    def __init__(self, client: Client, *, task_queue: str) -> None:
        self.client = AgentClient(client, task_queue=task_queue)
        self.task_queue = task_queue
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._start_errors: dict[str, BaseException] = {}

    async def start_worker(self) -> None:
        self._worker = Worker(
            self.client.client,
            task_queue=self.task_queue,
            plugins=[DurableAgentsPlugin(MODULES)],
            max_cached_workflows=0,
        )
        self._worker_task = asyncio.create_task(self._worker.run())

    async def stop_worker(self) -> None:
        worker, task = self._worker, self._worker_task
        self._worker, self._worker_task = None, None
        if worker is not None and task is not None:
            await worker.shutdown()
            await task

    async def start(
        self, agent: Agent, job: Any, *, run_id: str, delegation: DelegationPolicy | None = None
    ) -> None:
        self._start_errors.pop(run_id, None)
        try:
            started = await self.client.start(agent, job, run_id=run_id, delegation=delegation)
        except DurableError as exc:
            # run_durable reports these when awaited; so does this substrate.
            self._start_errors[run_id] = exc
            return
        if started.created:
            return
        described = await self.client.client.get_workflow_handle(run_id).describe()
        if described.status == WorkflowExecutionStatus.FAILED:
            # run_durable replays a run that already failed as run_failed; so does this one.
            try:
                await self.client.result(run_id)
            except DurableError as failure:
                self._start_errors[run_id] = run_failed_error(
                    run_id, type(failure).__name__, failure.message
                )

    async def result(self, run_id: str, *, timeout: float = 20) -> Any:
        if run_id in self._start_errors:
            raise self._start_errors.pop(run_id)
        return await asyncio.wait_for(self.client.result(run_id), timeout)

    async def signal_event(self, run_id: str, key: str, payload: Any) -> None:
        handle = self.client.client.get_workflow_handle(run_id)
        await handle.signal(EVENT_SIGNAL, {"key": key, "payload": payload})

    async def crash(self, run_id: str) -> None:
        await self.stop_worker()

    async def resume(self, agent: Agent, job: Any, *, run_id: str) -> None:
        await self.start_worker()

    async def check_compat(self, agents: list[str] | None = None) -> CompatReport:
        return await check_workflows(
            self.client.client,
            task_queue=self.task_queue,
            plugins=[DurableAgentsPlugin(MODULES)],
            agents=agents,
        )

    async def close(self) -> None:
        await self.stop_worker()
        # Runs a scenario left waiting would crowd the shared server's run listings.
        client = self.client.client
        running = f"TaskQueue = '{self.task_queue}' AND ExecutionStatus = 'Running'"
        async for execution in client.list_workflows(running):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(execution.id).terminate("the scenario ended")
        await self.client.close()
