"""Commands that show runs: status and list."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import worker
from adapters.local import SqliteStore
from durable import (
    ACTIVE_STATUSES,
    DurableRunNotFoundError,
    StepRecord,
    run_tree,
    steps_table,
    table,
    usage_line,
    usage_totals,
)

from ._approvals import decision_words
from ._clients import temporal_client
from ._common import EXIT_OK, UsageError

__all__ = ["cmd_list", "cmd_status"]


async def cmd_status(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            run = await store.load_run(args.run)
            if run is None:
                raise UsageError(f"no run {args.run!r} in {settings.local_store}")
            steps = await store.load_steps(args.run)
            children = await store.list_children(args.run)
        finally:
            await store.close()
        waits = [s.intent.split(":", 1)[1] for s in steps if _waiting(s)]
        waits += [s.intent for s in steps if s.kind in ("agent", "conversation") and _open(s)]
        shown = f", waiting for {', '.join(waits)}" if run.active and waits else ""
        print(f"run {run.run_id}: {run.status} (agent {run.agent}){shown}")
        if run.status in ("failed", "cancelled") and run.error is not None:
            print(f"{run.status} with {run.error.type}: {run.error.message}")
        ended = not run.active
        family: list[tuple[str, str, str]] = [(c.run_id, c.agent, c.status) for c in children]
        parent = run.parent_run_id
        usage = usage_totals(steps)
        next_attempts: dict[int, str] = {}
    else:
        client = await temporal_client(settings)
        try:
            snapshot = await client.snapshot(args.run)
        except DurableRunNotFoundError as exc:
            raise UsageError(str(exc)) from None
        usage = await client.usage(args.run)
        steps, next_attempts = snapshot.steps, snapshot.next_attempts
        waiting = (
            "unknown (no worker answered)"
            if snapshot.waiting_for is None
            else ", ".join(snapshot.waiting_for) or "nothing"
        )
        print(f"run {args.run}: {snapshot.state} (agent {snapshot.agent}), waiting for {waiting}")
        if snapshot.failure is not None:
            print(f"{'cancelled' if snapshot.state == 'cancelled' else 'failed'} with "
                  f"{snapshot.failure}")  # fmt: skip
        ended = snapshot.state not in ACTIVE_STATUSES
        if snapshot.unanswered is not None:
            print(f"worker: {snapshot.unanswered}; the steps below come from the run's history")
        parent, family = await client.family(args.run)
    if parent is not None:
        print(f"child run of {parent}")
    print(usage_line(usage))
    print(steps_table(steps, ended=ended))
    for record in steps:
        if record.error is None:
            continue
        last = "last failure" if record.status == "running" else "failed with"
        line = f"step {record.step_index}: attempt {record.attempts}, {last} {record.error.type}"
        print(f"{line}: {record.error.message}")
        if record.step_index in next_attempts:
            print(f"  next attempt at {next_attempts[record.step_index]}")
    approvals = _approval_lines(steps, ended=ended, local=args.local)
    if approvals:
        print("approvals:")
        print("\n".join(approvals))
    if family:
        print("child runs:")
        print(table(("run", "agent", "status"), family, whole=(0,), indent="  "))
    return 0


def _approval_lines(steps: Sequence[StepRecord], *, ended: bool, local: bool) -> list[str]:
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
            flag = " --local" if local else ""
            verdict = (
                f"pending{until}; decide with `durable approve {identity}{flag}` "
                f"or `durable reject {identity} --reason TEXT{flag}`"
            )
        lines.append(f"    decision: {verdict}")
    return lines


def _open(step: StepRecord) -> bool:
    return step.status == "running"


def _waiting(step: StepRecord) -> bool:
    return step.kind == "event" and _open(step) and step.intent.startswith("await_event:")


async def cmd_list(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    rows: list[tuple[str, str | None, str, str]] = []
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            listed = await store.list_runs(status=args.status, limit=args.limit, newest=True)
        finally:
            await store.close()
        rows = [(run.run_id, run.parent_run_id, run.agent, run.status) for run in listed]
    else:
        client = await temporal_client(settings)
        rows = await client.list_runs(status=args.status, limit=args.limit)
        rows.reverse()  # oldest first, as the local store lists them
    if not rows and args.status is not None:
        print(f"no {args.status} runs")
        return EXIT_OK
    print(run_tree(rows))
    return EXIT_OK
