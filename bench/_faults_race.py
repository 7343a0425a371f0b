"""One of the processes racing for the same runs: ``run_durable`` on every id at once.

    python -m bench._faults_race sqlite|postgres LOCATION LEDGER STEPS NAP GO RUN...

Once its store is open it prints ``ready``; when the file ``GO`` exists (every racer
is ready, so they start together) it calls
``run_durable`` for each run id concurrently, each after a random pause of up to
1 s; a run another racer holds is asked again until it has ended, and its
recorded result must be the right one.
Prints how many runs this process found held by another; exits 1 on a wrong result.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time

from durable import DurableRunLeaseHeldError
from durable_agents.adapters.local import DurableRunStore, PostgresStore, SqliteStore, run_durable

from ._faults_agents import Job, ledger_run

LEASE = 5.0


async def open_store(kind: str, location: str) -> DurableRunStore:
    if kind == "sqlite":
        return SqliteStore(location)
    if kind == "postgres":
        return await PostgresStore.connect(location)
    raise SystemExit(f"unknown store {kind!r}: pass sqlite or postgres")


async def drive(store: DurableRunStore, job: Job) -> int:
    """Run ``job`` to its end here or wait for whoever holds it; how many times it was held."""
    held = 0
    # Each racer comes to each run at its own moment, so the racers collide run by run
    # rather than the first one awake taking them all.
    await asyncio.sleep(random.uniform(0, 1.0))
    while True:
        try:
            result = await run_durable(ledger_run, job, store=store, run_id=job.run, lease=LEASE)
        except DurableRunLeaseHeldError:
            held += 1
            await asyncio.sleep(0.05)
            continue
        if result.result != sum(range(job.steps)):
            raise SystemExit(
                f"run {job.run} returned {result.result!r}, not the sum of its step indexes"
            )
        return held


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.005)


async def main(argv: list[str]) -> None:
    kind, location, ledger, steps, nap, go, *runs = argv
    store = await open_store(kind, location)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(_wait_for, go)
        jobs = [Job(run=run, ledger=ledger, steps=int(steps), nap=float(nap)) for run in runs]
        held = await asyncio.gather(*(drive(store, job) for job in jobs))
    finally:
        await store.close()
    print(f"runs found held by another racer: {sum(1 for h in held if h)}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 8:
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1:]))
