"""One of several processes running local runs concurrently on one database.

    python -m bench._store_processes sqlite|postgres LOCATION START RUNS STEPS PREFIX

Waits until the wall-clock time ``START`` (so the processes begin together),
runs ``RUNS`` runs of ``STEPS`` steps at once on the store, and prints the time
it finished as JSON. ``bench.store_throughput`` starts several and adds them up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.store_throughput import Plan, sequential
from durable_agents.adapters.local import DurableRunStore, PostgresStore, SqliteStore, run_durable


async def _open(kind: str, location: str) -> DurableRunStore:
    if kind == "sqlite":
        return SqliteStore(location)
    return await PostgresStore.connect(location)


async def main(kind: str, location: str, start: float, runs: int, steps: int, prefix: str) -> None:
    store = await _open(kind, location)
    await asyncio.sleep(max(0.0, start - time.time()))
    began = time.time()
    await asyncio.gather(
        *(
            run_durable(sequential, Plan(steps=steps), store=store, run_id=f"{prefix}-{i}")
            for i in range(runs)
        )
    )
    print(json.dumps({"began": began, "ended": time.time()}), flush=True)
    await store.close()


if __name__ == "__main__":
    kind, location, start, runs, steps, prefix = sys.argv[1:7]
    asyncio.run(main(kind, location, float(start), int(runs), int(steps), prefix))
