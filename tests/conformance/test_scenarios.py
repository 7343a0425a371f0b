"""The conformance suite: every scenario, on every substrate, with the same observable result."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from durable import DurableError, ErrorCode, canonical_hash
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import Substrate


async def expect_error(substrate: Substrate, run_id: str, code: ErrorCode) -> DurableError:
    with pytest.raises(DurableError) as caught:
        await substrate.result(run_id)
    assert caught.value.code == code, caught.value
    return caught.value


async def test_fresh_run(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(agents.pipeline, Job(n=4), run_id=run_id)

    assert result == {"total": 5, "label": "total=5"}
    steps = await substrate.steps(run_id)
    assert [(s.intent, s.status, s.attempts) for s in steps] == [
        ("add one", "completed", 1),
        ("make the report", "completed", 1),
    ]
    assert agents.CALLS == {"add_one": 1, "make_report": 1}


async def test_replay_skips_completed_steps(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.two_phase, Job(n=1), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(agents.two_phase, Job(n=1), run_id=run_id)
    await substrate.send_event(run_id, "go", {})

    assert await substrate.result(run_id) == 4
    # "first" and "second" ran once before the crash; only "third" ran after it.
    assert agents.CALLS["add_one"] == 3


async def test_local_activity_steps_replay_too(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.nearby, Job(n=1), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(agents.nearby, Job(n=1), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == 3
    assert agents.CALLS["add_one_nearby"] == 2


async def test_manifest_mismatch(substrate: Substrate, run_id: str) -> None:
    await substrate.run(agents.pipeline, Job(n=1), run_id=run_id)

    await substrate.start(agents.pipeline, Job(n=2), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.MANIFEST_MISMATCH)
    assert "new run id" in str(error)


async def test_divergence(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.versioned, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    agents.KNOBS["intent"] = "renamed first"
    await substrate.resume(agents.versioned, Job(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)  # on Temporal, the next event wakes the run

    error = await expect_error(substrate, run_id, ErrorCode.STEP_DIVERGENCE)
    assert "first" in str(error)
    assert "renamed first" in str(error)


async def test_removed_steps_are_divergence(substrate: Substrate, run_id: str) -> None:
    agents.KNOBS["extra_steps"] = 2
    await substrate.start(agents.versioned, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    agents.KNOBS.update(extra_steps=0, wait=False)
    await substrate.resume(agents.versioned, Job(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)

    await expect_error(substrate, run_id, ErrorCode.STEP_DIVERGENCE)


async def test_input_fingerprint_mismatch(substrate: Substrate, run_id: str) -> None:
    agents.KNOBS["fingerprint"] = {"prompt": "v1"}
    await substrate.start(agents.versioned, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    recorded = (await substrate.steps(run_id))[0]
    assert recorded.input_hash == canonical_hash({"prompt": "v1"})
    await substrate.crash(run_id)

    agents.KNOBS["fingerprint"] = {"prompt": "v2"}
    await substrate.resume(agents.versioned, Job(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)

    await expect_error(substrate, run_id, ErrorCode.STEP_INPUT_MISMATCH)


async def test_await_then_emit(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.waiter, Job(key="approval"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    assert await substrate.send_event(run_id, "approval", {"ok": True}) is True

    assert await substrate.result(run_id) == {"ok": True}


async def test_emit_then_await(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.two_waits, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:first")

    # "second" arrives while the run still waits for "first": it must be kept.
    assert await substrate.send_event(run_id, "second", 2) is True
    assert await substrate.send_event(run_id, "first", 1) is True

    assert await substrate.result(run_id) == [1, 2]


async def test_await_timeout(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.waiter, Job(key="approval", timeout=0.3), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.AWAIT_EVENT_TIMEOUT)

    assert "'approval'" in str(error)
    wait = (await substrate.steps(run_id))[0]
    assert (wait.status, wait.error and wait.error.code) == ("failed", "await_event_timeout")


async def test_await_timeout_can_be_handled(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(agents.timeout_handler, Job(timeout=0.2), run_id=run_id)

    assert result == "timed out"


async def test_durable_deadline_holds_across_resume(substrate: Substrate, run_id: str) -> None:
    timeout = 2.0
    started = time.monotonic()
    await substrate.start(agents.waiter, Job(key="approval", timeout=timeout), run_id=run_id)
    first = await substrate.wait_for_step(run_id, "await_event:approval")
    await asyncio.sleep(0.6)
    await substrate.crash(run_id)

    await substrate.resume(agents.waiter, Job(key="approval", timeout=timeout), run_id=run_id)
    resumed_at = time.monotonic()
    await expect_error(substrate, run_id, ErrorCode.AWAIT_EVENT_TIMEOUT)

    # Measured from the first wait: well before a full timeout after the resume.
    assert time.monotonic() - resumed_at < timeout - 0.5
    assert time.monotonic() - started < timeout + 1.0
    wait = (await substrate.steps(run_id))[0]
    assert wait.deadline == first.deadline
    if substrate.local:
        assert wait.attempts == 2  # the resumed worker began the wait again


async def test_first_emit_wins(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.two_waits, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:first")

    assert await substrate.send_event(run_id, "second", {"who": "first"}) is True
    assert await substrate.send_event(run_id, "second", {"who": "second"}) is False
    await substrate.send_event(run_id, "first", None)

    assert await substrate.result(run_id) == [None, {"who": "first"}]


async def test_emit_from_the_run_is_first_emit_wins(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.emitter, Job(key="k"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:finish")

    assert await substrate.send_event(run_id, "k", {"from": "outside"}) is False
    await substrate.send_event(run_id, "finish", None)

    result = await substrate.result(run_id)
    assert result == {"accepted": True, "payload": {"from": "agent"}}


async def test_emit_into_another_run(substrate: Substrate, run_id: str) -> None:
    target = f"{run_id}-target"
    await substrate.start(agents.two_waits, Job(), run_id=target)
    await substrate.wait_for_step(target, "await_event:first")

    await substrate.start(agents.relay, Job(key="second", target=target), run_id=run_id)

    assert await substrate.result(run_id) == [True, False, "run_not_found"]
    await substrate.send_event(target, "first", None)
    assert await substrate.result(target) == [None, {"from": run_id}]


async def test_an_ended_run_takes_no_more_events(substrate: Substrate, run_id: str) -> None:
    await substrate.run(agents.pipeline, Job(), run_id=run_id)

    with pytest.raises(DurableError) as refused:
        await substrate.send_event(run_id, "late", {})

    assert refused.value.code == ErrorCode.RUN_ENDED


async def test_now_and_uuid_are_stable_across_replay(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.clock, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    await asyncio.sleep(0.05)

    await substrate.resume(agents.clock, Job(), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == agents.OBSERVED[0]
    assert agents.CALLS["observe"] == 1


async def test_typed_results_across_replay(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.typed, Job(n=3), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(agents.typed, Job(n=3), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    replayed = await substrate.result(run_id)
    fresh = agents.OBSERVED[0]
    assert replayed == fresh == {"report": "Report", "made_at": "datetime", "pair": "tuple"}
    assert agents.CALLS["make_report"] == 1


async def test_retry_then_success(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(agents.retrying, Job(n=2), run_id=run_id)

    assert result == "ok"
    assert agents.CALLS["flaky"] == 3
    (record,) = await substrate.steps(run_id)
    assert (record.status, record.attempts) == ("completed", 3)


async def test_a_retry_entry_carries_the_error_and_the_delay(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.run(agents.retrying, Job(n=2), run_id=run_id)
    await substrate.run(agents.hinted_agent, Job(key="busy"), run_id=f"{run_id}-hinted")

    retries = [e for e in await substrate.watch(run_id) if e.kind == "step_retry"]
    (hinted,) = [e for e in await substrate.watch(f"{run_id}-hinted") if e.kind == "step_retry"]

    assert [(e.attempt, e.error_type, e.error) for e in retries] == [
        (2, "ConnectionError", "upstream refused attempt 1"),
        (3, "ConnectionError", "upstream refused attempt 2"),
    ]
    # The policy's backoff (10 ms, then 20 ms); Temporal's is as its server timed it.
    assert all(e.delay is not None and 0.01 <= e.delay < 2 for e in retries)
    assert (hinted.error_type, hinted.error) == ("UpstreamBusy", "rate limited, retry in 0.3s")
    assert hinted.delay is not None
    assert 0.3 <= hinted.delay < 2


async def test_retry_after_hint_sets_the_next_delay(substrate: Substrate, run_id: str) -> None:
    started = time.monotonic()

    assert await substrate.run(agents.hinted_agent, Job(key="busy"), run_id=run_id) == "ok"

    assert agents.CALLS["busy"] == 2
    assert time.monotonic() - started >= 0.3  # the hint, not the 10 ms backoff


async def test_non_retryable_hint_fails_the_step_at_once(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.hinted_agent, Job(key="refused"), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.STEP_FAILED)

    assert "UpstreamRefused: the request itself is wrong" in str(error)
    assert agents.CALLS["refused"] == 1


async def test_non_retryable_error(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.rejecting, Job(n=7), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.STEP_FAILED)

    assert "ValueError: value 7 is out of range" in str(error)
    assert agents.CALLS["reject"] == 1
    (record,) = await substrate.steps(run_id)
    assert (record.status, record.attempts) == ("failed", 1)
    assert record.error is not None
    assert record.error.type == "ValueError"


async def test_step_timeout_is_retried_then_fails(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.stalling, Job(), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.STEP_FAILED)

    assert "step timeout of 0.1s" in str(error)
    assert agents.CALLS["stall"] == 2
    (record,) = await substrate.steps(run_id)
    assert record.error is not None
    assert record.error.code == "step_timeout"


async def test_a_call_overrides_the_steps_timeout_and_retry(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(agents.impatient, Job(), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.STEP_FAILED)

    assert "step timeout of 0.1s" in str(error)
    assert agents.CALLS["stall_long"] == 3  # the call's policy, not the step's single attempt


async def test_non_serializable_result(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.unserializable, Job(), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.RESULT_NOT_SERIALIZABLE)

    assert "object" in str(error)
    assert agents.CALLS["opaque"] == 1  # deterministic: never retried
    (record,) = await substrate.steps(run_id)
    assert (record.status, record.result) == ("failed", None)


async def test_recorded_failures_replay_identically(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.survivor, Job(n=3), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(agents.survivor, Job(n=3), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    replayed = await substrate.result(run_id)
    assert replayed == agents.OBSERVED[0]
    assert [entry.split(":")[0] for entry in replayed] == [
        "step_failed",
        "result_not_serializable",
    ]
    assert (agents.CALLS["reject"], agents.CALLS["opaque"]) == (1, 1)


async def test_sleep(substrate: Substrate, run_id: str) -> None:
    started = time.monotonic()

    elapsed = await substrate.run(agents.sleeper, Job(seconds=0.3), run_id=run_id)

    assert float(elapsed) >= 0.3
    assert time.monotonic() - started >= 0.3
    kinds = [(s.intent, s.kind, s.status) for s in await substrate.steps(run_id)]
    assert ("sleep", "timer", "completed") in kinds


async def test_sleep_is_durable_across_resume(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.sleeper, Job(seconds=1.5), run_id=run_id)
    timer = await substrate.wait_for_step(run_id, "sleep")
    await substrate.crash(run_id)

    await substrate.resume(agents.sleeper, Job(seconds=1.5), run_id=run_id)
    await substrate.result(run_id)

    (record,) = [s for s in await substrate.steps(run_id) if s.intent == "sleep"]
    assert record.deadline == timer.deadline
    assert record.completed_at is not None
    assert record.deadline is not None
    # It woke at the recorded deadline, not a full 1.5 s after the resume (>= 0.7 s later).
    assert record.completed_at - record.deadline < timedelta(seconds=0.5)


async def test_completed_run_returns_recorded_result(substrate: Substrate, run_id: str) -> None:
    first = await substrate.run(agents.pipeline, Job(n=1), run_id=run_id)

    again = await substrate.run(agents.pipeline, Job(n=1), run_id=run_id)

    assert again == first
    assert agents.CALLS == {"add_one": 1, "make_report": 1}


async def test_failed_run_stays_failed(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.rejecting, Job(n=1), run_id=run_id)
    await expect_error(substrate, run_id, ErrorCode.STEP_FAILED)

    await substrate.start(agents.rejecting, Job(n=1), run_id=run_id)

    error = await expect_error(substrate, run_id, ErrorCode.RUN_FAILED)
    assert "ValueError" in str(error)
    assert agents.CALLS["reject"] == 1


async def test_event_payload_of_the_wrong_type(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.approval_waiter, Job(key="approval"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    await substrate.send_event(run_id, "approval", {"approved": "maybe"})

    error = await expect_error(substrate, run_id, ErrorCode.EVENT_PAYLOAD_INVALID)
    assert "approved" in str(error)


async def test_declared_event_type_refuses_a_bad_payload(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.gate, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    with pytest.raises(DurableError) as refused:
        await substrate.send_event(run_id, "approval", {"approved": "maybe"})
    assert refused.value.code == ErrorCode.EVENT_PAYLOAD_INVALID
    assert "'approved'" in str(refused.value)

    # The run is unharmed: a good payload still completes it.
    assert await substrate.send_event(run_id, "approval", {"approved": True, "by": "ops"})
    assert await substrate.result(run_id) == "Approval:ops"


async def test_typed_event_payload(substrate: Substrate, run_id: str) -> None:
    await substrate.start(agents.approval_waiter, Job(key="approval"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:approval")

    await substrate.send_event(run_id, "approval", {"approved": True, "by": "ops"})

    approval = await substrate.result(run_id)
    assert isinstance(approval, agents.Approval)
    assert approval.by == "ops"
