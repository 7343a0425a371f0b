"""Context checkpoints on every substrate: the same operations, replay and outside reads."""

from __future__ import annotations

import pytest

from durable import DurableCheckpointNotFoundError, ErrorCode, canonical_json
from tests.conformance import checkpoint_agents
from tests.conformance.checkpoint_agents import Task
from tests.conformance.substrates import Substrate
from tests.conformance.test_scenarios import expect_error


@pytest.fixture(autouse=True)
def _fresh_knobs() -> None:
    checkpoint_agents.KNOBS.clear()


async def test_write_list_read_and_delete(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(checkpoint_agents.round_trip, Task(), run_id=run_id)

    context = {"notes": ["a", "b"], "topic": "refunds"}
    assert result == {
        "step": 0,
        "size": len(canonical_json(context)),
        "listed": ["context", "plan"],
        "read": context,
        "typed": ["a", "b"],
        "plan": ["answer"],
        "deleted": [True, False],
        "left": ["context"],
    }
    steps = await substrate.steps(run_id)
    assert [(s.kind, s.intent, s.status) for s in steps] == [
        ("checkpoint", "checkpoint:context", "completed"),
        ("checkpoint", "checkpoint:plan", "completed"),
        ("checkpoint", "checkpoint:plan", "completed"),
        ("checkpoint", "delete_checkpoint:plan", "completed"),
        ("checkpoint", "delete_checkpoint:plan", "completed"),
    ]
    # Kept with the run, readable from outside it once it ended.
    [info] = await substrate.checkpoints(run_id)
    assert (info.name, info.step, info.size_bytes) == ("context", 0, len(canonical_json(context)))
    assert (await substrate.checkpoint(run_id, "context")).payload == context
    with pytest.raises(DurableCheckpointNotFoundError) as caught:
        await substrate.checkpoint(run_id, "plan")
    assert caught.value.code == ErrorCode.CHECKPOINT_NOT_FOUND
    assert f"run {run_id!r} has no checkpoint 'plan'" in str(caught.value)


async def test_a_resumed_run_neither_rewrites_nor_rereads(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(checkpoint_agents.across_a_resume, Task(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    # Readable from outside while the run waits.
    [before] = await substrate.checkpoints(run_id)
    assert (await substrate.checkpoint(run_id, "context")).payload == {
        "topic": "refunds",
        "turn": 1,
    }
    await substrate.crash(run_id)

    await substrate.resume(checkpoint_agents.across_a_resume, Task(), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == {
        "before": ["context"],
        "seen": {"topic": "refunds", "turn": 1},
        "after": {"topic": "refunds", "turn": 2},
    }
    steps = await substrate.steps(run_id)
    writes = [(s.intent, s.attempts) for s in steps if s.kind == "checkpoint"]
    assert writes == [
        ("checkpoint:context", 1),
        ("checkpoint:scratch", 1),
        ("delete_checkpoint:scratch", 1),
        ("checkpoint:context", 1),
    ]
    [after] = await substrate.checkpoints(run_id)
    assert after.step == 4  # the write after the wait replaced the one at position 0
    assert after.written_at >= before.written_at
    assert (await substrate.checkpoint(run_id, "context")).payload["turn"] == 2


async def test_a_replay_reads_what_the_first_execution_read(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(checkpoint_agents.reads_on_replay, Task(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    assert (await substrate.checkpoint(run_id, "context")).payload == {"turn": 2}
    await substrate.crash(run_id)

    await substrate.resume(checkpoint_agents.reads_on_replay, Task(), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == {
        "first": {"turn": 1},
        "listed": [["context", 0]],
        "last": {"turn": 2},
    }


async def test_refused_payloads_and_a_missing_name(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(checkpoint_agents.refusals, Task(), run_id=run_id)

    assert result == {
        "codes": ["non_canonical_value"] * 3 + ["checkpoint_not_found"],
        "deleted": False,
        "listed": [],
    }
    # Nothing refused took a position: only the delete of a name that never existed did.
    steps = await substrate.steps(run_id)
    assert [s.intent for s in steps] == ["delete_checkpoint:missing"]
    assert await substrate.checkpoints(run_id) == []


async def test_a_replay_that_writes_another_payload_is_refused(
    substrate: Substrate, run_id: str
) -> None:
    checkpoint_agents.KNOBS["payload"] = {"v": 1}
    await substrate.start(checkpoint_agents.versioned, Task(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    checkpoint_agents.KNOBS["payload"] = {"v": 2}
    await substrate.resume(checkpoint_agents.versioned, Task(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)  # on Temporal, the next event wakes the run

    await expect_error(substrate, run_id, ErrorCode.STEP_INPUT_MISMATCH)
