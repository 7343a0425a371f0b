"""Worker processes for the scenario of a step that blocks the event loop.

python -m tests.adapters.lease_child run KIND LOCATION RUN_ID MARKER
    run ``blocking``, whose one step blocks the event loop for longer than the
    lease; print its result, or the error code if the run was taken over
python -m tests.adapters.lease_child recover KIND LOCATION RUN_ID MARKER
    print "ready", then resume the run with a LocalWorker whenever its lease
    lapses, until it has ended; print "resumed" or "not resumed"
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

from durable import DurableContext, DurableError, agent, step
from durable_agents.adapters.local import LocalWorker, run_durable
from tests.conformance.agents import Job
from tests.conformance.conftest import open_store

LEASE = 1.0
BLOCKED_FOR = 2.5


@step
async def block(path: str, seconds: float) -> str:
    """Blocks the event loop on purpose, as a synchronous client or CPU work would."""
    _mark(path, "start")
    time.sleep(seconds)  # noqa: ASYNC251
    _mark(path, "end")
    return "done"


@agent(name="lease_child.blocking")
async def blocking(ctx: DurableContext, job: Job) -> str:
    return await ctx.step("block the event loop", block, job.marker, job.seconds)


def _mark(path: str, name: str) -> None:
    with open(path, "a") as handle:
        handle.write(name + "\n")


async def main(mode: str, kind: str, location: str, run_id: str, marker: str) -> int:
    store = await open_store(kind, location)
    try:
        if mode == "run":
            try:
                result = await run_durable(
                    blocking,
                    Job(marker=marker, seconds=BLOCKED_FOR),
                    store=store,
                    run_id=run_id,
                    worker_id="blocked",
                    lease=LEASE,
                )
            except DurableError as exc:
                print(exc.code.value, flush=True)
                return 1
            print(result.result, flush=True)
            return 0
        worker = LocalWorker(
            store,
            worker_id="recoverer",
            lease=timedelta(seconds=LEASE),
            scan_interval=timedelta(milliseconds=50),
        )
        scanning = asyncio.create_task(worker.run())
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = await store.load_run(run_id)
            if run is not None and run.status != "running" and not worker._tasks:
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await scanning
        print("resumed" if run_id in worker.finished else "not resumed", flush=True)
        return 0
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:6])))
