"""The chat-turn pieces on their own: identities, lines, and every way a turn is refused.

The turns here run on the memory store with the offline ``scripted`` model; the
scenarios on every substrate are in ``test_turns``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from durable import (
    MAX_NAME_LENGTH,
    DurableRunFailedError,
    RunView,
    Started,
)
from durable.chat import (
    ChatStreamEvent,
    ChatTurn,
    ChatTurnEngine,
    ChatTurnIdentity,
    ClientTurns,
    TurnProducer,
    chat_run_id,
)
from durable_agents.adapters.chat import StoreTurns, run_durable_turn
from durable_agents.adapters.local import InMemoryStore
from durable_agents.agents.chat import model_reply


@pytest.fixture
async def store() -> AsyncIterator[InMemoryStore]:
    store = InMemoryStore()
    yield store
    await store.close()


def turn(n: int = 0) -> ChatTurnIdentity:
    return ChatTurnIdentity(tenant_id="acme", session_id="s1", turn_index=n)


async def read(stream: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in stream]


def test_a_turns_run_id_is_chat_session_turn() -> None:
    assert turn(7).run_id == chat_run_id("s1", 7) == "chat:s1:7"


@pytest.mark.parametrize(
    "fields",
    [
        {"session_id": "s\n1"},  # a control character: ids are printed in logs
        {"session_id": "s" * MAX_NAME_LENGTH},  # its run id would be too long
        {"tenant_id": ""},
        {"turn_index": -1},
    ],
)
def test_a_bad_identity_is_refused_where_it_is_made(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChatTurnIdentity(**{"tenant_id": "acme", "session_id": "s1", "turn_index": 0, **fields})


def test_a_line_without_data_leaves_data_out() -> None:
    assert ChatStreamEvent(type="ping").ndjson() == b'{"type":"ping"}\n'


def test_run_durable_turn_needs_exactly_one_substrate(store: InMemoryStore) -> None:
    with pytest.raises(ValueError, match="exactly one of store="):
        run_durable_turn(turn(), model_reply("scripted", "hi"))
    with pytest.raises(ValueError, match="exactly one of store="):
        run_durable_turn(turn(), model_reply("scripted", "hi"), store=store, client=object())  # type: ignore[arg-type]


async def test_an_engine_builds_the_producer_from_the_request(store: InMemoryStore) -> None:
    engine: ChatTurnEngine[str] = ChatTurnEngine(
        StoreTurns(store), produce=lambda identity, message: model_reply("scripted", message)
    )

    lines = await read(engine.run_turn(turn(), "ping"))

    assert lines[-1]["type"] == "session.run.completed"
    deltas = "".join(line["data"]["delta"] for line in lines[1:-1])
    assert deltas == "[scripted model] You said: ping"


async def test_a_request_the_engine_cannot_turn_into_a_producer_fails_the_turn(
    store: InMemoryStore,
) -> None:
    def broken(identity: ChatTurnIdentity, message: str) -> TurnProducer:
        raise LookupError(f"no session history for {identity.session_id}")

    without = await read(ChatTurnEngine(StoreTurns(store)).run_turn(turn(), "ping"))
    failing = await read(ChatTurnEngine(StoreTurns(store), produce=broken).run_turn(turn(), "x"))

    assert [line["type"] for line in without] == [
        "session.run.started", "error", "session.run.failed"
    ]  # fmt: skip
    assert "pass a TurnProducer, or give the engine produce=" in without[1]["data"]["message"]
    assert "code" not in without[1]["data"]  # not a durable error
    assert failing[1]["data"] == {"message": "no session history for s1"}
    assert await store.load_run("chat:s1:0") is None  # nothing was started


@pytest.mark.parametrize(
    ("producer", "message"),
    [
        (TurnProducer(step="chat-tests.two_arguments", input=1), "takes 2 arguments"),
        (
            TurnProducer(step="chat-tests.no_text", input=4),
            "returned a value of type int, which has no text",
        ),
        (TurnProducer(step="llm.chat", input={"model": "scripted"}), "messages"),
    ],
    ids=["two-arguments", "no-text", "input-of-another-type"],
)
async def test_a_producer_that_does_not_fit_fails_the_turn_saying_why(
    store: InMemoryStore, producer: TurnProducer, message: str
) -> None:
    import tests.chat.agents  # noqa: F401  (registers the producers)

    lines = await read(ChatTurnEngine(StoreTurns(store)).run_turn(turn(), producer))

    assert [line["type"] for line in lines] == [
        "session.run.started",
        "error",
        "session.run.failed",
    ]
    assert message in lines[1]["data"]["message"]
    run = await store.load_run("chat:s1:0")
    assert run is not None
    assert run.status == "failed"


async def test_a_caller_cancelled_mid_turn_cancels_the_turn(store: InMemoryStore) -> None:
    engine = ChatTurnEngine(StoreTurns(store, poll_interval=0.02))
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for line in engine.run_turn(turn(), model_reply("scripted", "a b c d e f g h")):
            if b"message.part.updated" in line:
                first_delta.set()

    reading = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 5)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading

    run = await store.load_run("chat:s1:0")
    assert run is not None
    assert run.status == "cancelled"
    assert run.cancel_requested == "the caller stopped reading the turn"


class RecordedClient:
    """A test double of a ``DurableClient`` that found the turn failed, and kept it so
    (as a run with child runs is kept), to drive ``ClientTurns`` down that branch."""

    async def start(self, agent: Any, input: Any, **options: Any) -> Started:
        assert options["retry_failed"] is True
        return Started(run_id=options["run_id"], created=False)

    async def describe(self, run_id: str) -> RunView:
        return RunView(run_id=run_id, agent="chat.turn", status="failed", error="it broke")

    async def result(self, run_id: str) -> Any:
        raise DurableRunFailedError(f"run {run_id!r} failed: it broke")


async def test_a_turn_that_stayed_failed_raises_its_failure_through_a_client() -> None:
    runs = ClientTurns(RecordedClient())  # type: ignore[arg-type]

    with pytest.raises(DurableRunFailedError, match="it broke"):
        await runs.begin(ChatTurn(identity=turn(), produce=model_reply("scripted", "hi")))


def test_a_client_caller_needs_the_chat_turn_agent_registered() -> None:
    code = "from durable.chat import ClientTurns; ClientTurns(object())"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert ran.returncode != 0
    assert "import durable_agents.agents.chat here" in ran.stderr
