"""Multi-agent conversations on every substrate, against the real local model server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import DurableError, Lease, LiveEvent, agent_definition, usage_totals
from durable.conversation import (
    ConversationEvent,
    ConversationEvents,
    ConversationResult,
    ConversationRun,
    ConversationState,
    conversation_call,
    conversation_definition,
    turn_id,
)
from durable_agents.agents.conversation import conversation, run_conversation
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import LocalSubstrate, Substrate, TemporalSubstrate
from tests.support.llm_server import ModelServer, model_server
from tests.support.llm_server import catalog as models_on

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("ok", "flaky", "bad-request", "down", "slow", "drop-once", "busy-once")


@pytest.fixture
async def models(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        catalog = models_on(server, MODELS)
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(catalog))
        yield server


@pytest.fixture
def forwarded(monkeypatch: pytest.MonkeyPatch, configured_secret: str) -> str:
    """The user's authorization as the worker is configured with it: the session's secret,
    which the end-of-session search of every Temporal history proves never entered one."""
    authorization = f"Bearer {configured_secret}"
    monkeypatch.setenv("DURABLE_FORWARDED_AUTHORIZATION", authorization)
    return authorization


def _conversation_stream(run_id: str) -> str:
    """A conversation is a child run on every substrate, with its own live stream."""
    return f"{run_id}/conversation-0"


async def _talk(substrate: Substrate, run_id: str, name: str) -> ConversationResult:
    result = await substrate.run(agents.talk, Job(key=name, n=7), run_id=run_id)
    assert isinstance(result, ConversationResult)
    return result


async def test_alternate_turns_until_max_turns(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.debate")

    assert [t.speaker for t in result.transcript] == ["alice", "bob", "alice", "bob"]
    assert (result.halted.kind, result.halted.turns) == ("max_turns", 4)
    child = f"{run_id}/conversation-0"
    assert result.run_id == child
    assert [t.turn_id for t in result.transcript] == [
        turn_id(child, i, s) for i, s in enumerate(["alice", "bob", "alice", "bob"])
    ]
    assert all(t.text == "Durable hello" for t in result.transcript)
    assert models.requests["ok"] == 4
    # Bob sees Alice's turns as the user's, labelled; his own as the assistant's.
    assert models.bodies[3]["messages"] == [
        {"role": "user", "content": "topic 7"},
        {"role": "user", "content": "[alice] Durable hello"},
        {"role": "assistant", "content": "Durable hello"},
        {"role": "user", "content": "[alice] Durable hello"},
    ]


@pytest.mark.parametrize(
    ("name", "speakers"),
    [
        ("conformance.trio", ["ann", "ben", "cy", "ann", "ben"]),
        ("conformance.pairs", ["alice", "alice", "bob", "bob"]),
    ],
)
async def test_round_robin_and_function_turn_orders(
    substrate: Substrate, run_id: str, models: ModelServer, name: str, speakers: list[str]
) -> None:
    result = await _talk(substrate, run_id, name)

    assert [t.speaker for t in result.transcript] == speakers


async def test_a_credit_cap_halts_between_turns(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.budget")

    assert result.turns == 2  # 1.05 cents a turn: the second turn crosses 2 cents
    assert result.halted.kind == "max_credits"
    assert result.halted.spent_cents == pytest.approx(2.1)
    assert result.spent_credits_cents == pytest.approx(2.1)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("conformance.agree", "both said hello"),
        # Async, seeing the last turn, answering with a HaltSignal (the reference's).
        ("conformance.signalled", "bob spoke at turn 1"),
    ],
)
async def test_a_predicate_halts_with_its_reason(
    substrate: Substrate, run_id: str, models: ModelServer, name: str, reason: str
) -> None:
    result = await _talk(substrate, run_id, name)

    assert result.turns == 2
    assert (result.halted.kind, result.halted.reason) == ("predicate", reason)


async def test_a_participant_error_halts_the_conversation(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.refused")

    assert result.turns == 0
    assert (result.halted.kind, result.halted.participant) == ("participant_error", "alice")
    assert "max_tokens is too large" in (result.halted.message or "")
    assert models.requests["bad-request"] == 1  # a 400 is not retried


async def test_a_failed_attempt_is_retried_within_the_turn(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.retried")

    assert [t.attempts for t in result.transcript] == [2, 1]
    assert models.requests["flaky"] == 2
    assert result.halted.kind == "max_turns"


async def test_a_turn_retry_entry_says_why_and_how_long_it_waited(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await _talk(substrate, run_id, "conformance.retried")

    events = await substrate.watch(_conversation_stream(run_id))

    (retry,) = [e for e in events if (e.detail or {}).get("type") == "turn_retry"]
    assert (retry.turn, retry.detail["attempt"]) == (0, 2)  # type: ignore[index]
    assert retry.error_type == "ModelUnavailableError"
    assert "answered 500" in (retry.error or "")
    assert retry.detail["reason"] == retry.error  # type: ignore[index]
    assert retry.delay is not None
    assert 0 <= retry.delay < 5


async def test_the_circuit_breaker_stops_retrying_a_failing_participant(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.breaker")

    # Five retries allowed, but two consecutive failures open alice's circuit.
    assert models.requests["down"] == 2
    assert result.halted.kind == "participant_error"
    assert "circuit is now open" in (result.halted.message or "")


async def test_a_conversation_can_be_a_participant(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.panel")

    panel, judge = result.transcript
    events = await substrate.watch(_conversation_stream(run_id))
    starts = [e for e in events if (e.detail or {}).get("type") == "conversation_start"]
    assert len(starts) == 1  # the inner conversation's own events stay in its own stream
    panel_tokens = [e.text for e in events if e.kind == "token" and e.turn == 0]
    assert panel_tokens == [panel.text]  # the inner conversation as one delta
    assert panel.speaker == "panel"
    assert panel.text == "\n".join(["[alice] Durable hello", "[bob] Durable hello"] * 2)
    assert panel.usage.input_tokens == 4 * 12  # the inner conversation's four turns
    assert judge.text == "Durable hello"
    assert models.requests["ok"] == 5
    inner, outer = models.headers[:4], models.headers[4]
    # The inner conversation's calls are one hop deeper and name the turn they serve.
    assert {h["x-durable-forwarded-depth"] for h in inner} == {"2"}
    assert {h["x-durable-parent-turn-id"] for h in inner} == {panel.turn_id}
    # As the reference does, every nested call carries the top-level conversation's
    # run id; its turn ids are the inner run's own (a child run of the conversation).
    assert {h["x-durable-run-id"] for h in inner} == {result.run_id}
    assert all(h["x-durable-turn-id"].startswith(f"{result.run_id}/conversation-") for h in inner)
    assert outer["x-durable-forwarded-depth"] == "1"


async def test_nesting_beyond_the_maximum_depth_is_refused(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.regress")

    assert result.halted.kind == "participant_error"
    assert "beyond the maximum of 4" in (result.halted.message or "")


async def test_the_parent_run_counts_the_conversations_usage(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await _talk(substrate, run_id, "conformance.debate")

    (step,) = await substrate.steps(run_id)
    assert (step.kind, step.intent) == ("conversation", "conversation:conformance.debate")
    totals = usage_totals([step])
    assert totals == {"input_tokens": 48, "output_tokens": 12, "cost": pytest.approx(0.042)}
    if isinstance(substrate, TemporalSubstrate):
        assert await substrate.client.usage(run_id) == totals


async def test_a_crashed_conversation_resumes_after_its_last_committed_turn(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await substrate.start(agents.talk, Job(key="conformance.slow"), run_id=run_id)
    for _ in range(1000):  # turns 0 and 1 committed, turn 2 (alice, slow) under way
        if models.requests["slow"] >= 2:
            break
        await asyncio.sleep(0.01)
    await substrate.crash(run_id)

    await substrate.resume(agents.talk, Job(key="conformance.slow"), run_id=run_id)
    result = await substrate.result(run_id)

    assert [t.speaker for t in result.transcript] == ["alice", "bob", "alice", "bob"]
    asked = Counter(seen["x-durable-turn-id"] for seen in models.headers)
    turns = [t.turn_id for t in result.transcript]
    # Committed turns were asked for once; the turn cut off by the crash may be asked again.
    assert [asked[t] for t in (turns[0], turns[1], turns[3])] == [1, 1, 1]
    assert asked[turns[2]] in (1, 2)
    # Watchers saw each turn's text once, the turn asked again included.
    events = await substrate.watch(_conversation_stream(run_id))
    for turn in result.transcript:
        pieces = [e.text or "" for e in events if e.kind == "token" and e.turn == turn.index]
        assert "".join(pieces) == turn.text
    said = [e.detail or {} for e in events if e.kind == "conversation"]
    assert [d["type"] for d in said].count("conversation_start") == 1
    if substrate.local:
        # A local resume replays the committed turns and announces itself once, with
        # them, before the turn it runs again. (On Temporal a new worker's replay is
        # invisible: the stream is rebuilt as it was.)
        (resumed,) = [d for d in said if d["type"] == "conversation_resumed"]
        assert [t["speaker"] for t in resumed["transcript"]] == ["alice", "bob"]
        kinds = [d["type"] for d in said]
        assert kinds.index("conversation_resumed") < len(kinds) - 1 - kinds[::-1].index(
            "turn_start"
        )


async def test_an_abort_event_halts_the_conversation_before_its_next_turn(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    job = Job(key="conformance.slow")
    await substrate.start(agents.talk_until_stopped, job, run_id=run_id)
    for _ in range(400):
        if models.requests["slow"] >= 1:
            break
        await asyncio.sleep(0.01)

    assert await substrate.send_event(run_id, "stop", None)
    result = await substrate.result(run_id)

    assert result.halted.kind == "abort"
    assert result.turns < 4
    assert models.requests["slow"] + models.requests["ok"] == result.turns


def _converse_in_child(substrate: LocalSubstrate, run_id: str, name: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.conformance.child", "converse"]
    return subprocess.Popen(
        [*command, substrate.name, substrate.location, run_id, name], cwd=ROOT, text=True
    )


@pytest.mark.local_only(reason="kills a real worker process holding a local store")
async def test_sigkill_mid_conversation_then_resume_from_the_records(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    assert isinstance(substrate, LocalSubstrate)
    if substrate.name == "memory":
        pytest.skip("an in-memory store does not outlive the process it is killed with")
    child = _converse_in_child(substrate, run_id, "conformance.slow")
    try:
        for _ in range(1000):  # two turns committed, the third under way
            if models.requests["slow"] >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (models.requests["slow"], models.requests["ok"]) == (2, 1)

    await substrate.resume(agents.talk, Job(key="conformance.slow"), run_id=run_id)
    result = await substrate.result(run_id)

    assert [t.speaker for t in result.transcript] == ["alice", "bob", "alice", "bob"]
    # Turns 0 and 1 were committed before the kill and are not asked again; turn 2,
    # cut off mid-call, is asked again, then turn 3.
    assert (models.requests["slow"], models.requests["ok"]) == (3, 2)


async def test_each_call_carries_correlation_headers_and_forwards_only_what_it_may(
    substrate: Substrate, run_id: str, models: ModelServer, forwarded: str
) -> None:
    await _talk(substrate, run_id, "conformance.owned")

    child = f"{run_id}/conversation-0"
    alice, bob = models.headers
    for index, (seen, speaker) in enumerate([(alice, "alice"), (bob, "bob")]):
        assert seen["x-durable-forwarded-depth"] == "1"
        assert seen["x-durable-run-id"] == child
        assert seen["x-durable-turn-id"] == turn_id(child, index, speaker)
        assert seen["x-durable-speaker"] == speaker
        assert seen["authorization"].startswith("Bearer partner-secret-")  # the model's key
    assert alice["x-durable-forwarded-authorization"] == forwarded
    assert "x-durable-forwarded-authorization" not in bob  # agent-owned: never forwarded


async def test_the_conversation_streams_its_turns_and_tokens_live(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    await _talk(substrate, run_id, "conformance.debate")

    events = await substrate.watch(_conversation_stream(run_id))

    conversation = [e.detail or {} for e in events if e.kind == "conversation"]
    kinds = [d["type"] for d in conversation]
    assert kinds[0] == "conversation_start"
    assert kinds[-1] == "conversation_end"
    assert kinds.count("turn_start") == 4
    ends = [d for d in conversation if d["type"] == "turn_end"]
    assert [d["speaker"] for d in ends] == ["alice", "bob", "alice", "bob"]
    tokens = [e for e in events if e.kind == "token"]
    assert "".join(e.text or "" for e in tokens) == "Durable hello" * 4


async def test_an_abort_key_that_is_no_event_key_is_refused(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    job = Job(key="conformance.debate", marker="stop\n")
    await substrate.start(agents.talk_until_stopped, job, run_id=run_id)

    # Locally the agent's own ValueError; on Temporal the run failed with it.
    with pytest.raises(
        (ValueError, DurableError), match="abort_on event key 'stop\\\\n' contains the control"
    ):
        await substrate.result(run_id)
    assert models.requests["ok"] == 0  # refused before any turn


# What the two implementations did differently, now one implementation on every substrate.


def _retries(events: list[LiveEvent]) -> list[LiveEvent]:
    return [e for e in events if (e.detail or {}).get("type") == "turn_retry"]


@pytest.mark.parametrize(
    ("name", "model", "delay"),
    [
        # Retry-After honoured: the server's retry-after-ms (200) replaces a 10 ms backoff.
        ("conformance.told_to_wait", "busy-once", 0.2),
        # A backoff function of the failed attempt (the reference's), jitter off.
        ("conformance.paced", "flaky", 0.3),
    ],
)
async def test_a_retried_turn_waits_what_it_says(
    substrate: Substrate, run_id: str, models: ModelServer, name: str, model: str, delay: float
) -> None:
    result = await _talk(substrate, run_id, name)

    assert [t.attempts for t in result.transcript] == [2, 1]
    first, second = models.arrivals[model][:2]
    assert second - first >= delay
    (retry,) = _retries(await substrate.watch(_conversation_stream(run_id)))
    assert retry.delay == delay


async def test_a_durable_error_in_a_turn_is_final(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    # A worker that does not share the blob store the transcript was stored in.
    state = ConversationState(
        transcript=[], started_at=datetime(2026, 1, 1, tzinfo=UTC), transcript_ref="0" * 64,
        breakers={},
    )  # fmt: skip
    run = ConversationRun(conversation="conformance.debate", seed="topic 7", state=state)

    result = await substrate.run(conversation, run, run_id=run_id)

    assert (result.halted.kind, result.halted.participant) == ("participant_error", "alice")
    message = result.halted.message or ""
    assert "is not in" in message  # DurableStoreError: the blob is missing
    assert "after 1 attempt(s)" in message  # three allowed, none retried
    assert "circuit" not in message  # not the participant's fault
    assert models.requests["ok"] == 0
    assert _retries(await substrate.watch(run_id)) == []


async def test_the_stream_reads_back_as_the_protocols_typed_events(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.debate")

    reader = ConversationEvents(result.run_id)
    entries = await substrate.watch(_conversation_stream(run_id))
    events = [event for entry in entries if (event := reader.read(entry)) is not None]

    assert events[0].type == "conversation_start"
    assert (events[-1].type, events[-1].result) == ("conversation_end", result)
    assert all(event.timestamp is not None for event in events)
    deltas = [event for event in events if event.type == "turn_text_delta"]
    for turn in result.transcript:
        said = [d for d in deltas if d.index == turn.index]
        assert {(d.speaker, d.turn_id) for d in said} == {(turn.speaker, turn.turn_id)}
        assert "".join(d.text or "" for d in said) == turn.text


# Parity with the reference conversation API.


async def test_the_reference_default_does_not_retry_an_answer_the_server_gave(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.unretried")

    assert result.turns == 0
    assert result.halted.kind == "participant_error"
    assert "answered 500" in (result.halted.message or "")
    assert "after 1 attempt(s)" in (result.halted.message or "")
    assert models.requests["flaky"] == 1


async def test_the_reference_default_retries_a_cut_connection(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.dropped")

    assert [t.attempts for t in result.transcript] == [2, 1]
    assert (models.requests["drop-once"], models.requests["ok"]) == (2, 1)


async def test_a_participants_own_call_policy_overrides_the_default(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    result = await _talk(substrate, run_id, "conformance.overridden")

    (alice,) = result.transcript  # her own policy retried her 500
    assert alice.attempts == 2
    # Bob's default policy did not retry his.
    assert (result.halted.kind, result.halted.participant) == ("participant_error", "bob")
    assert (models.requests["flaky"], models.requests["down"]) == (2, 1)


async def test_auth_source_may_decide_turn_by_turn(
    substrate: Substrate, run_id: str, models: ModelServer, forwarded: str
) -> None:

    await _talk(substrate, run_id, "conformance.decided")

    sent = [seen.get("x-durable-forwarded-authorization") for seen in models.headers]
    assert sent == [forwarded, forwarded, None]  # alice, bob, then alice paying herself


async def _standalone(
    substrate: Substrate, name: str, run_id: str, **options: Any
) -> ConversationResult:
    if isinstance(substrate, TemporalSubstrate):
        options["client"] = substrate.client
    else:
        assert isinstance(substrate, LocalSubstrate)
        options["store"] = substrate.store
    definition = conversation_definition(name)
    return await run_conversation(definition, "topic 7", run_id=run_id, **options)


async def test_a_standalone_conversation_speaks_the_reference_headers(
    substrate: Substrate, run_id: str, models: ModelServer, forwarded: str
) -> None:
    inbound = {
        "Traceparent": "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
        "x-tenant": "acme",
        "x-not-chosen": "stays here",
        "x-tangle-forwarded-depth": "1",  # the caller is itself one hop from the origin
        "x-tangle-turnid": "caller.t3.planner",
    }
    seen: list[ConversationEvent] = []

    result = await _standalone(
        substrate, "conformance.gateway", run_id, headers=inbound, on_event=seen.append
    )

    assert result.run_id == run_id
    for index, (headers, speaker) in enumerate(zip(models.headers, ["alice", "bob"], strict=True)):
        assert headers["traceparent"] == inbound["Traceparent"]
        assert headers["x-tenant"] == "acme"
        assert "x-not-chosen" not in headers
        assert headers["x-tangle-forwarded-depth"] == "2"
        assert headers["x-tangle-runid"] == run_id
        assert headers["x-tangle-turnid"] == turn_id(run_id, index, speaker)
        assert headers["x-tangle-parent-turnid"] == "caller.t3.planner"
        assert headers["x-tangle-speaker"] == speaker
        assert headers["x-tangle-forwarded-authorization"] == forwarded
        assert not [name for name in headers if name.startswith("x-durable-")]
    kinds = [event.type for event in seen]
    assert (kinds[0], kinds[-1]) == ("conversation_start", "conversation_end")
    assert "turn_text_delta" in kinds


async def _begun_by_the_journal_era(substrate: LocalSubstrate, run_id: str, job: Job) -> Lease:
    """Run ``run_id`` of ``talk`` as the journal-era library left it: its conversation
    step begun under the fingerprint conversations had then, its worker gone."""
    talk = agent_definition(agents.talk)
    begun = await substrate.store.start_or_resume(
        run_id=run_id, agent=talk.name, manifest=talk.manifest(job), worker_id="old",
        lease_for=timedelta(0),
    )  # fmt: skip
    assert begun.lease is not None
    intent, fingerprint = conversation_call(
        conversation_definition(job.key), f"topic {job.n}", None
    )
    await substrate.store.begin_step(
        begun.lease, step_index=0, intent=intent, kind="conversation", input_hash=fingerprint
    )
    return begun.lease


@pytest.mark.local_only(reason="a run recorded by the journal-era local store resumes there")
async def test_a_conversation_begun_before_child_runs_resumes_as_one(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    assert isinstance(substrate, LocalSubstrate)
    job = Job(key="conformance.debate", n=7)
    # What the previous version recorded when it began the conversation, and no more.
    await _begun_by_the_journal_era(substrate, run_id, job)

    await substrate.start(agents.talk, job, run_id=run_id)
    result = await substrate.result(run_id)

    assert result.turns == 4  # started over as a child run: no input mismatch at its position
    assert result.run_id == f"{run_id}/conversation-0"


@pytest.mark.local_only(reason="a run recorded by the journal-era local store resumes there")
async def test_a_conversation_finished_before_child_runs_replays_its_result(
    substrate: Substrate, run_id: str, models: ModelServer
) -> None:
    assert isinstance(substrate, LocalSubstrate)
    job = Job(key="conformance.debate", n=7)
    first = await substrate.run(agents.talk, job, run_id=f"{run_id}-model")
    # The previous version recorded the conversation's result itself as the step's result.
    lease = await _begun_by_the_journal_era(substrate, run_id, job)
    await substrate.store.complete_step(lease, step_index=0, result=first.model_dump(mode="json"))
    asked = models.requests["ok"]

    result = await substrate.run(agents.talk, job, run_id=run_id)

    assert result == first
    assert models.requests["ok"] == asked  # replayed, not asked again
    assert usage_totals(await substrate.steps(run_id))["input_tokens"] == 48
