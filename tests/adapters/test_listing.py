"""Listing runs in every store: by state and agent, newest first, a page at a time."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from durable import DurableRunManifest, DurableRunNotFoundError, StepError, TaskSpec
from durable_agents.adapters.local import (
    DurableRunStore,
)

MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
)
_LEASE = timedelta(seconds=30)


@pytest.fixture
def agent() -> str:
    """An agent name no other test's runs have, so a listing by agent counts only these."""
    return f"lister-{uuid.uuid4().hex[:8]}"


async def _started(store: DurableRunStore, agent: str, count: int) -> list[str]:
    """``count`` runs of ``agent``, in creation order (several share a millisecond)."""
    ids = [f"{agent}-{n:02d}" for n in range(count)]
    for run_id in ids:
        await store.start_or_resume(
            run_id=run_id, agent=agent, manifest=MANIFEST, worker_id="w", lease_for=_LEASE
        )
    return ids


async def test_pages_back_from_the_newest_run_miss_and_repeat_nothing(
    store: DurableRunStore, agent: str
) -> None:
    await _started(store, agent, 8)
    everything = [r.run_id for r in await store.list_runs(agent=agent, limit=1000)]

    pages: list[list[str]] = []
    before = None
    while True:
        page = await store.list_runs(agent=agent, limit=3, newest=True, before=before)
        if not page:
            break
        pages.append([r.run_id for r in page])
        before = page[0].run_id  # the oldest of the page, as a caller pages on

    assert [len(page) for page in pages] == [3, 3, 2]
    assert [run_id for page in reversed(pages) for run_id in page] == everything
    assert sorted(everything) == everything  # created in id order, ties broken by id


async def test_before_keeps_to_the_state_and_agent_asked_for(
    store: DurableRunStore, agent: str
) -> None:
    ids = await _started(store, agent, 5)
    other = f"{agent}-other"
    await store.start_or_resume(
        run_id=other, agent=f"{agent}-x", manifest=MANIFEST, worker_id="w", lease_for=_LEASE
    )
    for run_id in ids[1::2]:
        resumed = await store.start_or_resume(
            run_id=run_id, agent=agent, manifest=MANIFEST, worker_id="w", lease_for=_LEASE
        )
        assert resumed.lease is not None
        failure = StepError(message="no", type="ValueError")
        await store.end_run(resumed.lease, status="failed", error=failure)

    failed = await store.list_runs(status="failed", agent=agent, newest=True, before=ids[4])
    running = await store.list_runs(status="running", agent=agent, newest=True, before=ids[4])

    assert [r.run_id for r in failed] == [ids[1], ids[3]]
    assert [r.run_id for r in running] == [ids[0], ids[2]]
    assert other not in [r.run_id for r in await store.list_runs(agent=agent, limit=1000)]


async def test_an_unknown_before_is_refused_with_the_fix(
    store: DurableRunStore, agent: str
) -> None:
    with pytest.raises(DurableRunNotFoundError, match="page with the id of a run"):
        await store.list_runs(agent=agent, before=f"{agent}-gone")
