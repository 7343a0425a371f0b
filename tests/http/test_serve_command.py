"""``durable serve`` as a process: it says how it serves, answers, refuses what it must."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import DevServer
from tests.http.conftest import AGENTS, TOKEN
from tests.support.cli import ROOT, command, durable, no_traceback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",  # --local needs no Temporal server
        "DURABLE_AGENT_MODULES": "tests.http.agents",
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_API_TOKENS": TOKEN,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(
    *args: str, env: dict[str, str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``durable serve ARGS`` running, with the line it printed once listening."""
    process = await asyncio.create_subprocess_exec(
        *command(), "serve", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, (await process.communicate())[1].decode()
        yield process, line
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_serve_local_starts_and_runs_runs_then_stops_with_0(
    env: dict[str, str], stop: signal.Signals
) -> None:
    port = _free_port()
    async with serving("--local", "--port", str(port), env=env) as (process, said):
        assert f"http://127.0.0.1:{port}/" in said
        assert "1 bearer token" in said
        assert "on the local store" in said
        assert TOKEN not in said
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/v1/runs", headers={"Authorization": ""})).status_code == 401
            started = await http.post(
                "/v1/runs", json={"agent": "http.speak", "input": {"text": "hi there", "pace": 0}}
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            result = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
            assert result.json() == {"run_id": run_id, "result": {"text": "hi there"}}
            page = await http.get("/")
            assert page.headers["content-type"].startswith("text/html")
        process.send_signal(stop)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode() + out.decode()


def test_serve_refuses_another_host_without_tokens(env: dict[str, str]) -> None:
    done = durable("serve", "--local", "--host", "0.0.0.0", env={**env, "DURABLE_API_TOKENS": ""})
    no_traceback(done)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without DURABLE_API_TOKENS" in done.stderr


def test_serve_says_when_its_port_is_taken(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = durable("serve", "--local", "--port", str(port), env=env)
    no_traceback(done)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port" in done.stderr


def test_serve_refuses_bad_settings(env: dict[str, str]) -> None:
    done = durable("serve", "--local", env={**env, "DURABLE_API_TOKENS": "short"})
    no_traceback(done)
    assert done.returncode == 2
    assert "at least 16 characters" in done.stderr


async def test_serve_on_temporal_starts_runs_a_worker_runs(
    env: dict[str, str], temporal_server: DevServer
) -> None:
    task_queue = f"serve-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)
    port = _free_port()
    on_temporal = {**env, "TEMPORAL_ADDRESS": temporal_server.address, "TASK_QUEUE": task_queue}
    async with (
        Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(AGENTS)]),
        serving("--port", str(port), env=on_temporal) as (process, said),
    ):
        assert f"on Temporal at {temporal_server.address}" in said
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ) as http:
            started = await http.post(
                "/v1/runs", json={"agent": "http.speak", "input": {"text": "on temporal"}}
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            result = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
            assert result.json() == {"run_id": run_id, "result": {"text": "on temporal"}}
            # An external server has no UI this server knows of.
            assert (await http.get("/v1/server")).json()["temporal_ui"] is None
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
