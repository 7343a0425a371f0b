"""A local worker on the file or PostgreSQL store, for the fault suite (SQLite uses worker.py).

    python -m bench._faults_worker file DIRECTORY LEASE_SECONDS
    python -m bench._faults_worker postgres DSN LEASE_SECONDS

It hosts ``bench._faults_agents`` and resumes every run whose lease lapsed, as
``worker.py --local`` does on SQLite, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta

from bench import _faults_agents  # noqa: F401  (registers the agent this worker hosts)
from durable_agents.adapters.local import DurableRunStore, FileStore, LocalWorker, PostgresStore


async def open_store(kind: str, location: str) -> DurableRunStore:
    if kind == "file":
        return FileStore(location)
    if kind == "postgres":
        return await PostgresStore.connect(location)
    raise SystemExit(f"unknown store {kind!r}: pass file or postgres (SQLite: worker.py --local)")


async def main(kind: str, location: str, lease: float) -> None:
    store = await open_store(kind, location)
    worker = LocalWorker(store, lease=timedelta(seconds=lease))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await store.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
