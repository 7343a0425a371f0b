"""A run held under a lease in a local store, for tests of the store's writes."""

from __future__ import annotations

from datetime import timedelta

from durable import DurableRunManifest, Lease, TaskSpec
from durable_agents.adapters.local import DurableRunStore

MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)


async def hold(
    store: DurableRunStore, worker: str = "w", lease_for: float = 30, *, run_id: str = "r"
) -> Lease:
    """Start run ``run_id`` (or take it over) as ``worker``, and return its lease."""
    resumed = await store.start_or_resume(
        run_id=run_id, agent="a", manifest=MANIFEST, worker_id=worker,
        lease_for=timedelta(seconds=lease_for),
    )  # fmt: skip
    assert resumed.lease is not None
    return resumed.lease
