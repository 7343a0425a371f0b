"""The local demo: an agent run survives its worker being killed.

    python -m examples.local_demo

1. worker A starts a ``refund_review`` run on the SQLite store and stops at the
   human-approval wait;
2. worker A is killed with SIGKILL;
3. a reviewer's approval arrives, as another service would send it;
4. ``worker.py`` finds the abandoned run once its lease expires and finishes it,
   replaying the completed steps instead of running them again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from adapters.local import SqliteStore, run_durable
from durable import steps_table
from examples.refund import LEDGER_ENV, Approval, RefundRequest, refund_review

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DURABLE_DEMO_DATA", ROOT / "data"))
STORE = DATA / "demo.db"
LEASE_SECONDS = 2.0


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_STORE": str(STORE),
        "DURABLE_AGENT_MODULES": "examples.refund",
        "DURABLE_LEASE_SECONDS": str(LEASE_SECONDS),
        LEDGER_ENV: str(DATA / "refunds.jsonl"),
        "PYTHONPATH": str(ROOT),
    }


async def start_run(run_id: str) -> None:
    """Worker A: start the run and keep it going until killed."""
    store = SqliteStore(STORE)
    request = RefundRequest(order_id="A-1001", amount_cents=2_500, reason="arrived damaged")
    await run_durable(refund_review, request, store=store, run_id=run_id, lease=LEASE_SECONDS)


async def wait_for(store: SqliteStore, run_id: str, intent: str, seen: set[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for record in await store.load_steps(run_id):
            if record.step_index not in seen:
                seen.add(record.step_index)
                print(f"   step {record.step_index}: {record.intent} ({record.kind})")
            if record.intent == intent:
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"the run never reached {intent!r}; see the worker output above")


async def demo() -> None:
    store = SqliteStore(STORE)
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    print(f"Local demo: run {run_id} of agent 'refund_review' on the SQLite store {STORE}\n")

    print("1. Worker A starts the run.")
    worker_a = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.local_demo", "start", run_id, cwd=ROOT, env=_env()
    )
    seen: set[int] = set()
    await wait_for(store, run_id, "await_event:approval", seen)
    print("   ... the run now waits for the event 'approval' (durable deadline: 4 hours)\n")

    print("2. Worker A is killed with SIGKILL.")
    worker_a.send_signal(signal.SIGKILL)
    await worker_a.wait()
    print(f"   worker A exited with {worker_a.returncode}; the run stays recorded as running\n")

    print("3. A reviewer approves from another service:")
    approval = Approval(approved=True, reviewer="dana", note="photos confirm the damage")
    print(f"   await store.emit_event({run_id!r}, 'approval', {approval.model_dump()})")
    sent = await store.emit_event(run_id, "approval", approval.model_dump())
    print(f"   accepted={sent.accepted}\n")

    print(
        f"4. worker.py --local starts; once worker A's {LEASE_SECONDS:g}s lease expires, "
        "it resumes the run."
    )
    worker_b = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", "--local", cwd=ROOT, env=_env()
    )
    try:
        deadline = time.monotonic() + 60
        while (run := await store.load_run(run_id)) is None or run.status == "running":
            if time.monotonic() > deadline:
                raise SystemExit("worker.py did not finish the run within a minute")
            await asyncio.sleep(0.1)
    finally:
        worker_b.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker_b.wait(), 30)

    print(f"\nRun {run_id} is {run.status}. Result:")
    print(f"   {run.result}\n")
    print(steps_table(await store.load_steps(run_id), indent="   "))
    print(
        "\nThe lookup, the decision and the uuid ran once, before the crash; the approval wait"
        "\nwas begun twice (attempts=2) and the payout ran once, after the resume."
    )
    await store.close()


def main() -> None:
    if sys.argv[1:2] == ["start"]:
        asyncio.run(start_run(sys.argv[2]))
    else:
        DATA.mkdir(parents=True, exist_ok=True)
        asyncio.run(demo())


if __name__ == "__main__":
    main()
