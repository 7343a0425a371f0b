"""The HTTP API on each substrate: every status code of every route, through a real server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from durable import DurableClient
from durable_agents.adapters.http import ServerSettings
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.http.conftest import TOKEN
from tests.http.server import ServerThread
from tests.http.support import (
    assert_problem,
    ndjson,
    new_run_id,
    run_state,
    tokens,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WORDS = {"text": "one two three four five", "pace": 0.02}


async def test_start_answers_201_then_200_for_the_same_run_and_409_for_other_input(
    http: httpx.AsyncClient,
) -> None:
    run_id = new_run_id()
    body = {"agent": "http.speak", "input": WORDS, "run_id": run_id}

    first = await http.post("/v1/runs", json=body)
    assert first.status_code == 201, first.text
    assert first.json() == {"run_id": run_id, "created": True}
    assert first.headers["location"] == f"/v1/runs/{run_id}"

    again = await http.post("/v1/runs", json=body)
    assert again.status_code == 200, again.text
    assert again.json() == {"run_id": run_id, "created": False}

    other = await http.post("/v1/runs", json={**body, "input": {"text": "other"}})
    assert_problem(other, 409, "manifest_mismatch")


async def test_start_without_a_run_id_names_one(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/runs", json={"agent": "http.speak", "input": WORDS})
    assert response.status_code == 201, response.text
    assert response.json()["run_id"].startswith("http.speak-")


async def test_start_refuses_an_unknown_agent_bad_input_and_a_malformed_body(
    http: httpx.AsyncClient,
) -> None:
    unknown = await http.post("/v1/runs", json={"agent": "no.such.agent", "input": {}})
    assert_problem(unknown, 422, "registration")
    bad_input = await http.post("/v1/runs", json={"agent": "http.speak", "input": {"pace": 1}})
    assert_problem(bad_input, 422, "input_invalid")
    malformed = await http.post("/v1/runs", json={"input": {}})
    body = assert_problem(malformed, 422, "invalid_request")
    assert body["errors"][0]["loc"] == ["body", "agent"]
    not_json = await http.post(
        "/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(not_json, 422, "invalid_request")


async def test_a_run_its_steps_and_the_list_filtered_and_paged(http: httpx.AsyncClient) -> None:
    ids = [new_run_id() for _ in range(3)]
    for run_id in ids:
        started = await http.post(
            "/v1/runs", json={"agent": "http.speak", "input": WORDS, "run_id": run_id}
        )
        assert started.status_code == 201
    for run_id in ids:
        run = await run_state(http, run_id, {"completed"})
        assert run["agent"] == "http.speak"
    steps = (await http.get(f"/v1/runs/{ids[0]}/steps")).json()
    assert [(s["intent"], s["status"]) for s in steps] == [("say the words", "completed")]
    assert steps[0]["result"] == WORDS["text"]

    # Visibility on Temporal is eventually consistent: wait until the list shows all three.
    await until(
        http,
        "/v1/runs",
        lambda page: set(ids) <= {run["run_id"] for run in page["runs"]},
        params={"agent": "http.speak", "status": "completed", "limit": 500},
    )
    first = (await http.get("/v1/runs", params={"agent": "http.speak", "limit": 2})).json()
    assert len(first["runs"]) == 2
    assert first["next_before"] == first["runs"][-1]["run_id"]
    second = (
        await http.get(
            "/v1/runs", params={"agent": "http.speak", "limit": 2, "before": first["next_before"]}
        )
    ).json()
    assert not {r["run_id"] for r in first["runs"]} & {r["run_id"] for r in second["runs"]}
    none = (await http.get("/v1/runs", params={"agent": "http.speak", "status": "failed"})).json()
    assert all(run["run_id"] not in ids for run in none["runs"])


async def test_unknown_runs_are_404_on_every_run_route(http: httpx.AsyncClient) -> None:
    missing = new_run_id("missing")
    for response in (
        await http.get(f"/v1/runs/{missing}"),
        await http.get(f"/v1/runs/{missing}/steps"),
        await http.get(f"/v1/runs/{missing}/stream"),
        await http.post(f"/v1/runs/{missing}/events/go", json={"payload": {"n": 1}}),
        await http.post(f"/v1/runs/{missing}/cancel", json={}),
    ):
        assert_problem(response, 404, "run_not_found")
    assert_problem(await http.get("/v1/nowhere"), 404, "not_found")


async def test_events_answer_202_200_422_and_409_once_the_run_ended(
    http: httpx.AsyncClient,
) -> None:
    run_id = new_run_id()
    started = await http.post(
        "/v1/runs", json={"agent": "http.wait", "input": WORDS, "run_id": run_id}
    )
    assert started.status_code == 201
    await run_state(http, run_id, {"waiting"})

    bad = await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": "many"}})
    assert_problem(bad, 422, "event_payload_invalid")
    accepted = await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": 7}})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"run_id": run_id, "key": "go", "status": "accepted"}
    again = await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": 8}})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "already_accepted"

    await run_state(http, run_id, {"completed"})
    late = await http.post(f"/v1/runs/{run_id}/events/other", json={"payload": None})
    assert_problem(late, 409, "run_ended")


async def test_a_payload_over_the_substrates_limit_is_413(http: httpx.AsyncClient) -> None:
    run_id = new_run_id()
    await http.post("/v1/runs", json={"agent": "http.wait", "input": WORDS, "run_id": run_id})
    await run_state(http, run_id, {"waiting"})
    huge = {"payload": {"blob": "x" * (1024 * 1024 + 10)}}  # under the body cap, over 1 MiB
    assert_problem(
        await http.post(f"/v1/runs/{run_id}/events/other", json=huge), 413, "payload_too_large"
    )
    await http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "done testing"})


async def test_approvals_are_listed_and_decided_once(http: httpx.AsyncClient) -> None:
    run_id = new_run_id()
    await http.post("/v1/runs", json={"agent": "http.ask", "input": WORDS, "run_id": run_id})
    await run_state(http, run_id, {"waiting_for_approval"})
    pending = await until(
        http,
        "/v1/approvals",
        lambda approvals: any(a["run_id"] == run_id for a in approvals),
        params={"agent": "http.ask"},
    )
    approval = next(a for a in pending if a["run_id"] == run_id)
    assert approval["action"] == "say"
    assert approval["input"] == {"text": WORDS["text"]}
    path = f"/v1/approvals/{approval['approval_id']}"

    no_reason = await http.post(path, json={"decision": "reject", "decided_by": "ana"})
    assert_problem(no_reason, 422, "invalid_request")
    no_decider = await http.post(path, json={"decision": "approve"})
    assert_problem(no_decider, 422, "invalid_request")
    decided = await http.post(path, json={"decision": "approve", "decided_by": "ana"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided"
    again = await http.post(
        path, json={"decision": "reject", "decided_by": "bo", "reason": "too late"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "already_decided"
    assert again.json()["decision"]["decided_by"] == "ana"

    await run_state(http, run_id, {"completed"})
    missing = await http.post(
        f"/v1/approvals/{new_run_id('missing')}:approval-0",
        json={"decision": "approve", "decided_by": "ana"},
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["code"] in {"approval_not_found", "run_not_found"}


async def test_cancel_answers_then_already_ended(http: httpx.AsyncClient) -> None:
    run_id = new_run_id()
    await http.post("/v1/runs", json={"agent": "http.wait", "input": WORDS, "run_id": run_id})
    await run_state(http, run_id, {"waiting"})
    cancelled = await http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "not needed"})
    assert cancelled.status_code in (200, 202), cancelled.text
    outcome = cancelled.json()["outcome"]
    assert outcome in {"requested", "cancelled"}
    assert cancelled.status_code == (202 if outcome == "requested" else 200)
    run = await run_state(http, run_id, {"cancelled"})
    assert "not needed" in (run["error"] or "")
    result = await http.get(f"/v1/runs/{run_id}/result")
    assert_problem(result, 409, "cancelled")
    ended = await http.post(f"/v1/runs/{run_id}/cancel")
    assert ended.status_code == 200
    assert ended.json() == {"run_id": run_id, "outcome": "already_ended"}


async def test_the_stream_is_ndjson_and_ends_with_the_run(http: httpx.AsyncClient) -> None:
    run_id = new_run_id()
    await http.post("/v1/runs", json={"agent": "http.speak", "input": WORDS, "run_id": run_id})
    async with http.stream("GET", f"/v1/runs/{run_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        entries = ndjson((await response.aread()).decode())
    assert tokens(entries) == WORDS["text"]
    assert entries[-1]["kind"] == "run_completed"
    seqs = [entry["seq"] for entry in entries]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)

    later = (await http.get(f"/v1/runs/{run_id}/stream", params={"after": seqs[1]})).text
    assert [entry["seq"] for entry in ndjson(later)] == seqs[2:]


async def test_the_result_is_200_once_the_run_completed_and_202_before(
    http: httpx.AsyncClient,
) -> None:
    run_id = new_run_id()
    await http.post("/v1/runs", json={"agent": "http.wait", "input": WORDS, "run_id": run_id})
    await run_state(http, run_id, {"waiting"})
    early = await http.get(f"/v1/runs/{run_id}/result")
    assert early.status_code == 202, early.text
    assert early.json()["status"] == "waiting"
    waited = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 0.5})
    assert waited.status_code == 202
    await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": 3}})
    done = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
    assert done.status_code == 200, done.text
    assert done.json() == {"run_id": run_id, "result": {"n": 3}}
    assert_problem(await http.get(f"/v1/runs/{new_run_id()}/result"), 404, "run_not_found")
    assert_problem(
        await http.get(f"/v1/runs/{run_id}/result", params={"wait": 600}), 422, "invalid_request"
    )


async def test_an_event_no_worker_acknowledged_is_202_delivered(
    temporal_server: DevServer,
) -> None:
    async def unattended(stack: contextlib.AsyncExitStack) -> DurableClient:
        client = await Client.connect(
            temporal_server.address, data_converter=pydantic_data_converter
        )
        return AgentClient(client, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")

    served = await asyncio.to_thread(
        ServerThread(unattended, ServerSettings(tokens=(TOKEN,))).start
    )
    try:
        async with httpx.AsyncClient(
            base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as http:
            run_id = new_run_id()
            started = await http.post(
                "/v1/runs", json={"agent": "http.wait", "input": WORDS, "run_id": run_id}
            )
            assert started.status_code == 201
            # No worker serves the run's task queue: the event is kept, not yet acknowledged.
            sent = await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": 1}})
            assert sent.status_code == 202, sent.text
            assert sent.json()["status"] == "delivered"
            await http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "no worker"})
    finally:
        await asyncio.to_thread(served.stop)
