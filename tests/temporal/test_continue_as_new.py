"""A long agent run continues as new by itself, and stays one run with every step.

On a dev server that suggests continuing as new after a few hundred history
events, a 500-step agent that waits for an event in the middle spans several
executions. It gives the right result, runs no step twice, shows all its steps
while it runs and after it closed (with or without a worker, from Python and
from ``durable status``), keeps its identity and its live stream, and a change
of its code after it continued is still caught as a divergence.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from durable import DurableError, DurableRunInputMismatchError, ErrorCode, LiveEvent
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer, _replay
from durable_agents.adapters.temporal._carry import RunCarry, unpack
from tests.support.cli import durable, no_traceback
from tests.temporal import long_agents
from tests.temporal.long_agents import (
    LongJob,
    abandoning,
    diverging,
    expected_total,
    long_run,
)

pytestmark = pytest.mark.timeout(240)

SUGGEST_AFTER = 300
"""History events after which this server suggests continuing as new (Temporal's default
is 4,096): a sequential step takes six, so an execution holds about fifty steps."""
MODULES = ("tests.temporal.long_agents",)
RECORDED = Path(__file__).resolve().parents[1] / "histories" / "continued.json"
"""The last execution of a run that continued as new; re-record it with
``python -m tests.temporal.record_continued``."""


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    """A server of this module's own: the shared one keeps Temporal's default limits."""
    limit = f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}"
    with DevServer(extra_args=["--dynamic-config-value", limit]) as started:
        yield started


@pytest.fixture
async def client(server: DevServer) -> Client:
    return await Client.connect(server.address, data_converter=pydantic_data_converter)


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    long_agents.CALLS.clear()
    long_agents.RENAMED.clear()
    long_agents.PATCHED.clear()
    yield
    long_agents.RENAMED.clear()
    long_agents.PATCHED.clear()


async def _chain(client: Client, run_id: str) -> list[WorkflowHistory]:
    """The histories of the run's executions, oldest first, following the chain back."""
    histories = []
    execution: str | None = (await client.get_workflow_handle(run_id).describe()).run_id
    while execution:
        history = await client.get_workflow_handle(run_id, run_id=execution).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        execution = started.continued_execution_run_id or None
    return histories[::-1]


async def _until_waiting(runs: AgentClient, run_id: str, key: str) -> None:
    for _ in range(600):
        if (await runs.status(run_id))["waiting_for"] == [key]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never waited for {key!r}")


def _rows(status: str) -> list[str]:
    """The step rows of ``durable status`` output."""
    return [line for line in status.splitlines() if re.match(r"\s*\d+\s{2,}\S", line)]


def _env(server: DevServer, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": ",".join(MODULES),
        "DURABLE_DATA": str(tmp_path),
    }


