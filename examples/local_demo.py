"""The local demo: refund runs wait for a reviewer, survive their worker, and finish.

    python -m durable_agents.examples.local_demo

1. worker A starts three ``refund_review`` runs on the SQLite store; each stops
   at its approval, asking a reviewer to approve its payout;
2. worker A is killed with SIGKILL;
3. while no worker runs, a reviewer lists the pending approvals and decides
   them from the command line: one approved, one edited, one rejected;
4. a worker (``durable worker --local``) finds the abandoned runs once their
   lease expires and finishes them with the decisions, replaying the completed
   steps instead of running them again.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
import uuid
from pathlib import Path

from durable import RunRecord, steps_table, table
from durable_agents.adapters.local import SqliteStore, pending_approvals, run_durable
from durable_agents.examples.refund import LEDGER_ENV, RefundRequest, refund_review

DATA = Path(os.environ.get("DURABLE_DEMO_DATA", "data")).resolve()
"""Where the demo keeps its store and ledger: ``data/`` under the working directory."""
STORE = DATA / "demo.db"
LEASE_SECONDS = 2.0

REQUESTS = {
    "approve": RefundRequest(order_id="A-1001", amount_cents=2_500, reason="arrived damaged"),
    "edit": RefundRequest(order_id="A-1001", amount_cents=4_000, reason="one of two items broken"),
    "reject": RefundRequest(order_id="A-1002", amount_cents=12_000, reason="changed my mind"),
}
"""One run for each decision the reviewer takes."""


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_STORE": str(STORE),
        "DURABLE_AGENT_MODULES": "durable_agents.examples.refund",
        "DURABLE_LEASE_SECONDS": str(LEASE_SECONDS),
        LEDGER_ENV: str(DATA / "refunds.jsonl"),
    }


def _decisions(runs: dict[str, str]) -> list[list[str]]:
    """The reviewer's commands, one per run."""
    return [
        ["approve", runs["approve"], "--reason", "photos confirm the damage"],
        ["approve", runs["edit"], "--edit", '{"amount_cents": 2000}', "--reason", "half"],
        ["reject", runs["reject"], "--reason", "outside the 30-day refund window"],
    ]


async def start_runs(run_ids: list[str]) -> None:
    """Worker A: start the runs and keep them going until killed."""
    store = SqliteStore(STORE)
    await asyncio.gather(
        *(
            run_durable(refund_review, request, store=store, run_id=run_id, lease=LEASE_SECONDS)
            for run_id, request in zip(run_ids, REQUESTS.values(), strict=True)
        )
    )


async def durable(*args: str) -> None:
    """Run the ``durable`` command as a reviewer would, and show what it printed."""
    command = [*args, *(("--local",) if args[0] == "approvals" else ("--by", "dana", "--local"))]
    print(f"   $ {shlex.join(['durable', *command])}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "durable_agents.cli", *command, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    for line in output.decode().splitlines():
        print(f"   {line}")
    if process.returncode != 0:
        raise SystemExit(f"`durable {args[0]}` failed with exit status {process.returncode}")


async def demo() -> None:
    store = SqliteStore(STORE)
    tag = uuid.uuid4().hex[:6]
    runs = {decision: f"refund-{tag}-{decision}" for decision in REQUESTS}
    print(f"Local demo: three runs of agent 'refund_review' on the SQLite store {STORE}\n")

    print("1. Worker A starts the runs:", ", ".join(runs.values()))
    worker_a = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable_agents.examples.local_demo",
        "start",
        *runs.values(),
        env=_env(),
    )
    deadline = time.monotonic() + 60
    while len(await pending_approvals(store)) < len(runs):
        if time.monotonic() > deadline:
            raise SystemExit("the runs never asked for their approvals; see the output above")
        await asyncio.sleep(0.05)
    print("   ... each run now waits for its approval (durable deadline: 4 hours)\n")

    print("2. Worker A is killed with SIGKILL.")
    worker_a.send_signal(signal.SIGKILL)
    await worker_a.wait()
    print(f"   worker A exited with {worker_a.returncode}; the runs stay recorded, waiting\n")

    print("3. While no worker runs, a reviewer lists the approvals and decides each one:")
    await durable("approvals")
    for command in _decisions(runs):
        print()
        await durable(*command)

    print(
        f"\n4. A worker (durable worker --local) starts; once worker A's "
        f"{LEASE_SECONDS:g}s lease expires, it resumes the runs."
    )
    worker_b = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "durable_agents.worker", "--local", env=_env()
    )
    ended: dict[str, RunRecord] = {}
    try:
        deadline = time.monotonic() + 60
        while len(ended) < len(runs):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not finish the runs within a minute")
            for run_id in runs.values():
                run = await store.load_run(run_id)
                if run is not None and not run.active:
                    ended[run_id] = run
            await asyncio.sleep(0.1)
    finally:
        worker_b.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker_b.wait(), 30)

    print("\nThe runs ended:")
    rows = []
    for decision, run_id in runs.items():
        result = ended[run_id].result or {}
        rows.append((run_id, decision, result.get("status"), result.get("amount_cents")))
    print(table(("run", "decision", "refund", "paid (cents)"), rows, right=(3,), indent="   "))
    print(f"\nThe steps of {runs['edit']}:")
    print(steps_table(await store.load_steps(runs["edit"]), indent="   "))
    print(
        "\nThe lookup, the decision, the note and the uuid ran once, before the crash; the"
        "\napproval wait was begun twice (attempts=2) and took the edited amount; the payout"
        "\nran once, after the resume. `durable status RUN --local` shows who decided, when"
        "\nand why."
    )
    await store.close()


def main() -> None:
    if sys.argv[1:2] == ["start"]:
        asyncio.run(start_runs(sys.argv[2:]))
    else:
        DATA.mkdir(parents=True, exist_ok=True)
        asyncio.run(demo())


if __name__ == "__main__":
    main()
