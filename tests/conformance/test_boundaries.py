"""Guarantees at a run's boundaries, the same on every substrate.

Run-fatal errors end the run whatever the agent catches; values over
``MAX_PAYLOAD_BYTES`` or without canonical JSON (NaN, infinities) are refused
before anything is recorded; an event key a run already took is answered
"not accepted" during the run and after it.
"""

from __future__ import annotations

import math

import pytest

from durable import MAX_PAYLOAD_BYTES, DurableError, ErrorCode
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import Substrate
from tests.conformance.test_scenarios import expect_error

FIVE_MB = 5 * 1024 * 1024


async def _resumed_after_a_deploy(substrate: Substrate, run_id: str, **knobs: object) -> None:
    await substrate.start(agents.swallower, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    agents.KNOBS.update(knobs)
    await substrate.resume(agents.swallower, Job(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)  # on Temporal, the next event wakes the run


async def test_a_caught_divergence_still_fails_the_run(substrate: Substrate, run_id: str) -> None:
    await _resumed_after_a_deploy(substrate, run_id, intent="renamed first")

    error = await expect_error(substrate, run_id, ErrorCode.STEP_DIVERGENCE)

    assert "renamed first" in str(error)


async def test_a_caught_input_mismatch_still_fails_the_run(
    substrate: Substrate, run_id: str
) -> None:
    await _resumed_after_a_deploy(substrate, run_id, fingerprint={"prompt": "v2"})

    await expect_error(substrate, run_id, ErrorCode.STEP_INPUT_MISMATCH)


async def test_a_step_result_over_the_limit_fails_once(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.oversized_step, Job(n=FIVE_MB), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.PAYLOAD_TOO_LARGE)

    assert f"{MAX_PAYLOAD_BYTES:,} bytes" in str(error)
    assert agents.CALLS["sized"] == 1  # deterministic: the side effect is never repeated
    (record,) = await substrate.steps(run_id)
    assert (record.status, record.result) == ("failed", None)
    assert record.error is not None
    assert record.error.code == "payload_too_large"


async def test_a_step_result_at_the_limit_is_recorded(substrate: Substrate, run_id: str) -> None:
    # The JSON string adds two quotes to the text.
    result = await substrate.run(agents.oversized_step, Job(n=MAX_PAYLOAD_BYTES - 2), run_id=run_id)

    assert result == MAX_PAYLOAD_BYTES - 2


async def test_a_run_result_over_the_limit_fails_the_run(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.oversized_result, Job(n=FIVE_MB), run_id=run_id)

    await expect_error(substrate, run_id, ErrorCode.PAYLOAD_TOO_LARGE)


async def test_run_input_over_the_limit_is_refused(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.pipeline, Job(marker="x" * FIVE_MB), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.PAYLOAD_TOO_LARGE)

    assert "input" in str(error)


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 10 * 1024 * 1024])
async def test_an_event_over_the_limit_is_refused_and_the_run_unharmed(
    substrate: Substrate, run_id: str, size: int
) -> None:
    await substrate.start(agents.waiter, Job(key="approval"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    with pytest.raises(DurableError) as refused:
        await substrate.send_event(run_id, "approval", {"blob": "x" * size})

    assert refused.value.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert await substrate.send_event(run_id, "approval", {"ok": True}) is True
    assert await substrate.result(run_id) == {"ok": True}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_non_finite_run_input_is_refused(
    substrate: Substrate, run_id: str, value: float
) -> None:
    await substrate.start(agents.echo, {"x": value}, run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.NON_CANONICAL_VALUE)

    assert "$.x" in str(error)


async def test_a_non_finite_event_payload_is_refused(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.echo, {"x": 1.5}, run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")

    with pytest.raises(DurableError) as refused:
        await substrate.send_event(run_id, "go", {"x": math.nan})

    assert refused.value.code == ErrorCode.NON_CANONICAL_VALUE
    assert await substrate.send_event(run_id, "go", {"x": 2.5}) is True
    assert await substrate.result(run_id) == {"x": 1.5}


async def test_a_non_finite_step_result_fails_once(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.non_finite_step, Job(), run_id=run_id)

    await expect_error(substrate, run_id, ErrorCode.NON_CANONICAL_VALUE)

    assert agents.CALLS["measure"] == 1
    (record,) = await substrate.steps(run_id)
    assert record.error is not None
    assert record.error.code == "non_canonical_value"


async def test_a_non_finite_emit_is_refused_inside_the_run(
    substrate: Substrate, run_id: str
) -> None:
    assert await substrate.run(agents.non_finite_emit, Job(), run_id=run_id) == (
        "non_canonical_value"
    )


async def test_a_taken_key_is_not_accepted_during_and_after_the_run(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.two_waits, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:first")
    assert await substrate.send_event(run_id, "second", 2) is True
    assert await substrate.send_event(run_id, "second", 3) is False
    assert await substrate.send_event(run_id, "first", 1) is True
    assert await substrate.result(run_id) == [1, 2]

    # A webhook retried after the end: its key was taken, which is no error.
    assert await substrate.send_event(run_id, "first", 1) is False
    assert await substrate.send_event(run_id, "second", 4) is False

    with pytest.raises(DurableError) as refused:
        await substrate.send_event(run_id, "late", {})
    assert refused.value.code == ErrorCode.RUN_ENDED


async def test_a_run_emitting_a_taken_key_into_an_ended_run_is_not_accepted(
    substrate: Substrate, run_id: str
) -> None:
    target = f"{run_id}-target"
    await substrate.start(agents.two_waits, Job(), run_id=target)
    await substrate.wait_for_step(target, "await_event:first")
    assert await substrate.send_event(target, "second", 2) is True
    assert await substrate.send_event(target, "first", 1) is True
    assert await substrate.result(target) == [1, 2]

    await substrate.start(agents.relay, Job(key="second", target=target), run_id=run_id)

    assert await substrate.result(run_id) == [False, False, "run_not_found"]


async def test_step_arguments_over_the_limit_are_refused_before_the_step(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.large_argument, Job(n=3 * 1024 * 1024), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.PAYLOAD_TOO_LARGE)

    assert "the arguments of step 'count the text' (count_text)" in str(error)
    assert agents.CALLS["count_text"] == 0
    assert await substrate.steps(run_id) == []


async def test_step_arguments_within_the_limit_run(substrate: Substrate, run_id: str) -> None:
    assert await substrate.run(agents.large_argument, Job(n=1000), run_id=run_id) == 1000


async def test_a_refused_typed_payload_is_not_repeated_in_the_error(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.approval_waiter, Job(key="approval"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    await substrate.send_event(run_id, "approval", {"approved": "sk-not-for-logs", "by": 1})

    error = await expect_error(substrate, run_id, ErrorCode.EVENT_PAYLOAD_INVALID)
    assert "approved" in str(error)
    assert "sk-not-for-logs" not in str(error)
    (record,) = await substrate.steps(run_id)
    assert record.error is not None
    assert "sk-not-for-logs" not in record.error.message
