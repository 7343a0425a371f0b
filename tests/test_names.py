"""Names that cross the boundary are validated with errors that say how to fix them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from durable import MAX_NAME_LENGTH, DurableContext, agent, as_timedelta, check_name
from durable_agents.adapters.local import InMemoryStore, resume_run, run_durable


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "keep it to 255"),
        ("run\n1", "control character '\\\\n'"),
        (42, "must be a string, got int"),
    ],
)
def test_bad_names_are_refused(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_name(value, what="run_id")


def test_good_names_pass() -> None:
    for name in ("order-1001", "parent/conversation-1", "ü 😀", "x" * MAX_NAME_LENGTH):
        assert check_name(name, what="run_id") == name


def test_durations_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        as_timedelta(math.nan, what="timeout")
    with pytest.raises(ValueError, match="must not be negative"):
        as_timedelta(-1, what="timeout")


@agent(name="tests.names.empty_key")
async def empty_key(ctx: DurableContext, _: dict[str, Any]) -> None:
    await ctx.await_event("")


async def test_run_ids_are_checked_before_anything_is_written() -> None:
    store = InMemoryStore()
    with pytest.raises(ValueError, match="run_id must not be empty"):
        await run_durable(empty_key, {}, store=store, run_id="")
    with pytest.raises(ValueError, match="control character"):
        await resume_run(store, "a\tb")
    assert await store.list_runs() == []


async def test_event_keys_are_checked_inside_a_run() -> None:
    with pytest.raises(ValueError, match="event key must not be empty"):
        await run_durable(empty_key, {}, store=InMemoryStore(), run_id="r")
