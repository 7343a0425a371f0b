"""The commands configure telemetry at start: ``durable run`` exports its run's spans under
the caller's ``TRACEPARENT``; ``durable worker`` serves its metrics (and, on Temporal, the
SDK's); a bad telemetry setting stops a command at start with the variable's name."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance.agents import Job, pipeline
from tests.support.cli import ROOT, command, durable, no_traceback
from tests.telemetry.receiver import otlp_receiver

MODULES = "tests.conformance.agents"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DURABLE_"))}
    return {
        **env,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
        **extra,
    }


def test_durable_run_exports_its_spans_under_the_callers_traceparent(tmp_path: Path) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with otlp_receiver() as received:
        env = _env(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=received.endpoint,
            OTEL_SERVICE_NAME="durable-cli-test",
            OTEL_METRICS_EXPORTER="otlp",
            TRACEPARENT=f"00-{trace_id}-{parent}-01",
        )
        done = durable(
            "run", "conformance.pipeline", "--input", '{"n": 2}', "--local", "--wait", env=env
        )
    no_traceback(done)
    assert done.returncode == 0, done.stderr

    by_name = {name: (trace, span, up) for name, trace, span, up in received.links}
    assert {"durable.command", "durable.run", "durable.step"} <= set(by_name)
    assert {trace for _, trace, _, _ in received.links} == {trace_id}
    command_span = by_name["durable.command"]
    assert command_span[2] == parent
    assert by_name["durable.run"][2] == command_span[1]
    assert {r["service.name"] for _, _, r in received.spans} == {"durable-cli-test"}
    # The command pushed its metrics too, before it ended.
    assert {"durable.steps", "durable.step.duration", "durable.runs.ended"} <= set(received.metrics)


def test_a_bad_telemetry_setting_stops_a_command_at_start(tmp_path: Path) -> None:
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon")
    done = durable("list", "--local", env=env)

    no_traceback(done)
    assert done.returncode == 2
    assert (
        "OTEL_EXPORTER_OTLP_PROTOCOL input should be 'http/protobuf' or 'grpc', "
        "got 'carrier-pigeon'; unset it for the default"
    ) in done.stderr


async def _scrape_until(address: str, needle: str, timeout: float = 30) -> str:
    async with asyncio.timeout(timeout), httpx.AsyncClient() as http:
        while True:
            try:
                text = (await http.get(f"http://{address}/metrics")).text
            except httpx.TransportError:
                text = ""
            if needle in text:
                return text
            await asyncio.sleep(0.2)


async def test_durable_worker_serves_its_metrics_and_the_sdks(
    tmp_path: Path, temporal_server: DevServer
) -> None:
    ours, sdk = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    task_queue = f"metrics-{uuid.uuid4().hex[:8]}"
    env = _env(
        tmp_path,
        TEMPORAL_ADDRESS=temporal_server.address,
        TASK_QUEUE=task_queue,
        DURABLE_METRICS_ADDRESS=ours,
        DURABLE_TEMPORAL_METRICS_ADDRESS=sdk,
    )
    log = tmp_path / "worker.log"
    with log.open("w") as sink:
        worker = await asyncio.create_subprocess_exec(
            *command(), "worker", cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        client = await Client.connect(
            temporal_server.address, data_converter=pydantic_data_converter
        )
        agents = AgentClient(client, task_queue=task_queue)
        run_id = f"metered-{task_queue}"
        await agents.start(pipeline, Job(n=1), run_id=run_id)
        assert (await asyncio.wait_for(agents.result(run_id), 30))["total"] == 2
        steps = await _scrape_until(ours, "durable_steps_total")
        assert 'durable_substrate="temporal"' in steps
        assert task_queue in await _scrape_until(sdk, "temporal_workflow_completed")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.wait(), 30)
    assert code == 0, log.read_text()


def test_a_short_command_leaves_the_metrics_ports_to_the_worker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = _env(
            tmp_path, DURABLE_METRICS_ADDRESS=address, DURABLE_TEMPORAL_METRICS_ADDRESS=address
        )
        done = durable("list", "--local", env=env)

    no_traceback(done)
    assert done.returncode == 0, done.stderr
