"""Server-sent events resume where a dropped connection left off, on each substrate."""

from __future__ import annotations

import httpx
import pytest

from tests.http.support import new_run_id, sse_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TEXT = " ".join(f"w{n}" for n in range(30))


async def _read_until_tokens(response: httpx.Response, count: int) -> str:
    """Read the SSE stream until ``count`` token entries arrived; return what was read."""
    seen = ""
    async for chunk in response.aiter_text():
        seen += chunk
        if sum(1 for _, e in sse_events(seen) if e["kind"] == "token") >= count:
            return seen
    raise AssertionError(f"the stream ended before {count} tokens: {seen!r}")


async def test_sse_resumes_after_a_dropped_connection_without_gaps_or_repeats(
    http: httpx.AsyncClient, served: object
) -> None:
    run_id = new_run_id()
    started = await http.post(
        "/v1/runs",
        json={"agent": "http.speak", "input": {"text": TEXT, "pace": 0.1}, "run_id": run_id},
    )
    assert started.status_code == 201
    sse = {"Accept": "text/event-stream"}

    # A reader of its own, so dropping it closes a real connection mid-stream.
    async with (
        httpx.AsyncClient(base_url=str(http.base_url), headers=http.headers, timeout=60) as reader,
        reader.stream("GET", f"/v1/runs/{run_id}/stream", headers=sse) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        before = sse_events(await _read_until_tokens(response, 3))
    last_id = before[-1][0]
    assert all(event_id == str(entry["seq"]) for event_id, entry in before)

    async with http.stream(
        "GET", f"/v1/runs/{run_id}/stream", headers={**sse, "Last-Event-ID": last_id}
    ) as resumed:
        assert resumed.status_code == 200
        after = sse_events((await resumed.aread()).decode())

    seqs = [entry["seq"] for _, entry in before + after]
    assert seqs == sorted(seqs), seqs
    assert len(seqs) == len(set(seqs)), seqs
    assert after[0][1]["seq"] > int(last_id)
    assert after[-1][1]["kind"] == "run_completed"
    text = "".join(entry["text"] for _, entry in before + after if entry["kind"] == "token")
    assert text == TEXT
