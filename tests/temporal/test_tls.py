"""A real TLS connection, and an API key reaching the server as metadata, through the one
``connect`` every client uses: the worker's, the CLI's and a library's.

The dev server speaks plaintext, so the tests put a TLS-terminating proxy on loopback in
front of it, with a CA and a server certificate made for the test; the proxy reads the
HTTP/2 headers that pass through it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.settings import TemporalSettings
from durable_agents.adapters.temporal import AgentClient, DevServer, TemporalConnectError, connect
from tests.conformance.agents import Job, pipeline
from tests.support.tls_proxy import Certificates, make_certificates, tls_proxy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def _tls_env(address: str, certificates: Certificates) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certificates.ca),
        "TEMPORAL_TLS_SERVER_NAME": "localhost",
    }


async def test_a_run_over_tls_with_the_servers_ca(
    temporal_server: DevServer, certificates: Certificates, task_queue: str
) -> None:
    async with tls_proxy(temporal_server.address, certificates) as proxy:
        settings = TemporalSettings.from_env(_tls_env(proxy.address, certificates))
        assert settings.describe() == f"{proxy.address} (TLS)"
        client = await connect(settings)

        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert described.namespace_info.name == "default"
        plugin = DurableAgentsPlugin(("tests.conformance.agents",))
        async with Worker(client, task_queue=task_queue, plugins=[plugin]):
            agents = AgentClient(client, task_queue=task_queue)
            run_id = f"tls-{uuid.uuid4().hex[:8]}"
            await agents.start(pipeline, Job(n=1), run_id=run_id)
            assert (await asyncio.wait_for(agents.result(run_id), 60))["total"] == 2
    assert proxy.handshakes >= 1
    assert proxy.requests, "the requests went through the TLS proxy"


async def test_without_the_ca_the_connection_is_refused_with_what_to_check(
    temporal_server: DevServer, certificates: Certificates
) -> None:
    async with tls_proxy(temporal_server.address, certificates) as proxy:
        untrusting = TemporalSettings.from_env(
            {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TLS": "true"}
        )
        with pytest.raises(TemporalConnectError) as caught:
            await connect(untrusting)
    message = str(caught.value)
    assert f"cannot connect to Temporal at {proxy.address} (TLS)" in message
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in message
    assert "deploy/README.md" in message
    assert proxy.handshakes == 0  # the client refused the server's certificate
    assert not proxy.requests


async def test_an_api_key_reaches_the_server_as_metadata_and_no_message(
    temporal_server: DevServer, certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"api-key-{uuid.uuid4().hex}"
    async with tls_proxy(temporal_server.address, certificates) as proxy:
        settings = TemporalSettings.from_env(
            {**_tls_env(proxy.address, certificates), "TEMPORAL_API_KEY": key}
        )
        client = await connect(settings)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        # The command line: the same key, the same way; never in its output.
        env = {
            **os.environ,
            **_tls_env(proxy.address, certificates),
            "TEMPORAL_API_KEY": key,
            "DURABLE_AGENT_MODULES": "tests.conformance.agents",
        }
        listed = await _run(str(BIN / "durable"), "list", env=env)
        refused = await _run(
            str(BIN / "durable"), "list", env={**env, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": ""}
        )

    calls = [r for r in proxy.requests if r.get(":path", "").startswith("/temporal.api")]
    assert calls
    assert all(r.get("authorization") == f"Bearer {key}" for r in calls), calls
    assert listed[0] == 0, listed[2]
    assert refused[0] != 0
    assert "cannot connect to Temporal at" in refused[2]
    assert "(TLS, API key)" in refused[2]
    shown = f"{settings!r} {settings.describe()} {caplog.text} {listed} {refused}"
    assert key not in shown


async def test_the_worker_connects_over_tls_with_an_api_key(
    temporal_server: DevServer, certificates: Certificates, task_queue: str, tmp_path: Path
) -> None:
    key = f"api-key-{uuid.uuid4().hex}"
    async with tls_proxy(temporal_server.address, certificates) as proxy:
        env = {
            **os.environ,
            **_tls_env(proxy.address, certificates),
            "TEMPORAL_API_KEY": key,
            "TASK_QUEUE": task_queue,
            "DURABLE_AGENT_MODULES": "tests.conformance.agents",
            "DURABLE_DATA": str(tmp_path / "data"),
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "worker.py"), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            client = await connect(TemporalSettings.from_env(_tls_env(proxy.address, certificates)))
            agents = AgentClient(client, task_queue=task_queue)
            run_id = f"tls-worker-{uuid.uuid4().hex[:8]}"
            await agents.start(pipeline, Job(n=5), run_id=run_id)
            assert (await asyncio.wait_for(agents.result(run_id), 60))["total"] == 6
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    logged = err.decode()
    assert f"worker on {proxy.address} (TLS, API key)" in logged
    assert key not in logged
    keyed = [r for r in proxy.requests if r.get("authorization") == f"Bearer {key}"]
    assert any("PollWorkflowTaskQueue" in r.get(":path", "") for r in keyed)


async def _run(*command: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
