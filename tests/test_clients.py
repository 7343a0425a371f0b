"""``DurableClient``: the same assertions through ``LocalClient`` on every local store and
through ``AgentClient`` on the dev server.

A caller (the CLI, the HTTP API, a test) sees the same answers whatever runs the
agents; what only one substrate knows is said in the answers, never by branching.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable import (
    DurableClient,
    DurableRunCancelledError,
    DurableRunEndedError,
    DurableRunInputInvalidError,
    DurableRunInputMismatchError,
    DurableRunNotFoundError,
    DurableStepFailedError,
    RunView,
    usage_totals,
)
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import (
    FileStore,
    InMemoryStore,
    LocalClient,
    PostgresStore,
    RunSlots,
    SqliteStore,
)
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests import client_agents
from tests.conformance import agents
from tests.conformance.agents import Job

MODULES = ("tests.conformance.agents", "tests.client_agents")


@pytest.fixture(params=["memory", "file", "sqlite", "postgres", "temporal"])
async def caller(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableClient]:
    """A ``DurableClient``: ``LocalClient`` over each local store, ``AgentClient`` with a worker."""
    agents.reset()
    kind = request.param
    if kind == "temporal":
        server: DevServer = request.getfixturevalue("temporal_server")
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        queue = f"clients-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
            temporal = AgentClient(client, task_queue=queue)
            yield temporal
            await temporal.close()
        return
    store = (
        InMemoryStore()
        if kind == "memory"
        else FileStore(tmp_path / "runs")
        if kind == "file"
        else SqliteStore(tmp_path / "durable.db")
        if kind == "sqlite"
        else await PostgresStore.connect(request.getfixturevalue("postgres_dsn"))
    )
    async with LocalClient(store, lease=2, poll_interval=0.02, owns_store=True) as local:
        yield local


async def _until(caller: DurableClient, run_id: str, status: str) -> RunView:
    """The run's view once it is in ``status``."""
    deadline = time.monotonic() + 20
    while (view := await caller.describe(run_id)).status != status:
        assert time.monotonic() < deadline, f"run {run_id!r} stayed {view.status}, not {status}"
        await asyncio.sleep(0.05)
    return view


# start, identical start, mismatch, result


async def test_start_says_whether_it_created_the_run(caller: DurableClient, run_id: str) -> None:
    started = await caller.start(agents.pipeline, Job(n=2), run_id=run_id)
    result = await asyncio.wait_for(caller.result(run_id), 20)
    again = await caller.start("conformance.pipeline", {"n": 2}, run_id=run_id)

    assert (started.run_id, started.created) == (run_id, True)
    assert result == {"total": 3, "label": "total=3"}
    assert (again.run_id, again.created) == (run_id, False)
    assert await caller.result(run_id) == result  # an ended run answers at once


async def test_start_without_a_run_id_names_the_run_after_its_agent(
    caller: DurableClient,
) -> None:
    started = await caller.start(agents.pipeline, Job())

    assert started.created
    assert started.run_id.startswith("conformance.pipeline-")
    assert await asyncio.wait_for(caller.result(started.run_id), 20) == {
        "total": 2,
        "label": "total=2",
    }


async def test_other_input_under_the_same_id_is_refused_at_start(
    caller: DurableClient, run_id: str
) -> None:
    await caller.start(agents.waiter, Job(key="a"), run_id=run_id)

    with pytest.raises(DurableRunInputMismatchError, match="use a new run id for new input"):
        await caller.start(agents.waiter, Job(key="b"), run_id=run_id)
    with pytest.raises(DurableRunInputInvalidError, match="does not match"):
        await caller.start(agents.waiter, {"n": "many"}, run_id=f"{run_id}-bad")

    assert (await caller.describe(run_id)).status in ("running", "waiting")
    with pytest.raises(DurableRunNotFoundError):
        await caller.describe(f"{run_id}-bad")


