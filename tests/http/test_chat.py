"""Chat turns over HTTP on each substrate: a fresh turn streams, asked again it replays."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.http.support import assert_problem

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def _turn(http: httpx.AsyncClient, session: str, body: dict[str, Any]) -> list[Any]:
    async with http.stream("POST", f"/v1/chat/{session}/turns", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        text = (await response.aread()).decode()
    return [json.loads(line) for line in text.splitlines()]


async def test_a_fresh_turn_streams_and_the_same_turn_replays(http: httpx.AsyncClient) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    body = {
        "tenant_id": "acme",
        "turn_index": 0,
        "messages": [{"role": "user", "content": "where is my refund?"}],
    }
    fresh = await _turn(http, session, body)
    assert fresh[0] == {
        "type": "session.run.started",
        "data": {"sessionId": session, "tenantId": "acme", "turnIndex": 0},
    }
    deltas = [line["data"]["delta"] for line in fresh if line["type"] == "message.part.updated"]
    assert len(deltas) > 1
    answer = "".join(deltas)
    assert answer == "[scripted model] You said: where is my refund?"
    assert fresh[-1] == {
        "type": "session.run.completed",
        "data": {"sessionId": session, "replayed": False},
    }

    replay = await _turn(http, session, body)
    assert [line["type"] for line in replay] == [
        "session.run.started",
        "result",
        "session.run.completed",
    ]
    assert replay[1]["data"] == {"finalText": answer}
    assert replay[-1]["data"]["replayed"] is True

    run = (await http.get(f"/v1/runs/chat:{session}:0")).json()
    assert run["agent"] == "chat.turn"
    assert run["status"] == "completed"

    other = await _turn(http, session, {**body, "messages": [{"role": "user", "content": "hi"}]})
    assert [line["type"] for line in other][-2:] == ["error", "session.run.failed"]
    assert other[-2]["data"]["code"] == "manifest_mismatch"


async def test_a_turn_the_api_cannot_take_is_422(http: httpx.AsyncClient) -> None:
    good = {"tenant_id": "acme", "turn_index": 0, "messages": [{"role": "user", "content": "x"}]}
    for body in ({**good, "messages": []}, {**good, "turn_index": -1}, {"tenant_id": "acme"}):
        assert_problem(await http.post("/v1/chat/s/turns", json=body), 422, "invalid_request")
    control = await http.post("/v1/chat/s%07/turns", json=good)
    assert_problem(control, 422, "invalid_request")
