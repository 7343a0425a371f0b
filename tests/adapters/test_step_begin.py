"""``begin_step`` on every local store: the attempt it records, and the deadline it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable import (
    DurableRunLeaseLostError,
    DurableRunNotFoundError,
)
from durable_agents.adapters.local import DurableRunStore
from tests.support.leases import hold

FIRST = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def test_a_step_without_a_deadline_records_each_attempt(store: DurableRunStore) -> None:
    lease = await hold(store)
    for _ in range(3):
        begun = await store.begin_step(
            lease, step_index=0, intent="s", kind="logic", input_hash="h"
        )
        assert begun is None
    (step,) = await store.load_steps("r")
    assert (step.status, step.attempts, step.deadline, step.input_hash) == ("running", 3, None, "h")


async def test_a_wait_keeps_the_first_deadline_it_was_given(store: DurableRunStore) -> None:
    lease = await hold(store)
    first = await store.begin_step(
        lease, step_index=0, intent="sleep", kind="timer", input_hash="", deadline=FIRST
    )
    later = await store.begin_step(
        lease, step_index=0, intent="sleep", kind="timer", input_hash="",
        deadline=FIRST + timedelta(hours=1),
    )  # fmt: skip
    assert first == later == FIRST
    (step,) = await store.load_steps("r")
    assert (step.attempts, step.deadline) == (2, FIRST)


async def test_a_begin_under_a_lost_lease_changes_nothing(store: DurableRunStore) -> None:
    stale = await hold(store, "old", lease_for=0)
    await hold(store, "new")  # takes the lapsed lease over
    for deadline in (None, FIRST):
        with pytest.raises(DurableRunLeaseLostError):
            await store.begin_step(
                stale, step_index=0, intent="s", kind="logic", input_hash="", deadline=deadline
            )
    assert await store.load_steps("r") == []


async def test_a_begin_for_a_run_never_started_names_the_run(store: DurableRunStore) -> None:
    lease = await hold(store)
    ghost = lease.model_copy(update={"run_id": "ghost"})
    with pytest.raises(DurableRunNotFoundError, match="ghost"):
        await store.begin_step(ghost, step_index=0, intent="s", kind="logic", input_hash="")
