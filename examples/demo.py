"""The demo: refund-review agents run as Temporal workflows and ask a person to approve.

    python -m durable_agents.examples.demo [--approve-after SECONDS] [--keep-running]

It starts the Temporal dev server and a worker, and three runs of
``refund_review``. It prints the first run's live stream (steps, the model's
streamed tokens, the approval it asks for) until all three wait for a reviewer,
lists their pending approvals, and shows the commands that decide them from a
second shell: one approved, one approved with an edited amount, one rejected.
Whatever is still undecided after ``--approve-after`` seconds the demo decides
itself: the approval with the ``temporal`` CLI's signal, the edit and the
rejection from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.worker import Worker

from durable import LiveView, PendingApproval, table, usage_line
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.settings import Settings
from durable_agents.adapters.temporal import AgentClient, find_temporal_binary
from durable_agents.examples.refund import RefundOutcome, RefundRequest, refund_review
from durable_agents.worker import temporal_client

BIN = Path(sys.executable).parent

REQUESTS = {
    "approve": RefundRequest(order_id="A-1001", amount_cents=2_500, reason="arrived damaged"),
    "edit": RefundRequest(order_id="A-1001", amount_cents=4_000, reason="one of two items broken"),
    "reject": RefundRequest(order_id="A-1002", amount_cents=12_000, reason="changed my mind"),
}
"""One run for each decision the reviewer takes."""

EDITED = {"amount_cents": 2_000}
REASONS = {
    "approve": "photos confirm the damage",
    "edit": "half: one of the two items",
    "reject": "outside the 30-day refund window",
}


def _decide_commands(runs: dict[str, str]) -> list[list[str]]:
    """The ``durable`` commands a reviewer decides the three runs with."""
    durable = str(BIN / "durable")
    edit = ["--edit", json.dumps(EDITED)]
    return [
        [durable, "approve", runs["approve"], "--reason", REASONS["approve"]],
        [durable, "approve", runs["edit"], *edit, "--reason", REASONS["edit"]],
        [durable, "reject", runs["reject"], "--reason", REASONS["reject"]],
    ]


async def _show_live(client: AgentClient, run_id: str, asked: asyncio.Event) -> None:
    """Print the run's live stream (steps, streamed model tokens, waits) until it ends."""
    view = LiveView()
    async for event in client.watch(run_id):
        view.show(event)
        if event.kind == "approval_requested":
            asked.set()


async def _all_pending(agents: AgentClient, runs: dict[str, str]) -> list[PendingApproval]:
    """The three runs' approvals, once the server's run listing shows them all."""
    deadline = time.monotonic() + 60
    while True:
        pending = [p for p in await agents.approvals() if p.run_id in runs.values()]
        if len(pending) == len(runs) or time.monotonic() > deadline:
            return sorted(pending, key=lambda p: list(runs.values()).index(p.run_id))
        await asyncio.sleep(0.2)


async def _approve_with_temporal_cli(settings: Settings, pending: PendingApproval) -> None:
    """Signal the approval's decision event, as any shell or service can."""
    # The decision of approval `<run>:approval-<position>` is the event `approval:<position>`.
    key = "approval:" + pending.approval_id.rpartition("-")[2]
    payload = {
        "decision": "approve",
        "decided_by": "demo",
        "reason": REASONS["approve"],
        "decided_at": datetime.now(UTC).isoformat(),
    }
    command = [
        find_temporal_binary(), "workflow", "signal",
        "--address", settings.temporal.target, "--namespace", settings.temporal.namespace,
        "--workflow-id", pending.run_id, "--name", "event",
        "--input", json.dumps({"key": key, "payload": payload}),
    ]  # fmt: skip
    print(f"   {shlex.join(['temporal', *command[1:]])}", flush=True)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL)
    await process.wait()


