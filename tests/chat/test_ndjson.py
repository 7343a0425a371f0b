"""The NDJSON bytes of a chat turn, exactly, on every substrate.

The offline ``scripted`` model answers from the prompt, so the text, non-ASCII
included, is known to the byte without a model server.
"""

from __future__ import annotations

import json

from durable.chat import NDJSON, ChatTurnIdentity, TurnProducer
from durable_agents.agents.chat import model_reply
from tests.chat.conftest import ChatSubstrate

ANSWER = "[scripted model] You said: héllo ☃"


def started(identity: ChatTurnIdentity) -> bytes:
    return (
        f'{{"type":"session.run.started","data":{{"sessionId":"{identity.session_id}",'
        f'"tenantId":"acme","turnIndex":{identity.turn_index}}}}}\n'
    ).encode()


def completed(identity: ChatTurnIdentity, replayed: bool) -> bytes:
    flag = "true" if replayed else "false"
    return (
        f'{{"type":"session.run.completed","data":{{"sessionId":"{identity.session_id}",'
        f'"replayed":{flag}}}}}\n'
    ).encode()


async def test_a_fresh_turn_and_its_replay_byte_for_byte(
    chat: ChatSubstrate, identity: ChatTurnIdentity
) -> None:
    engine = await chat.engine()
    assert engine.content_type == NDJSON == "application/x-ndjson"
    producer = model_reply("scripted", "héllo ☃")

    fresh = [line async for line in engine.run_turn(identity, producer)]

    assert fresh[0] == started(identity)
    assert fresh[-1] == completed(identity, replayed=False)
    deltas = fresh[1:-1]
    assert deltas  # the answer streamed, in as many pieces as the substrate sent
    prefix, suffix = b'{"type":"message.part.updated","data":{"delta":', b"}}\n"
    assert all(d.startswith(prefix) and d.endswith(suffix) for d in deltas)
    assert all(d.count(b"\n") == 1 for d in deltas)
    assert "".join(json.loads(d[len(prefix) : -len(suffix)]) for d in deltas) == ANSWER
    joined = b"".join(deltas)
    assert "é".encode() in joined  # UTF-8 as is, never \u escapes
    assert "☃".encode() in joined
    assert b"\\u" not in joined

    replay = [line async for line in (await chat.engine()).run_turn(identity, producer)]

    assert replay == [
        started(identity),
        f'{{"type":"result","data":{{"finalText":"{ANSWER}"}}}}\n'.encode(),
        completed(identity, replayed=True),
    ]


async def test_a_failed_turn_byte_for_byte(chat: ChatSubstrate, run_id: str) -> None:
    identity = ChatTurnIdentity(tenant_id="acme", session_id=run_id, turn_index=3)
    producer = TurnProducer(step="no.such.step", input={})

    lines = [line async for line in (await chat.engine()).run_turn(identity, producer)]

    message = (
        f"chat turn 'chat:{run_id}:3' is produced by the step 'no.such.step', which is not "
        "registered in this worker; import the module that defines it (on Temporal, add "
        "it to DURABLE_AGENT_MODULES)"
    )
    quoted = json.dumps(message, ensure_ascii=False)
    assert lines == [
        started(identity),
        f'{{"type":"error","data":{{"message":{quoted},"code":"registration"}}}}\n'.encode(),
        f'{{"type":"session.run.failed","data":{{"sessionId":"{run_id}","message":{quoted}}}}}\n'.encode(),
    ]
