"""Commands that show runs: status and list."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from durable import (
    ACTIVE_STATUSES,
    StepRecord,
    run_tree,
    steps_table,
    table,
    usage_line,
)
from durable_agents.adapters.settings import Settings

from ._approvals import decision_words
from ._clients import open_target
from ._common import EXIT_OK

__all__ = ["cmd_list", "cmd_status"]


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async with open_target(args, settings) as target:
        client = target.client
        view = await client.describe(args.run)
        steps = await client.steps(args.run)
        usage = await client.usage(args.run)
    ended = view.status not in ACTIVE_STATUSES
    shown = ""
    if not ended:
        if view.waiting_for is None:
            shown = ", waiting for unknown (no worker answered)"
        elif waits := [*view.waiting_for, *(s.intent for s in steps if _child_open(s))]:
            shown = f", waiting for {', '.join(waits)}"
    print(f"run {view.run_id}: {view.status} (agent {view.agent}){shown}")
    if view.error is not None:
        print(f"{view.status} with {view.error}")
    if view.note is not None:
        print(view.note)
    if view.parent_run_id is not None:
        print(f"child run of {view.parent_run_id}")
    print(usage_line(usage))
    print(steps_table(steps, ended=ended))
    for record in steps:
        if record.error is None:
            continue
        last = "last failure" if record.status == "running" else "failed with"
        line = f"step {record.step_index}: attempt {record.attempts}, {last} {record.error.type}"
        print(f"{line}: {record.error.message}")
    approvals = _approval_lines(steps, ended=ended, flag=target.flag)
    if approvals:
        print("approvals:")
        print("\n".join(approvals))
    if view.children:
        print("child runs:")
        family = [(child.run_id, child.agent, child.status) for child in view.children]
        print(table(("run", "agent", "status"), family, whole=(0,), indent="  "))
    return EXIT_OK


def _approval_lines(steps: Sequence[StepRecord], *, ended: bool, flag: str) -> list[str]:
    """Each approval of the run: its request, then who decided what, when and why.

    The request is the result of the approval's step; the decision is the
    payload of the wait at the next position.
    """
    at = {step.step_index: step for step in steps}
    lines = []
    for step in steps:
        if step.kind != "approval" or not isinstance(step.result, dict):
            continue
        request = step.result
        identity = request.get("approval_id")
        tool = f" (tool {request['tool']})" if request.get("tool") else ""
        lines.append(f"  {identity} at step {step.step_index}: {request.get('action')}{tool}")
        lines.append(f"    summary: {request.get('summary')}")
        lines.append(f"    proposed input: {json.dumps(request.get('input'), ensure_ascii=False)}")
        wait = at.get(step.step_index + 1)
        if wait is not None and wait.status == "completed" and isinstance(wait.result, dict):
            verdict = decision_words(wait.result)
        elif wait is not None and wait.status == "failed":
            error = f" ({wait.error.type})" if wait.error is not None else ""
            verdict = f"none by its deadline{error}; the run took its on_timeout course"
        elif ended:
            verdict = "none; the run ended while it waited"
        else:
            until = f" until {wait.deadline.isoformat()}" if wait and wait.deadline else ""
            verdict = (
                f"pending{until}; decide with `durable approve {identity}{flag}` "
                f"or `durable reject {identity} --reason TEXT{flag}`"
            )
        lines.append(f"    decision: {verdict}")
    return lines


def _child_open(step: StepRecord) -> bool:
    """A child run the run still awaits: a wait, as an event is."""
    return step.kind in ("agent", "conversation") and step.status == "running"


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_target(args, settings) as target:
        views = await target.client.runs(status=args.status, limit=args.limit)
    if not views and args.status is not None:
        print(f"no {args.status} runs")
        return EXIT_OK
    # Oldest first, each child under its parent.
    print(run_tree([(v.run_id, v.parent_run_id, v.agent, v.status) for v in reversed(views)]))
    return EXIT_OK