async def test_a_failed_run_raises_its_step_failure(caller: DurableClient, run_id: str) -> None:
    await caller.start(agents.rejecting, Job(n=1), run_id=run_id)

    with pytest.raises(DurableStepFailedError) as raised:
        await asyncio.wait_for(caller.result(run_id), 20)
    view = await caller.describe(run_id)

    assert raised.value.intent == "validate"
    assert view.status == "failed"
    assert view.error is not None
    assert "ValueError" in view.error


async def test_the_result_of_an_unknown_run_is_not_found(caller: DurableClient) -> None:
    with pytest.raises(DurableRunNotFoundError, match="no run 'never-started'"):
        await caller.result("never-started")


# describe and steps


async def test_describe_tells_what_a_run_waits_for_then_how_it_ended(
    caller: DurableClient, run_id: str
) -> None:
    await caller.start(agents.waiter, Job(key="go"), run_id=run_id)
    waiting = await _until(caller, run_id, "waiting")
    steps = await caller.steps(run_id)

    assert await caller.send_event(run_id, "go", {"ok": True}) is True
    assert await asyncio.wait_for(caller.result(run_id), 20) == {"ok": True}
    ended = await caller.describe(run_id)

    assert (waiting.run_id, waiting.agent) == (run_id, "conformance.waiter")
    assert waiting.waiting_for == ["go"]
    assert waiting.attended is True  # a worker executes it
    assert waiting.ended_at is None
    assert waiting.created_at is not None
    assert [(s.intent, s.kind, s.status) for s in steps] == [("await_event:go", "event", "running")]
    assert (ended.status, ended.waiting_for, ended.attended, ended.error) == (
        "completed", [], None, None,
    )  # fmt: skip
    assert ended.ended_at is not None
    assert ended.step_count == 1
    assert [s.status for s in await caller.steps(run_id)] == ["completed"]


async def test_unknown_runs_are_not_found_everywhere(caller: DurableClient) -> None:
    for read in (caller.describe, caller.steps, caller.usage):
        with pytest.raises(DurableRunNotFoundError, match="no run 'nowhere'"):
            await read("nowhere")


# runs, a page at a time


async def test_runs_come_newest_first_a_page_at_a_time(caller: DurableClient) -> None:
    prefix = f"paged-{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{n}" for n in range(5)]
    for n, run_id in enumerate(ids):
        await caller.start(client_agents.numbered, {"n": n}, run_id=run_id)
        assert await asyncio.wait_for(caller.result(run_id), 20) == n

    deadline = time.monotonic() + 20  # Temporal's visibility lists a run a moment later
    while len(await caller.runs(agent="clients.numbered", limit=100)) < len(ids):
        assert time.monotonic() < deadline, "the runs were never all listed"
        await asyncio.sleep(0.1)
    pages: list[list[RunView]] = []
    before = None
    while page := await caller.runs(agent="clients.numbered", limit=2, before=before):
        pages.append(page)
        before = page[-1].run_id
    listed = [view for page in pages for view in page]
    completed = await caller.runs(status="completed", agent="clients.numbered", limit=100)
    running = await caller.runs(status="running", agent="clients.numbered", limit=100)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [view.run_id for view in listed] == ids[::-1]
    assert {(view.agent, view.status) for view in listed} == {("clients.numbered", "completed")}
    assert all(view.created_at is not None and view.ended_at is not None for view in listed)
    assert [view.run_id for view in completed] == ids[::-1]
    assert running == []
    with pytest.raises(DurableRunNotFoundError):
        await caller.runs(before=f"{prefix}-gone")
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await caller.runs(limit=0)


# events, cancel, watch, usage