async def test_a_long_run_spans_executions_and_keeps_every_step(
    server: DevServer, client: Client, tmp_path: Path
) -> None:
    run_id, queue = "long-run", "long-run"
    runs = AgentClient(client, task_queue=queue)
    job = LongJob()
    env = _env(server, queue, tmp_path)
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await runs.start(long_run, job, run_id=run_id)
        seen = asyncio.create_task(_watch(runs, run_id))
        await _until_waiting(runs, run_id, "go")

        # Waiting in the middle: already continued, and every step so far is there.
        assert len(await _chain(client, run_id)) >= 3
        steps = await runs.steps(run_id)
        intents = [s.intent for s in steps]
        assert intents[:7] == [
            "now", "uuid", "refuse", "await_event:never", "sleep", "has_event:go", "add 0"
        ]  # fmt: skip
        assert intents[-2:] == ["add 249", "await_event:go"]
        assert [s.step_index for s in steps] == list(range(len(steps)))
        assert {s.status for s in steps[:-1]} == {"completed", "failed"}
        assert (await runs.status(run_id))["steps"] == len(steps)
        # ``durable status`` as a process: the worker answers its query.
        status = await asyncio.to_thread(durable, "status", run_id, env=env)
        assert status.returncode == 0, status.stderr
        assert "waiting for go" in status.stdout
        assert len(_rows(status.stdout)) == len(steps)

        # The run keeps its identity: the same input attaches, other input is refused.
        await runs.start(long_run, job, run_id=run_id)
        with pytest.raises(DurableRunInputMismatchError):
            await runs.start(long_run, LongJob(steps=499), run_id=run_id)

        assert await runs.send_event(run_id, "go", {"bonus": 1000}) is True
        result = await runs.result(run_id)
        entries = await seen
        # Read again from the start once it closed: the latest execution holds only its
        # own entries and the latest of the one before; the rest come from earlier ones.
        reread = [entry async for entry in runs.watch(run_id)]
        steps = await runs.steps(run_id)
        usage = await runs.usage(run_id)

    histories = await _chain(client, run_id)
    first_started = histories[0].events[0].event_time.ToDatetime(UTC)
    last_started = histories[-1].events[0].event_time.ToDatetime(UTC)
    assert result.total == expected_total(job, 1000)
    # now() and uuid() replayed what the first execution recorded.
    started = datetime.fromisoformat(result.started)
    assert first_started <= started < first_started + timedelta(seconds=5) < last_started
    assert result.run_uuid == steps[1].result
    # The failures it caught, the wait it timed out, the event it saw missing at the
    # start, and its child runs: each replayed as it first happened, many times over.
    assert (result.refused, result.timed_out, result.go_early) == ("ValueError", True, False)
    assert (result.doubled, result.child_error) == (60, "ValueError")
    children = [s for s in steps if s.kind == "agent"]
    assert [(s.intent, s.status) for s in children] == [
        ("agent:can.double", "completed"), ("agent:can.failing", "failed")
    ]  # fmt: skip
    # No step ran twice across the executions, and every one ran.
    assert len(long_agents.CALLS) == job.steps
    assert set(long_agents.CALLS.values()) == {1}
    # Usage totals across executions: five model calls of ten tokens in, five out.
    assert result.tokens == 50
    assert (usage["input_tokens"], usage["output_tokens"]) == (50, 25)
    # Every step of the run, in order, across the executions.
    kinds = [s.kind for s in steps]
    assert kinds.count("logic") + kinds.count("llm") == job.steps
    positions = job.steps + 9  # now, uuid, 2 waits, sleep, has_event, 2 children, emit
    assert [s.step_index for s in steps] == list(range(positions))
    failed = [s.intent for s in steps if s.status != "completed"]
    assert failed == ["refuse", "await_event:never", "agent:can.failing"]
    assert steps[-1].intent == "emit_event:finished"
    # The executions ended continuing as new, all but the last, which completed.
    closing = [h.events[-1].event_type for h in histories]
    assert closing[:-1] == [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW] * (
        len(histories) - 1
    )
    assert closing[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert len(histories) >= 6
    # Each execution stayed small: near the suggested length, and its carry compressed.
    for history in histories:
        assert len(history.events) < SUGGEST_AFTER + 60
        assert sum(e.ByteSize() for e in history.events) < 400_000
    _report(histories)
    # The live stream read on across the executions: one offset, no gap, one end.
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1].kind == "run_completed"
    finished = {e.step for e in entries if e.kind == "step_completed"}
    ran = {s.step_index for s in steps if s.status == "completed" and s.kind in ("logic", "llm")}
    assert finished >= ran
    assert [(e.seq, e.kind, e.step) for e in reread] == [(e.seq, e.kind, e.step) for e in entries]

    # Closed, with no worker: the steps come from the last execution's history.
    snapshot = await runs.snapshot(run_id, query_within=timedelta(seconds=1))
    assert snapshot.unanswered is not None
    # All but the last execution's own emit: without a worker, history shows that
    # execution's steps run as activities, and the ones before it whole.
    assert [s.intent for s in snapshot.steps] == [s.intent for s in steps][:-1]
    assert [s.status for s in snapshot.steps] == [s.status for s in steps][:-1]
    status = await asyncio.to_thread(durable, "status", run_id, env=env)
    no_traceback(status)
    assert status.returncode == 0, status.stderr
    assert "completed" in status.stdout
    rows = _rows(status.stdout)
    assert len(rows) == positions - 1
    assert sum("completed" in row for row in rows) == positions - 1 - len(failed)

    # Today's code replays every execution of the chain; replay runs no step.
    long_agents.CALLS.clear()
    for history in histories:
        replayed = await _replayer().replay_workflow(history)
        assert replayed.replay_failure is None
    assert long_agents.CALLS == {}


def _replayer() -> Replayer:
    return Replayer(workflows=[], plugins=[DurableAgentsPlugin(MODULES)])


def _recorded() -> WorkflowHistory:
    return WorkflowHistory.from_json("continued", RECORDED.read_text())


async def test_a_recorded_continued_execution_replays() -> None:
    # It starts with 36 carried positions: caught failures, two child runs, two branches.
    replayed = await _replayer().replay_workflow(_recorded())

    assert replayed.replay_failure is None
    assert long_agents.CALLS == {}


async def test_a_renamed_carried_step_is_caught_replaying_a_recorded_execution() -> None:
    long_agents.RENAMED[2] = "renamed 2"

    with pytest.raises(NondeterminismError):
        await _replayer().replay_workflow(_recorded())


async def _watch(runs: AgentClient, run_id: str) -> list[LiveEvent]:
    return [entry async for entry in runs.watch(run_id)]


