"""Helpers the HTTP tests share: problem answers, polling a run, reading a live stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

ENDED = {"completed", "failed", "cancelled", "terminated", "timed_out"}


def new_run_id(prefix: str = "http") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is a problem document with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["detail"]
    return body


async def until(
    http: httpx.AsyncClient,
    path: str,
    check: Callable[[Any], bool],
    *,
    timeout: float = 30,
    params: dict[str, Any] | None = None,
) -> Any:
    """GET ``path`` until ``check`` holds for its JSON body; returns that body."""
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(path, params=params)
        body = response.json() if response.status_code == 200 else None
        if body is not None and check(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {path} never satisfied the check; last: {response.text}")
        await asyncio.sleep(0.1)


async def run_state(http: httpx.AsyncClient, run_id: str, states: set[str]) -> dict[str, Any]:
    body: dict[str, Any] = await until(
        http, f"/v1/runs/{run_id}", lambda run: run["status"] in states
    )
    return body


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(id, entry)`` of every server-sent event in ``text`` (comments skipped)."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            found.append((fields["id"], json.loads(fields["data"])))
    return found


def tokens(entries: list[dict[str, Any]]) -> str:
    return "".join(entry["text"] for entry in entries if entry["kind"] == "token")