async def _decide_the_rest(settings: Settings, agents: AgentClient, runs: dict[str, str]) -> None:
    """Decide every approval still pending, as the reviewer was asked to."""
    listed = {p.run_id: p for p in await agents.approvals()}
    for decision, run_id in runs.items():
        pending = listed.get(run_id)
        if pending is None:
            continue  # decided already
        if decision == "approve":
            print(f"Approving {pending.run_id} with the temporal CLI:", flush=True)
            await _approve_with_temporal_cli(settings, pending)
        else:
            outcome = await agents.decide(
                pending.approval_id,
                decision,
                decided_by="demo",
                input=EDITED if decision == "edit" else None,
                reason=REASONS[decision],
            )
            print(
                f"Deciding {pending.run_id} from Python: AgentClient.decide({decision!r}): "
                f"{outcome.status}",
                flush=True,
            )


async def demo(approve_after: float, keep_running: bool) -> None:
    settings = Settings.from_env()
    tag = uuid.uuid4().hex[:6]
    runs = {decision: f"refund-{tag}-{decision}" for decision in REQUESTS}
    print("Starting the Temporal dev server and a worker ...", flush=True)
    async with (
        temporal_client(settings) as client,
        Worker(
            client,
            task_queue=settings.worker.task_queue,
            plugins=[DurableAgentsPlugin(("durable_agents.examples.refund",))],
        ),
    ):
        agents = AgentClient(client, task_queue=settings.worker.task_queue)
        for decision, run_id in runs.items():
            await agents.start(refund_review, REQUESTS[decision], run_id=run_id)
        print(f"\nStarted three runs of agent refund_review: {', '.join(runs.values())}")
        print(f"Temporal UI: {settings.temporal.ui_link(runs['approve'])}\n", flush=True)
        asked = asyncio.Event()
        live = asyncio.create_task(_show_live(agents, runs["approve"], asked))
        await asked.wait()
        pending = await _all_pending(agents, runs)
        print(f"\nThe runs now wait for a reviewer (`{BIN / 'durable'} approvals` lists them):")
        for p in pending:
            print(f"   {p.approval_id}: {p.action} {json.dumps(p.input)}")
        print(
            "\nDecide them from a second shell: approve the first, approve the second with a "
            "smaller amount,\nreject the third (--by defaults to your user name):\n"
        )
        for command in _decide_commands(runs):
            print(f"   {shlex.join(command)}")
        print(f"\nFollow a run from any shell with: {BIN / 'durable'} watch {runs['approve']}\n")
        sys.stdout.flush()

        results = {run_id: asyncio.create_task(agents.result(run_id)) for run_id in runs.values()}
        _, undone = await asyncio.wait(results.values(), timeout=approve_after)
        if undone:
            print(f"Not all decided within {approve_after:g}s: the demo decides the rest.")
            await _decide_the_rest(settings, agents, runs)
        outcomes: dict[str, RefundOutcome] = {r: await task for r, task in results.items()}
        await live

        print("\nThe three runs completed:")
        rows = [
            (run_id, decision, o.status, o.amount_cents, o.reviewer, o.review)
            for (decision, run_id), o in zip(runs.items(), outcomes.values(), strict=True)
        ]
        header = ("run", "decision", "refund", "paid (cents)", "reviewer", "reason")
        print(table(header, rows, right=(3,), whole=(0,), indent="   "))
        usage = await agents.usage(runs["approve"])
        print(
            f"\n{runs['approve']}: {usage_line(usage)} (the offline scripted model, unless "
            "DURABLE_DEFAULT_MODEL names another)"
        )
        print(
            f"Who decided what, when and why: {BIN / 'durable'} status {runs['edit']}\n"
            f"See them in the Temporal UI: {settings.temporal.ui_link(runs['edit'])}"
        )
        if keep_running:
            print("The server and worker keep running; press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()
        else:
            print("Runs are kept in the data folder; `durable worker` serves the UI again.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--approve-after",
        type=float,
        default=60.0,
        help="seconds to wait for your decisions before the demo decides itself (default 60)",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="keep the server and UI up afterwards"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(args.approve_after, args.keep_running))


if __name__ == "__main__":
    main()
