"""Commands for approvals: list them, approve (as asked or edited) and reject."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from temporalio.service import RPCError

from durable import DecisionOutcome, DurableError
from durable_agents.adapters.settings import Settings

from ._clients import open_target
from ._common import EXIT_OK, UsageError, decider, json_argument

__all__ = ["cmd_approvals", "cmd_decide", "decision_words"]


_DECIDED = {"approve": "approved", "edit": "approved with an edit", "reject": "rejected"}


def decision_words(decision: dict[str, Any]) -> str:
    """Who decided what, when and why, from a decision's recorded payload."""
    words = f"{_DECIDED.get(decision.get('decision', ''), decision.get('decision'))}"
    words += f" by {decision.get('decided_by')}"
    if decision.get("decided_at"):
        words += f" at {decision['decided_at']}"
    if decision.get("decision") == "edit":
        words += f", input {json.dumps(decision.get('input'), ensure_ascii=False)}"
    if decision.get("reason"):
        words += f"; reason: {decision['reason']}"
    return words


async def cmd_approvals(args: argparse.Namespace, settings: Settings) -> int:
    async with open_target(args, settings) as target:
        pending = await target.client.approvals(agent=args.agent)
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in pending], indent=2))
        return EXIT_OK
    if not pending:
        print("no approvals pending" + (f" for agent {args.agent}" if args.agent else ""))
        return EXIT_OK
    for p in pending:
        print(f"{p.approval_id}  run {p.run_id}, agent {p.agent}")
        print(f"  action: {p.action}" + (f" (tool {p.tool})" if p.tool else ""))
        print(f"  summary: {p.summary}")
        print(f"  proposed input: {json.dumps(p.input, ensure_ascii=False)}")
        if p.deadline is not None:
            print(f"  deadline: {p.deadline.isoformat()}")
    flag = target.flag
    print(
        f"\ndecide with `durable approve ID [--edit JSON]{flag}` or "
        f"`durable reject ID --reason TEXT{flag}` (a run's id stands for its one approval)"
    )
    return EXIT_OK


async def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    """``durable approve`` (with ``--edit``, an edit) and ``durable reject``."""
    editing = getattr(args, "edit", None) is not None
    edited = json_argument(args.edit, "--edit") if editing else None
    if editing and edited is None:
        raise UsageError("--edit null is no edit; give the edited input as JSON, or approve")
    decision = "reject" if args.command == "reject" else "edit" if editing else "approve"
    by = decider(args.by)
    reason = args.reason or None
    async with open_target(args, settings) as target:
        outcome = await target.client.decide(
            args.target, decision, decided_by=by, input=edited, reason=reason
        )
        print(_outcome_words(outcome), flush=True)
        if outcome.status != "decided":
            return EXIT_OK
        # Advice only: the decision stands whatever this read finds. The run may have
        # ended with it, and a server that stopped with its last run may be gone.
        with contextlib.suppress(DurableError, RPCError, OSError):
            if (await target.client.describe(outcome.run_id)).attended is False:
                print(
                    f"no worker runs {outcome.run_id} now: the decision is kept, and the run "
                    f"takes it when `durable worker{target.flag}` resumes it"
                )
    return EXIT_OK


def _outcome_words(outcome: DecisionOutcome) -> str:
    said = f"approval {outcome.approval_id}"
    if outcome.status == "already_decided":
        return (
            f"{said} was already decided: {decision_words(outcome.decision)}; the first "
            "decision stands, so this one changed nothing"
        )
    if outcome.status == "delivered":
        return (
            f"{said}: {decision_words(outcome.decision)}; delivered, not yet acknowledged: "
            f"no worker answered in time, so it went to run {outcome.run_id} by signal; a "
            "worker applies it when it runs the run (start `durable worker`), first decision wins"
        )
    return f"{said}: {decision_words(outcome.decision)}"
