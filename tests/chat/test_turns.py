"""Durable chat turns on every substrate, against a real local model server that counts requests.

Each scenario runs on the four local stores (the turn runs in this process) and on
the Temporal dev server (a worker runs it): fresh, replayed, asked twice at once,
failed and asked again, interrupted and asked again, with hooks that raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable import DurableRunLeaseHeldError, RetryPolicy
from durable.chat import (
    AssistantMessage,
    ChatStreamEvent,
    ChatTurnEngine,
    ChatTurnHooks,
    ChatTurnIdentity,
    TurnProducer,
)
from durable_agents.adapters.chat import StoreTurns, run_durable_turn
from durable_agents.agents.chat import model_reply
from tests.chat.conftest import ChatSubstrate
from tests.support.llm_server import ModelServer

Line = dict[str, Any]


async def read(stream: AsyncIterator[bytes]) -> list[Line]:
    return [json.loads(line) async for line in stream]


def text_of(lines: list[Line]) -> str:
    return "".join(
        line["data"]["delta"] for line in lines if line["type"] == "message.part.updated"
    )


def kinds(lines: list[Line]) -> list[str]:
    """The line types, with the text deltas (however many) as one."""
    shown: list[str] = []
    for line in lines:
        if not (line["type"] == "message.part.updated" and shown[-1:] == ["delta"]):
            shown.append("delta" if line["type"] == "message.part.updated" else line["type"])
    return shown


def ask(model: str = "ok", **more: Any) -> TurnProducer:
    return model_reply(model, [{"role": "user", "content": "hello?"}], **more)


class Persisted:
    """A product's store of assistant messages."""

    def __init__(self) -> None:
        self.messages: list[AssistantMessage] = []

    async def persist(self, message: AssistantMessage) -> None:
        self.messages.append(message)


async def first_delta(stream: AsyncIterator[bytes]) -> list[Line]:
    """Read ``stream`` up to its first text delta: the turn is running, mid-answer."""
    lines: list[Line] = []
    async for raw in stream:
        lines.append(json.loads(raw))
        if lines[-1]["type"] == "message.part.updated":
            return lines
    raise AssertionError(f"the turn ended before it streamed any text: {lines}")


