"""Model calls as durable steps, on every substrate, against a real local model server.

The API key is the session's configured secret (``PARTNER_API_KEY``): the
session-end search of every Temporal history proves it never enters one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from durable import DurableError, ErrorCode, LiveEvent, usage_totals
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import Substrate, TemporalSubstrate
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on

MODELS = (
    "ok", "flaky", "bad-request", "unauthorized", "malformed", "hang-once", "busy-once",
    "drop-once", "hang-stream-once", "rate-limited-once", "hang-stream-heartbeat", "one-shot",
    "no-usage", "no-usage-whole", "hang-headers-heartbeat",
)  # fmt: skip


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        catalog = models_on(server, MODELS)
        catalog["one-shot"]["model"] = "flaky"  # 500, then 200
        catalog["hang-once"]["headers_deadline"] = 0.3
        catalog["hang-stream-once"]["idle_timeout"] = 0.3
        # Served like hang-stream-once, with an idle timeout longer than the call's heartbeat.
        catalog["hang-stream-heartbeat"]["model"] = "hang-stream-once"
        catalog["hang-stream-heartbeat"]["idle_timeout"] = 3.0
        catalog["hang-headers-heartbeat"].update(model="hang-once", headers_deadline=3.0)
        # A server that reports usage only without streaming, called that way.
        catalog["no-usage-whole"].update(model="no-usage", stream=False)
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(catalog))
        yield server


async def test_a_model_call_returns_text_usage_and_cost(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await substrate.run(agents.ask, Job(key="ok", n=1), run_id=run_id)

    assert result == {"text": "Durable hello", "tokens": [12, 3], "cost": 0.0105}
    assert models.requests["ok"] == 1
    assert models.authorizations[0].startswith("Bearer partner-secret-")
    assert models.bodies[0]["messages"] == [{"role": "user", "content": "question 1"}]


async def test_a_failed_attempt_is_retried_by_the_policy(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await substrate.run(agents.ask, Job(key="flaky"), run_id=run_id)

    assert result["text"] == "Durable hello"
    assert models.requests["flaky"] == 2  # 500, then 200
    (record,) = await substrate.steps(run_id)
    assert (record.status, record.attempts) == ("completed", 2)


async def test_a_refused_request_fails_at_once_with_the_servers_message(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="bad-request"), run_id=run_id)

    with pytest.raises(DurableError) as failed:
        await substrate.result(run_id)

    assert failed.value.code == ErrorCode.STEP_FAILED
    assert "max_tokens is too large: 999999" in str(failed.value)
    assert models.requests["bad-request"] == 1


async def test_an_unknown_model_is_named(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="no-such-model"), run_id=run_id)

    with pytest.raises(DurableError, match="no model named 'no-such-model'"):
        await substrate.result(run_id)


async def test_the_scripted_model_needs_no_endpoint(substrate: Substrate, run_id: str) -> None:
    result = await substrate.run(agents.ask, Job(key="scripted", n=4), run_id=run_id)

    assert result["text"] == "[scripted model] You said: question 4"


async def test_a_resumed_run_never_calls_the_model_again(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="ok", marker="go"), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    await substrate.resume(agents.ask, Job(key="ok", marker="go"), run_id=run_id)
    await substrate.send_event(run_id, "go", None)

    assert (await substrate.result(run_id))["text"] == "Durable hello"
    assert models.requests["ok"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        "hang-once",  # no headers: the attempt is abandoned at its deadline
        "busy-once",  # 503 with retry-after-ms: the next attempt waits as asked
        "drop-once",  # the connection is cut mid-stream
        "hang-stream-once",  # the stream stalls after a chunk: the idle timeout ends it
    ],
)
async def test_a_transient_fault_costs_one_attempt(
    substrate: Substrate, run_id: str, models: ModelServer, fault: str
) -> None:
    result = await substrate.run(agents.ask, Job(key=fault), run_id=run_id)

    assert result["text"] == "Durable hello"
    assert models.requests[fault] == 2
    (record,) = await substrate.steps(run_id)
    assert record.attempts == 2
    tokens = [e for e in await substrate.watch(run_id) if e.kind == "token"]
    assert "".join(e.text or "" for e in tokens) == "Durable hello"  # none shown twice


async def test_a_rate_limited_call_waits_as_long_as_the_server_asks(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await substrate.run(agents.ask, Job(key="rate-limited-once"), run_id=run_id)

    assert result["text"] == "Durable hello"
    first, second = models.arrivals["rate-limited-once"]
    # 429 with Retry-After: 2, where the retry policy alone would have waited 1 s.
    assert second - first >= 1.95
    (record,) = await substrate.steps(run_id)
    assert record.attempts == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("unauthorized", "Incorrect API key provided"),
        ("malformed", "not JSON"),
    ],
)
async def test_a_permanent_fault_fails_at_once(
    substrate: Substrate, run_id: str, models: ModelServer, fault: str, message: str
) -> None:
    await substrate.start(agents.ask, Job(key=fault), run_id=run_id)

    with pytest.raises(DurableError, match=message):
        await substrate.result(run_id)
    assert models.requests[fault] == 1


async def test_a_runs_usage_adds_up_its_model_calls(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.run(agents.ask_twice, Job(key="ok"), run_id=run_id)

    steps = await substrate.steps(run_id)
    assert [s.kind for s in steps] == ["llm", "llm"]
    totals = usage_totals(steps)
    assert totals == {"input_tokens": 24, "output_tokens": 6, "cost": pytest.approx(0.021)}
    if isinstance(substrate, TemporalSubstrate):
        assert await substrate.client.usage(run_id) == totals  # also in the run's memo


async def test_usage_a_server_never_reported_is_unknown_never_zero(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await substrate.run(agents.ask, Job(key="no-usage"), run_id=run_id)

    assert result == {"text": "Durable hello", "tokens": [None, None], "cost": None}
    totals = usage_totals(await substrate.steps(run_id))
    assert totals == {"input_tokens": None, "output_tokens": None, "cost": None}
    if isinstance(substrate, TemporalSubstrate):
        assert await substrate.client.usage(run_id) == totals  # also in the run's memo


async def test_a_model_set_not_to_stream_reports_its_usage(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await substrate.run(agents.ask, Job(key="no-usage-whole"), run_id=run_id)

    assert result == {"text": "Durable hello", "tokens": [12, 3], "cost": 0.0105}
    assert models.bodies[-1]["stream"] is False
    totals = usage_totals(await substrate.steps(run_id))
    assert totals == {"input_tokens": 12, "output_tokens": 3, "cost": pytest.approx(0.0105)}


def _contiguous(events: list[LiveEvent]) -> bool:
    """Token entries follow each other in the text: each starts where the last ended.

    Fragments may be joined into fewer entries (Temporal sends one per batch)."""
    position = 0
    for event in (e for e in events if e.kind == "token"):
        if event.offset != position:
            return False
        position += len(event.text or "")
    return True


def _text(events: list[LiveEvent]) -> str:
    return "".join(e.text or "" for e in events if e.kind == "token")


async def test_a_watcher_sees_steps_tokens_and_waits_as_they_happen(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="ok", marker="go"), run_id=run_id)
    watching = asyncio.create_task(substrate.watch(run_id))
    await substrate.wait_for_step(run_id, "await_event:go")
    await asyncio.sleep(0.3)
    assert not watching.done()  # the run is still waiting, so is the watcher

    await substrate.send_event(run_id, "go", None)
    await substrate.result(run_id)
    events = await watching

    kinds = [e.kind for e in events if e.kind != "token"]
    assert kinds == [
        "step_started", "step_completed", "waiting", "event_received", "run_completed"
    ]  # fmt: skip
    assert (events[0].step, events[0].intent) == (0, "ask the model")
    assert _text(events) == "Durable hello"
    assert _contiguous(events)
    assert {e.step for e in events if e.kind == "token"} == {0}
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert all(e.at is not None for e in events)


async def test_a_retried_model_call_streams_its_text_once(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.run(agents.ask, Job(key="drop-once"), run_id=run_id)

    events = await substrate.watch(run_id)  # after the end: the whole stream, then stop

    assert models.requests["drop-once"] == 2  # the first stream was cut after "Dur"
    assert _text(events) == "Durable hello"
    tokens = [e for e in events if e.kind == "token"]
    assert tokens[0].text == "Dur"  # the first attempt's only fragment, shown once
    assert _contiguous(events)
    retry = [e for e in events if e.kind == "step_retry"]
    assert [(e.step, e.attempt, e.intent) for e in retry] == [(0, 2, "ask the model")]
    assert events[-1].kind == "run_completed"


async def test_a_watcher_picks_up_after_the_last_entry_it_saw(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.run(agents.ask, Job(key="ok"), run_id=run_id)
    everything = await substrate.watch(run_id)

    rest = await substrate.watch(run_id, after=everything[1].seq)

    assert rest == everything[2:]


async def test_a_failed_run_ends_its_stream_with_the_error(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="bad-request"), run_id=run_id)
    with pytest.raises(DurableError):
        await substrate.result(run_id)

    events = await substrate.watch(run_id)

    assert [e.kind for e in events] == ["step_started", "step_failed", "run_failed"]
    assert "max_tokens is too large" in (events[1].error or "")
    assert "max_tokens is too large" in (events[2].error or "")


async def test_watching_an_unknown_run_is_refused(substrate: Substrate) -> None:
    with pytest.raises(DurableError) as refused:
        await substrate.watch("no-such-run")

    assert refused.value.code == ErrorCode.RUN_NOT_FOUND


@pytest.mark.parametrize(
    ("model", "served_as"),
    [
        ("hang-stream-heartbeat", "hang-stream-once"),  # silent after a chunk: idle_timeout
        ("hang-headers-heartbeat", "hang-once"),  # no headers: headers_deadline
    ],
)
async def test_a_silent_model_outlives_the_calls_heartbeat_until_its_own_clock(
    substrate: Substrate, run_id: str, models: ModelServer, model: str, served_as: str
) -> None:
    # The step heartbeats in the background, so a model silent for longer than the
    # call's heartbeat (1 s) is not cut off by it, on any substrate: the model's own
    # clock (3 s: idle_timeout or headers_deadline) ends the attempt, and the retry answers.
    job = Job(key=model, heartbeat=1.0)
    result = await substrate.run(agents.ask, job, run_id=run_id)

    assert result["text"] == "Durable hello"
    first, second = models.arrivals[served_as]
    assert second - first >= 3.0
    (record,) = await substrate.steps(run_id)
    assert record.attempts == 2


async def test_a_models_own_retry_policy_applies_to_its_calls(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.ask, Job(key="one-shot"), run_id=run_id)

    with pytest.raises(DurableError, match="The server had an error"):
        await substrate.result(run_id)
    assert models.requests["flaky"] == 1  # the 500 was not retried: one attempt for this model


@pytest.mark.parametrize(
    ("model", "status", "waited"),
    [("flaky", "answered 500", 0.0), ("busy-once", "answered 503", 0.2)],
)
async def test_a_retry_entry_says_why_and_how_long_it_waited(
    substrate: Substrate, run_id: str, models: ModelServer, model: str, status: str, waited: float
) -> None:
    await substrate.run(agents.ask, Job(key=model), run_id=run_id)

    events = await substrate.watch(run_id)

    (retry,) = [e for e in events if e.kind == "step_retry"]
    assert (retry.attempt, retry.error_type) == (2, "ModelUnavailableError")
    assert status in (retry.error or "")
    assert "partner-secret" not in retry.model_dump_json()
    # The policy's delay (10 ms), or the server's retry-after-ms (200 ms) when it sends one.
    assert retry.delay is not None
    assert waited <= retry.delay < waited + 2