async def test_send_event_answers_first_wins_and_refuses_what_it_must(
    caller: DurableClient, run_id: str
) -> None:
    await caller.start(agents.two_waits, Job(), run_id=run_id)
    await _until(caller, run_id, "waiting")

    first = await caller.send_event(run_id, "first", 1)
    again = await caller.send_event(run_id, "first", 2)
    second = await caller.send_event(run_id, "second", 3)
    result = await asyncio.wait_for(caller.result(run_id), 20)
    retried = await caller.send_event(run_id, "second", 3)

    assert (first, again, second) == (True, False, True)
    assert result == [1, 3]
    assert retried is False  # a sender retrying after the end: the key was taken
    with pytest.raises(DurableRunEndedError, match="has already ended"):
        await caller.send_event(run_id, "late", None)
    with pytest.raises(DurableRunNotFoundError):
        await caller.send_event(f"{run_id}-none", "first", 1)


async def test_cancel_ends_the_run_cancelled_once(caller: DurableClient, run_id: str) -> None:
    await caller.start(agents.waiter, Job(key="never"), run_id=run_id)
    await _until(caller, run_id, "waiting")

    outcome = await caller.cancel(run_id, "not needed")
    with pytest.raises(DurableRunCancelledError, match="not needed") as raised:
        await asyncio.wait_for(caller.result(run_id), 20)
    view = await caller.describe(run_id)
    again = await caller.cancel(run_id, "twice")

    assert outcome == "requested"  # its worker ends it
    assert raised.value.reason == "not needed"
    assert view.status == "cancelled"
    assert view.error is not None
    assert "not needed" in view.error
    assert again == "already_ended"


async def test_watch_streams_a_run_to_its_end(caller: DurableClient, run_id: str) -> None:
    await caller.start(agents.pipeline, Job(n=2), run_id=run_id)
    await asyncio.wait_for(caller.result(run_id), 20)

    async def collect(after: int) -> list[Any]:
        return [event async for event in caller.watch(run_id, after=after)]

    seen = await asyncio.wait_for(collect(0), 20)
    rest = await asyncio.wait_for(collect(seen[1].seq or 0), 20)

    kinds = [event.kind for event in seen]
    assert kinds.count("step_completed") == 2
    assert kinds[-1] == "run_completed"
    assert rest == seen[2:]
    with pytest.raises(DurableRunNotFoundError):
        await asyncio.wait_for(_first(caller, "nothing-here"), 20)


async def _first(caller: DurableClient, run_id: str) -> Any:
    async for event in caller.watch(run_id):
        return event
    return None


async def test_usage_adds_up_the_runs_model_calls(caller: DurableClient, run_id: str) -> None:
    await caller.start(agents.ask, Job(key="scripted"), run_id=run_id)
    result = await asyncio.wait_for(caller.result(run_id), 20)

    usage = await caller.usage(run_id)

    assert usage == usage_totals(await caller.steps(run_id))
    assert [usage["input_tokens"], usage["output_tokens"]] == result["tokens"]
    assert usage["input_tokens"]


# What only a LocalClient does: it executes the runs it starts, beside other workers.


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    kind = request.param
    opened: Any = (
        InMemoryStore()
        if kind == "memory"
        else FileStore(tmp_path / "runs")
        if kind == "file"
        else SqliteStore(tmp_path / "durable.db")
        if kind == "sqlite"
        else await PostgresStore.connect(request.getfixturevalue("postgres_dsn"))
    )
    yield opened
    await opened.close()


async def test_a_run_another_worker_holds_is_left_to_it(store: Any, run_id: str) -> None:
    agents.reset()
    holder = LocalClient(store, lease=30, poll_interval=0.02)
    other = LocalClient(store, lease=30, poll_interval=0.02)
    await holder.start(agents.waiter, Job(key="go"), run_id=run_id)

    found = await other.start(agents.waiter, Job(key="go"), run_id=run_id)
    waiting = asyncio.create_task(other.result(run_id))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # it waits for the holder, which still waits for "go"
    run = await store.load_run(run_id)
    assert await other.send_event(run_id, "go", 7) is True

    assert found.created is False
    assert run.lease_holder == holder.worker_id  # not stolen
    assert await asyncio.wait_for(waiting, 20) == 7
    assert await holder.result(run_id) == 7
    await other.close()
    await holder.close()