def _report(histories: list[WorkflowHistory]) -> None:
    """Print each execution's events and bytes, and what it carried: the packed records
    (and as plain JSON), the live stream (``pytest -s`` shows them)."""
    converter = pydantic_data_converter.payload_converter
    print(f"\n{len(histories)} executions:")
    for history in histories:
        line = f"  {len(history.events)} events, {sum(e.ByteSize() for e in history.events)} bytes"
        inputs = history.events[0].workflow_execution_started_event_attributes.input.payloads
        if len(inputs) > 1:
            carry = converter.from_payload(inputs[1], RunCarry)
            state = unpack(carry.state)
            stream = 0 if carry.stream is None else sum(len(i.data) for i in carry.stream.log)
            line += (
                f"; carried {inputs[1].ByteSize()} bytes: {len(state.steps)} positions in "
                f"{len(carry.state)} bytes ({len(state.model_dump_json())} as JSON), "
                f"live tail {stream} bytes"
            )
        print(line)


async def test_a_run_whose_records_outgrow_the_carry_limit_goes_on_in_one_execution(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_replay, "CARRY_LIMIT", 1_000)
    run_id, queue = "long-oversized", "long-oversized"
    runs = AgentClient(client, task_queue=queue)
    job = LongJob(steps=80, wait_at=-1)
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await runs.start(diverging, job, run_id=run_id)
        total = await runs.result(run_id)

    assert total == sum(range(job.steps))
    (history,) = await _chain(client, run_id)
    assert len(history.events) > SUGGEST_AFTER  # suggested, and still one execution
    warned = [r.getMessage() for r in caplog.records if "by itself" in r.getMessage()]
    assert len(warned) == 1  # said once, not at every step
    assert "over 1000" in warned[0]
    assert "ctx.continue_as_new" in warned[0]


async def test_a_step_the_agent_stopped_awaiting_is_abandoned_again_on_replay(
    client: Client,
) -> None:
    run_id, queue = "long-abandoning", "long-abandoning"
    runs = AgentClient(client, task_queue=queue)
    job = LongJob(steps=120)
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await runs.start(abandoning, job, run_id=run_id)
        outcome = await runs.result(run_id)

    # Its outcome never reached the agent: each replay waits for it until the agent's
    # own timeout gives up on it again, and the agent goes on as it first did.
    assert outcome == f"timed out, {sum(range(job.steps))}"
    assert len(await _chain(client, run_id)) >= 3
    assert long_agents.CALLS["abandoned 0"] == 1
    assert set(long_agents.CALLS.values()) == {1}


async def test_a_divergence_after_continuing_as_new_is_still_caught(client: Client) -> None:
    run_id, queue = "long-diverging", "long-diverging"
    runs = AgentClient(client, task_queue=queue)
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await runs.start(diverging, LongJob(steps=200, wait_at=100), run_id=run_id)
        await _until_waiting(runs, run_id, "go")
        assert len(await _chain(client, run_id)) >= 2

        # A deploy renames an early step while the run waits; the next execution
        # replays it from the carried records, and the agent swallows every error.
        long_agents.RENAMED[2] = "renamed 2"
        await runs.send_event(run_id, "go", None)
        with pytest.raises(DurableError) as caught:
            await runs.result(run_id)

    assert caught.value.code == ErrorCode.STEP_DIVERGENCE
    assert "'add 2'" in str(caught.value)
    assert "'renamed 2'" in str(caught.value)
    assert set(long_agents.CALLS.values()) == {1}  # nothing ran twice, even then


@pytest.mark.parametrize("patched_from_the_start", [False, True])
async def test_a_patch_answers_the_same_after_continuing_as_new(
    client: Client, patched_from_the_start: bool
) -> None:
    """The carried positions replay in a fresh execution, where Temporal has no marker:
    the run's own answer, carried with it, keeps it on the path it took."""
    run_id = queue = f"long-patched-{patched_from_the_start}"
    runs = AgentClient(client, task_queue=queue)
    long_agents.PATCHED["on"] = patched_from_the_start
    async with Worker(client, task_queue=queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await runs.start(long_agents.patched, LongJob(steps=200, wait_at=100), run_id=run_id)
        await _until_waiting(runs, run_id, "go")
        assert len(await _chain(client, run_id)) >= 2

        long_agents.PATCHED["on"] = True  # the deploy: every execution from now on asks
        await runs.send_event(run_id, "go", None)
        total, extra = await runs.result(run_id)

    assert total == sum(range(200))
    assert extra == (-1 if patched_from_the_start else 0)
    assert long_agents.CALLS["add -1"] == (1 if patched_from_the_start else 0)
    assert set(long_agents.CALLS.values()) == {1}
