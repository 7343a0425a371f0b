"""``check_workflows``: would the agents installed now replay the runs in flight on Temporal?

The runs are the running executions of agent workflows on the task queue. Each
one's history is fetched and replayed by Temporal's ``Replayer`` with the
agents imported now (through the plugins given, which must host them), so no
activity runs. A replay failure is a run a worker would fail. To say where,
the check compares the steps the history holds (activities and child runs, by
position) with those the code scheduled during the replay; a divergence among
carried positions (after continuing as new) names both sides in its message.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import (
    Interceptor,
    Plugin,
    Replayer,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from durable import DurableRegistrationError, agent_definition
from durable._compat import CompatReport, Divergence

from ._convert import step_of_activity
from ._messages import STEP_MEMO
from ._search import quoted
from ._status import _carried_steps, _steps_from_history

__all__ = ["check_workflows"]

_CARRIED = re.compile(r"recorded step (\d+) as (.+?), but the code now reaches (.+?) there")
"""The divergence a replay of carried positions raises (``durable._failures``)."""


async def check_workflows(
    client: Client,
    *,
    task_queue: str,
    plugins: Sequence[Plugin],
    agents: Collection[str] | None = None,
) -> CompatReport:
    """Replay every running agent workflow on ``task_queue`` (of ``agents``, when given)."""
    query = f"ExecutionStatus = 'Running' AND TaskQueue = '{quoted(task_queue)}'"
    if agents:
        names = ", ".join(f"'{quoted(name)}'" for name in sorted(agents))
        query += f" AND WorkflowType IN ({names})"
    histories: dict[str, WorkflowHistory] = {}  # by the run id the replayer reports
    agent_of: dict[str, str] = {}
    skipped: dict[str, str] = {}
    async for execution in client.list_workflows(query):
        try:
            agent_definition(execution.workflow_type)
        except DurableRegistrationError:
            skipped[execution.id] = (
                f"agent {execution.workflow_type!r} is not installed here; name its module "
                "in DURABLE_AGENT_MODULES to check its runs"
            )
            continue
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        histories[history.run_id] = history
        agent_of[history.run_id] = execution.workflow_type

    if not histories:
        return CompatReport(skipped=skipped)
    taken = _TakenSteps()
    replayer = Replayer(workflows=[], plugins=plugins, interceptors=[taken])

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories.values():
            yield history

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    diverging = []
    for run, error in results.replay_failures.items():
        history = histories[run]
        scheduled = taken.steps.get(history.workflow_id, {})
        diverging.append(await _divergence(client, history, agent_of[run], error, scheduled))
    return CompatReport(
        checked=[history.workflow_id for history in histories.values()],
        diverging=sorted(diverging, key=lambda found: found.run_id),
        skipped=skipped,
    )


async def _divergence(
    client: Client,
    history: WorkflowHistory,
    agent: str,
    error: Exception,
    now: Mapping[int, str],
) -> Divergence:
    message = str(error)
    found = Divergence(run_id=history.workflow_id, agent=agent, error=message)
    carried = _CARRIED.search(message)
    if carried is not None:
        position, recorded, current = carried.groups()
        return found.model_copy(
            update={"position": int(position), "recorded": recorded, "now": current}
        )
    events = history.events
    steps = _steps_from_history(
        history.workflow_id, events, carried=await _carried_steps(client, events)
    )
    recorded = {step.step_index: f"step {step.intent!r}" for step in steps}
    for position in sorted(recorded.keys() | now.keys()):
        if recorded.get(position) != now.get(position):
            return found.model_copy(
                update={
                    "position": position,
                    "recorded": recorded.get(position),
                    "now": now.get(position),
                }
            )
    return found


class _TakenSteps(Interceptor):
    """Records, per execution, the steps the code scheduled while it replayed."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[int, str]] = {}

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        steps = self.steps

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, steps))

        return Inbound


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, steps: dict[str, dict[int, str]]) -> None:
        super().__init__(next)
        self._steps = steps

    def _take(self, index: int, intent: str) -> None:
        self._steps.setdefault(workflow.info().workflow_id, {})[index] = f"step {intent!r}"

    def _take_activity(self, activity_id: str | None) -> None:
        position = None if activity_id is None else step_of_activity(activity_id)
        if position is not None:
            self._take(*position)

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        self._take_activity(input.activity_id)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        self._take_activity(input.activity_id)
        return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        step = (input.memo or {}).get(STEP_MEMO)
        if isinstance(step, dict) and {"step", "intent"} <= step.keys():
            self._take(int(step["step"]), str(step["intent"]))
        return await super().start_child_workflow(input)