async def test_close_leaves_its_runs_to_any_worker(store: Any, run_id: str) -> None:
    agents.reset()
    first = LocalClient(store, lease=0.5, poll_interval=0.02)
    await first.start(agents.waiter, Job(key="go"), run_id=run_id)
    await _until(first, run_id, "waiting")
    await first.close()

    second = LocalClient(store, lease=0.5, poll_interval=0.02)
    while (orphan := await second.describe(run_id)).attended:
        await asyncio.sleep(0.05)  # the first client's lease lapses
    resumed = await second.start(agents.waiter, Job(key="go"), run_id=run_id)
    await _until(second, run_id, "waiting")
    assert await second.send_event(run_id, "go", "on") is True
    result = await asyncio.wait_for(second.result(run_id), 20)

    assert orphan.status in ("running", "waiting")  # not cancelled: it was only stopped
    assert orphan.attended is False
    assert orphan.note is not None
    assert "durable worker --local" in orphan.note
    assert resumed.created is False
    assert result == "on"
    with pytest.raises(RuntimeError, match="closed"):
        await first.start(agents.waiter, Job(key="x"), run_id=f"{run_id}-later")
    await second.close()


async def test_a_failure_read_back_from_the_store_is_the_error_the_run_raised(
    store: Any, run_id: str
) -> None:
    agents.reset()
    async with LocalClient(store, poll_interval=0.02) as ran:
        await ran.start(agents.rejecting, Job(n=1), run_id=run_id)
        with pytest.raises(DurableStepFailedError) as fresh:
            await ran.result(run_id)
    async with LocalClient(store, poll_interval=0.02) as reader:
        with pytest.raises(DurableStepFailedError) as read:
            await reader.result(run_id)

    assert (read.value.intent, read.value.error_type, read.value.attempts) == (
        fresh.value.intent, fresh.value.error_type, fresh.value.attempts,
    )  # fmt: skip
    assert read.value.code == fresh.value.code


async def test_start_waits_for_a_free_slot(store: Any, run_id: str) -> None:
    agents.reset()
    async with LocalClient(store, slots=RunSlots(1), poll_interval=0.02) as client:
        await client.start(agents.waiter, Job(key="go"), run_id=f"{run_id}-a")
        second = asyncio.create_task(client.start(agents.pipeline, Job(), run_id=f"{run_id}-b"))
        await asyncio.sleep(0.3)
        queued = second.done()
        await client.send_event(f"{run_id}-a", "go", None)
        started = await asyncio.wait_for(second, 20)

        assert queued is False  # the one slot is the waiting run's
        assert started.created is True
        assert await client.result(f"{run_id}-b") == {"total": 2, "label": "total=2"}


async def test_two_clients_starting_one_new_run_create_it_once(store: Any, run_id: str) -> None:
    agents.reset()
    async with (
        LocalClient(store, poll_interval=0.02) as one,
        LocalClient(store, poll_interval=0.02) as two,
    ):
        same = await asyncio.gather(
            one.start(agents.waiter, Job(key="go"), run_id=run_id),
            two.start(agents.waiter, Job(key="go"), run_id=run_id),
        )
        other = await asyncio.gather(
            one.start(agents.waiter, Job(key="a"), run_id=f"{run_id}-x"),
            two.start(agents.waiter, Job(key="b"), run_id=f"{run_id}-x"),
            return_exceptions=True,
        )
        await one.send_event(run_id, "go", 1)
        results = [await one.result(run_id), await two.result(run_id)]

    assert sorted(started.created for started in same) == [False, True]
    assert results == [1, 1]
    refused = [outcome for outcome in other if isinstance(outcome, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], DurableRunInputMismatchError)
