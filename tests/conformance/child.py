"""A worker in its own process, for scenarios that kill or race real processes.

python -m tests.conformance.child run KIND LOCATION RUN_ID MARKER
    run the ``marked`` agent until it finishes (or is killed)
python -m tests.conformance.child converse KIND LOCATION RUN_ID CONVERSATION
    run the ``talk`` agent on the named conversation until it finishes (or is killed)
python -m tests.conformance.child acquire KIND LOCATION RUN_ID WORKER
    try once to take the run's lease; print "acquired" or the error code
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from durable import DurableError, DurableRunManifest, TaskSpec
from durable_agents.adapters.local import run_durable
from tests.conformance import agents
from tests.conformance.conftest import open_store


async def main(mode: str, kind: str, location: str, run_id: str, extra: str) -> int:
    store = await open_store(kind, location)
    try:
        if mode == "run":
            await run_durable(
                agents.marked,
                agents.Job(marker=extra),
                store=store,
                run_id=run_id,
                lease=0.6,
                poll_interval=0.01,
            )
            return 0
        if mode == "converse":
            await run_durable(
                agents.talk, agents.Job(key=extra), store=store, run_id=run_id, lease=0.6
            )
            return 0
        manifest = DurableRunManifest(
            project_id="race", task=TaskSpec(id="race", intent="race", domain="test"), input={}
        )
        try:
            resumed = await store.start_or_resume(
                run_id=run_id,
                agent="race",
                manifest=manifest,
                worker_id=extra,
                lease_for=timedelta(seconds=30),
            )
        except DurableError as exc:
            print(exc.code.value, flush=True)
            return 0
        assert resumed.lease is not None
        print(f"acquired {resumed.lease.generation}", flush=True)
        return 0
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:6])))
