"""Tokens, the body cap and the inbound headers, through a real server on each substrate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from durable_agents.adapters.http import DEPTH_HEADER, ServerSettings
from tests.http.conftest import TOKEN
from tests.http.server import ServerThread
from tests.http.support import assert_problem, new_run_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_every_route_but_health_needs_a_valid_token(served: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
        assert (await anonymous.get("/health")).json() == {"status": "ok"}
        guarded = [
            (method, path)
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if operation.get("security")
        ]
        assert {path for _, path in guarded} >= {
            "/v1/runs",
            "/v1/runs/{run_id}",
            "/v1/runs/{run_id}/events/{key}",
            "/v1/approvals/{approval_id}",
        }
        assert "security" not in document["paths"]["/health"]["get"]
        for header in (
            {},
            {"Authorization": "Bearer wrong-token-wrong-token"},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            for method, path in guarded:
                concrete = path.replace("{run_id}", "r").replace("{key}", "k")
                concrete = concrete.replace("{approval_id}", "r:approval-1")
                response = await anonymous.request(method, concrete, headers=header, json={})
                body = assert_problem(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in response.text
                assert "wrong-token" not in response.text
                assert "token" in body["detail"]


async def test_a_body_over_the_cap_is_413_by_length_and_as_it_streams(
    http: httpx.AsyncClient, served: ServerThread
) -> None:
    cap = served.settings.max_body_bytes
    big = b'{"agent": "http.speak", "input": "' + b"x" * cap + b'"}'
    by_length = await http.post(
        "/v1/runs", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(by_length, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = await http.post(
        "/v1/runs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "body_too_large")
    assert (await http.get("/v1/server")).status_code == 200  # the server still answers


async def test_the_forwarded_depth_is_read_as_the_reference_does(
    http: httpx.AsyncClient, served: ServerThread
) -> None:
    limit = served.settings.max_depth
    assert (await http.get("/v1/server")).status_code == 200  # missing: the origin, depth 0
    ok = await http.get("/v1/server", headers={DEPTH_HEADER: str(limit - 1)})
    assert ok.status_code == 200
    for bad in ("two", "-1", "1.5", ""):  # an empty header is a value, and not a number
        response = await http.get("/v1/server", headers={DEPTH_HEADER: bad})
        body = assert_problem(response, 400, "bad_header")
        assert DEPTH_HEADER in body["detail"]
    deep = await http.post(
        "/v1/runs",
        headers={DEPTH_HEADER: str(limit)},
        json={"agent": "http.speak", "input": {"text": "x"}, "run_id": new_run_id()},
    )
    body = assert_problem(deep, 413, "depth_exceeded")
    assert "DURABLE_API_MAX_DEPTH" in body["detail"]


async def test_a_traceparent_is_accepted_well_formed_or_not(http: httpx.AsyncClient) -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for value in (good, "not-a-traceparent", "ff-" + good[3:]):
        assert (await http.get("/v1/server", headers={"traceparent": value})).status_code == 200


@pytest.mark.parametrize("substrate", ["local"])
@pytest.mark.parametrize(
    "settings", [ServerSettings(tokens=(TOKEN,), max_body_bytes=4096)], ids=["small-cap"]
)
async def test_the_cap_is_a_setting(http: httpx.AsyncClient) -> None:
    body = {"agent": "http.speak", "input": {"text": "y" * 5000}}
    assert_problem(await http.post("/v1/runs", json=body), 413, "body_too_large")
    fits = await http.post("/v1/runs", json={"agent": "http.speak", "input": {"text": "y" * 3000}})
    assert fits.status_code == 201, fits.text
