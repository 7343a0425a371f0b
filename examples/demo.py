"""The demo: a refund-review agent runs as a Temporal workflow on the embedded server.

    python -m examples.demo [--approve-after SECONDS] [--keep-running]

It starts the Temporal dev server and a worker, runs ``refund_review`` while
printing its live stream (steps, the model's streamed tokens, waits) until it
waits for a human approval, and shows how to approve from a second shell with
``durable event`` or the ``temporal`` CLI. If nobody approves within
``--approve-after`` seconds, it approves through the ``temporal`` CLI itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from pathlib import Path

from adapters.temporal import AgentClient, find_temporal_binary
from durable import LiveView, table, usage_line
from examples.refund import RefundRequest, refund_review
from worker import WorkerSettings, temporal_client, temporal_worker

BIN = Path(sys.executable).parent


def _shell_json(value: object) -> str:
    return "'" + json.dumps(value, separators=(",", ":")) + "'"


async def _show_live(client: AgentClient, run_id: str, waiting: asyncio.Event) -> None:
    """Print the run's live stream (steps, streamed model tokens, waits) until it ends."""
    view = LiveView()
    async for event in client.watch(run_id):
        view.show(event)
        if event.kind == "waiting":
            waiting.set()


async def _approve_with_temporal_cli(settings: WorkerSettings, run_id: str) -> None:
    event = {"key": "approval", "payload": {"approved": True, "reviewer": "demo"}}
    process = await asyncio.create_subprocess_exec(
        find_temporal_binary(),
        "workflow",
        "signal",
        "--address",
        settings.address,
        "--namespace",
        settings.namespace,
        "--workflow-id",
        run_id,
        "--name",
        "event",
        "--input",
        json.dumps(event),
        stdout=asyncio.subprocess.DEVNULL,
    )
    await process.wait()


async def demo(approve_after: float, keep_running: bool) -> None:
    settings = WorkerSettings.from_env()
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    print("Starting the Temporal dev server and a worker ...", flush=True)
    async with (
        temporal_client(settings) as client,
        temporal_worker(client, task_queue=settings.task_queue, agent_modules=("examples.refund",)),
    ):
        agents = AgentClient(client, task_queue=settings.task_queue)
        request = RefundRequest(order_id="A-1001", amount_cents=2_500, reason="arrived damaged")
        await agents.start(refund_review, request, run_id=run_id)
        print(f"\nRun {run_id} of agent refund_review started.")
        print(f"Temporal UI: {settings.ui_link(run_id)}\n", flush=True)
        waiting = asyncio.Event()
        live = asyncio.create_task(_show_live(agents, run_id, waiting))
        await waiting.wait()
        approval = {"approved": True, "reviewer": "you"}
        print(
            "\nThe run now waits for the event 'approval' (durable deadline: 4 hours).\n"
            f"Follow it from any shell with: {BIN / 'durable'} watch {run_id}\n"
            "Approve it from a second shell, with either command:\n\n"
            f"   {BIN / 'durable'} event {run_id} approval --payload {_shell_json(approval)}\n\n"
            f"   {BIN / 'temporal'} workflow signal --address {settings.address} "
            f"--workflow-id {run_id} --name event "
            f"--input {_shell_json({'key': 'approval', 'payload': approval})}\n",
            flush=True,
        )
        result = asyncio.create_task(agents.result(run_id))
        done, _ = await asyncio.wait({result}, timeout=approve_after)
        if not done:
            print(
                f"No approval within {approve_after:g}s: approving with the temporal CLI.",
                flush=True,
            )
            await _approve_with_temporal_cli(settings, run_id)
        outcome = await result
        await live
        print(f"\nRun {run_id} completed: {outcome.model_dump_json()}")
        usage = await agents.usage(run_id)
        print(
            f"{usage_line(usage)} (the offline scripted model, unless DURABLE_DEFAULT_MODEL "
            "names another)\n"
        )
        steps = [(s.step_index, s.intent, s.status) for s in await agents.steps(run_id)]
        print(table(("step", "intent", "status"), steps, right=(0,), indent="   "))
        print(f"\nSee it in the Temporal UI: {settings.ui_link(run_id)}")
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
        help="seconds to wait for your approval before the demo approves itself (default 60)",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="keep the server and UI up afterwards"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(args.approve_after, args.keep_running))


if __name__ == "__main__":
    main()