async def test_a_fresh_turn_streams_its_answer_and_records_it_as_one_llm_step(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    persisted = Persisted()
    engine = await chat.engine(ChatTurnHooks(persist_assistant_message=persisted.persist))

    lines = await read(engine.run_turn(identity, ask()))

    assert kinds(lines) == ["session.run.started", "delta", "session.run.completed"]
    assert text_of(lines) == "Durable hello"
    assert lines[-1]["data"] == {"sessionId": identity.session_id, "replayed": False}
    assert models.requests["ok"] == 1
    assert models.bodies[0]["messages"] == [{"role": "user", "content": "hello?"}]
    (step,) = await chat.steps(identity.run_id)
    assert (step.kind, step.status, step.intent) == ("llm", "completed", "chat:turn-0")
    assert step.result["text"] == "Durable hello"
    assert [(m.final_text, m.run_id) for m in persisted.messages] == [
        ("Durable hello", f"chat:{identity.session_id}:0")
    ]


async def test_a_completed_turn_replays_as_one_event_without_a_model_request(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    persisted = Persisted()
    hooks = ChatTurnHooks(persist_assistant_message=persisted.persist)
    await read((await chat.engine(hooks)).run_turn(identity, ask()))

    # The answer was lost on its way: the client asks again, here another process.
    again = await read((await chat.engine(hooks)).run_turn(identity, ask()))

    assert again == [
        {"type": "session.run.started",
         "data": {"sessionId": identity.session_id, "tenantId": "acme", "turnIndex": 0}},
        {"type": "result", "data": {"finalText": "Durable hello"}},
        {"type": "session.run.completed",
         "data": {"sessionId": identity.session_id, "replayed": True}},
    ]  # fmt: skip
    assert models.requests["ok"] == 1
    assert len(persisted.messages) == 1  # persisted by the fresh turn only
    assert len(await chat.steps(identity.run_id)) == 1


async def test_a_turn_asked_again_with_another_message_is_refused(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    engine = await chat.engine()
    await read(engine.run_turn(identity, ask()))

    other = model_reply("ok", "something else")
    lines = await read(engine.run_turn(identity, other))

    assert kinds(lines) == ["session.run.started", "error", "session.run.failed"]
    assert lines[1]["data"]["code"] == "manifest_mismatch"
    assert models.requests["ok"] == 1


async def test_a_concurrent_attempt_on_the_same_turn_gets_lease_held(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    first = (await chat.engine()).run_turn(identity, ask("hang-stream-once"))
    try:
        await first_delta(first)  # the first attempt is answering, stalled mid-stream

        lines = await read((await chat.engine()).run_turn(identity, ask("hang-stream-once")))

        assert kinds(lines) == ["session.run.started", "error", "session.run.failed"]
        assert lines[1]["data"]["code"] == "lease_held"
        assert "already in flight" in lines[1]["data"]["message"]
        assert lines[2]["data"]["message"] == lines[1]["data"]["message"]
        assert models.requests["hang-stream-once"] == 1
    finally:
        await first.aclose()  # type: ignore[attr-defined]


async def test_a_failed_turn_runs_again_under_the_same_id(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    # The model answers 500 first, then 200; one attempt per turn, so the first fails.
    producer = ask("flaky", retry=RetryPolicy(maximum_attempts=1))
    persisted = Persisted()
    hooks = ChatTurnHooks(persist_assistant_message=persisted.persist)
    failed = await read((await chat.engine(hooks)).run_turn(identity, producer))
    assert kinds(failed) == ["session.run.started", "error", "session.run.failed"]
    assert "answered 500" in failed[1]["data"]["message"]
    assert failed[1]["data"]["code"] == "step_failed"

    again = await read((await chat.engine(hooks)).run_turn(identity, producer))

    assert kinds(again) == ["session.run.started", "delta", "session.run.completed"]
    assert text_of(again) == "Durable hello"
    assert models.requests["flaky"] == 2
    # The old failure is gone: one step, completed at its first attempt of the new run.
    (step,) = await chat.steps(identity.run_id)
    assert (step.status, step.attempts) == ("completed", 1)
    assert [m.final_text for m in persisted.messages] == ["Durable hello"]


async def test_an_interrupted_turn_runs_again_under_the_same_id(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    first = (await chat.engine()).run_turn(identity, ask("hang-stream-once"))
    seen = await first_delta(first)
    assert text_of(seen) == "Dur"
    await first.aclose()  # type: ignore[attr-defined]  # the client went away mid-answer

    again = await read((await chat.engine()).run_turn(identity, ask("hang-stream-once")))

    assert kinds(again) == ["session.run.started", "delta", "session.run.completed"]
    assert text_of(again) == "Durable hello"
    assert again[-1]["data"]["replayed"] is False
    assert models.requests["hang-stream-once"] == 2


async def test_hooks_that_raise_never_break_the_stream(
    chat: ChatSubstrate,
    identity: ChatTurnIdentity,
    models: ModelServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("the product's database is down")

    async def broken_later(*_: object) -> None:
        raise RuntimeError("the post-processor is down")

    seen: list[str] = []

    def on_event(event: ChatStreamEvent) -> None:
        seen.append(event.type)
        raise RuntimeError("the broadcast is down")

    hooks = ChatTurnHooks(
        persist_assistant_message=broken,
        on_turn_complete=broken_later,
        on_event=on_event,
        transform_final_text=broken,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.ERROR, logger="durable.chat"):
        lines = await read((await chat.engine(hooks)).run_turn(identity, ask()))

    assert kinds(lines) == ["session.run.started", "delta", "session.run.completed"]
    assert text_of(lines) == "Durable hello"
    assert kinds([{"type": t} for t in seen]) == kinds(lines)  # every line went out to it too
    failed = sorted({r.getMessage().split()[3] for r in caplog.records})
    assert failed == [
        "on_event", "on_turn_complete", "persist_assistant_message", "transform_final_text"
    ]  # fmt: skip


async def test_a_transformed_text_is_what_is_persisted_never_what_is_streamed(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    persisted = Persisted()
    completed: list[str] = []

    async def done(message: AssistantMessage) -> None:
        completed.append(message.final_text)

    hooks = ChatTurnHooks(
        persist_assistant_message=persisted.persist,
        on_turn_complete=done,
        transform_final_text=lambda text: text.replace("hello", "[redacted]"),
    )

    lines = await read((await chat.engine(hooks)).run_turn(identity, ask()))

    assert text_of(lines) == "Durable hello"
    assert [m.final_text for m in persisted.messages] == ["Durable [redacted]"]
    assert completed == ["Durable [redacted]"]


async def test_run_durable_turn_tells_final_text_and_replay_after_the_stream(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    runs = await chat.runs()
    turn = run_durable_turn(identity, ask(), **_target(runs))
    events = [event async for event in turn.stream]
    assert (turn.final_text(), turn.replayed()) == ("Durable hello", False)
    assert "".join(e.data["delta"] for e in events if e.data) == "Durable hello"

    again = run_durable_turn(identity, ask(), **_target(runs))
    replayed = [event async for event in again.stream]

    assert replayed == [ChatStreamEvent(type="result", data={"finalText": "Durable hello"})]
    assert (again.final_text(), again.replayed()) == ("Durable hello", True)
    assert models.requests["ok"] == 1


async def test_a_turn_in_flight_raises_lease_held_from_the_stream(
    chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    first = (await chat.engine()).run_turn(identity, ask("hang-stream-once"))
    try:
        await first_delta(first)
        turn = run_durable_turn(identity, ask("hang-stream-once"), **_target(await chat.runs()))

        with pytest.raises(DurableRunLeaseHeldError, match="already in flight"):
            await anext(turn.stream)
    finally:
        await first.aclose()  # type: ignore[attr-defined]


def _target(runs: Any) -> dict[str, Any]:
    return {"store": runs.store} if isinstance(runs, StoreTurns) else {"client": runs.client}


# Only a local turn runs in its caller's process: a caller that dies leaves it to the next.


async def test_a_turn_whose_process_died_is_taken_over_once_its_lease_lapses(
    local_chat: ChatSubstrate, identity: ChatTurnIdentity, models: ModelServer
) -> None:
    chat = local_chat
    dying = await chat.runs()
    assert isinstance(dying, StoreTurns)
    first = ChatTurnEngine(dying).run_turn(identity, ask("hang-stream-once"))
    await first_delta(first)
    # The process dies: its run stops where it was, nothing more is written, and its
    # lease (0.6 s) is left to lapse. (Its stream is never read nor closed again.)
    crashed = dying._running[identity.run_id]
    crashed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await crashed

    early = await read((await chat.engine()).run_turn(identity, ask("hang-stream-once")))
    assert early[1]["data"]["code"] == "lease_held"
    await asyncio.sleep(0.7)
    again = await read((await chat.engine()).run_turn(identity, ask("hang-stream-once")))

    assert kinds(again) == ["session.run.started", "delta", "session.run.completed"]
    # The text the dead attempt showed ("Dur") is shown from the stream, then the rest:
    # once in all, though the model answered it twice.
    assert text_of(again) == "Durable hello"
    assert models.requests["hang-stream-once"] == 2
    (step,) = await chat.steps(identity.run_id)
    assert (step.status, step.attempts) == ("completed", 2)
    await first.aclose()  # type: ignore[attr-defined]
