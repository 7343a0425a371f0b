"""A live entry's ``seq`` is its position in the run's stream, from 1, on every substrate."""

from __future__ import annotations

import pytest

from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import LocalSubstrate, Substrate


async def test_seq_counts_the_runs_entries_from_one(substrate: Substrate, run_id: str) -> None:
    # Another run first: a store-wide counter would start this run's stream past 1.
    await substrate.run(agents.pipeline, Job(n=1), run_id=f"{run_id}-before")
    await substrate.run(agents.pipeline, Job(n=4), run_id=run_id)

    everything = await substrate.watch(run_id)
    rest = await substrate.watch(run_id, after=2)

    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert [(e.seq, e.kind, e.step) for e in rest] == [
        (e.seq, e.kind, e.step) for e in everything[2:]
    ]


@pytest.mark.local_only(reason="a store refuses a position it never gave out")
async def test_a_position_never_given_out_is_refused(substrate: Substrate, run_id: str) -> None:
    assert isinstance(substrate, LocalSubstrate)
    await substrate.run(agents.pipeline, Job(n=1), run_id=run_id)
    count = len(await substrate.watch(run_id))

    assert len(await substrate.store.read_live(run_id, after=count)) == 0
    for after in (count + 1, 10**9, -1):
        with pytest.raises(ValueError, match=f"after={after} is not a position") as caught:
            await substrate.store.read_live(run_id, after=after)
        assert f"holds {count} entries" in str(caught.value) or after < 0


async def test_watching_from_a_position_never_given_out_is_refused(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.run(agents.pipeline, Job(n=1), run_id=run_id)
    count = len(await substrate.watch(run_id))

    assert await substrate.watch(run_id, after=count) == []
    for after in (count + 1, -1):
        with pytest.raises(ValueError, match=f"after={after} is not a position"):
            await substrate.watch(run_id, after=after)


@pytest.mark.local_only(reason="a store's own reads")
async def test_reading_on_in_small_batches_matches_one_read(
    substrate: Substrate, run_id: str
) -> None:
    assert isinstance(substrate, LocalSubstrate)
    await substrate.run(agents.pipeline, Job(n=1), run_id=f"{run_id}-other")
    await substrate.run(agents.pipeline, Job(n=2), run_id=run_id)
    whole = await substrate.store.read_live(run_id)

    batches, after = [], 0
    while batch := await substrate.store.read_live(run_id, after=after, limit=2):
        batches += batch
        after = batch[-1].seq
    middle = await substrate.store.read_live(run_id, after=3, limit=2)

    assert [(e.seq, e.kind, e.step) for e in batches] == [(e.seq, e.kind, e.step) for e in whole]
    assert [e.seq for e in middle] == [4, 5]
    assert [e.kind for e in middle] == [e.kind for e in whole[3:5]]
