"""The ``durable`` command and the ``temporal`` CLI against a real dev server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from durable_agents.adapters.temporal import AgentClient, DevServer, find_temporal_binary
from tests.support.cli import durable

ROOT = Path(__file__).resolve().parents[2]
APPROVAL = "approval:4"
"""The event that carries the decision of the refund agent's approval (at position 4)."""


@pytest.fixture
def env(temporal_server: DevServer, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": task_queue,
        "DURABLE_AGENT_MODULES": "durable_agents.examples.refund",
        "DURABLE_DATA": str(tmp_path),
        "REFUND_LEDGER": str(tmp_path / "ledger.jsonl"),
    }


async def _waiting(client: AgentClient, run_id: str) -> None:
    for _ in range(200):
        status = await client.status(run_id)
        if status["waiting_for"] == [APPROVAL]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never waited for approval")


async def test_run_status_event_result_list(
    agents_client: AgentClient, env: dict[str, str], temporal_server: DevServer
) -> None:
    request = '{"order_id": "A-1001", "amount_cents": 2500, "reason": "damaged"}'
    started = await asyncio.to_thread(
        durable, "run", "refund_review", "--input", request, "--run-id", "refund-cli", env=env
    )
    assert started.returncode == 0, started.stderr
    assert "started run refund-cli of refund_review" in started.stdout
    await _waiting(agents_client, "refund-cli")

    status = await asyncio.to_thread(durable, "status", "refund-cli", env=env)
    assert "waiting for approval" in status.stdout
    assert "look up the order" in status.stdout

    # The decision arrives from another shell through the temporal CLI's signal.
    decision = {"decision": "approve", "decided_by": "dana"}
    signal = await asyncio.to_thread(
        subprocess.run,
        [
            find_temporal_binary(), "workflow", "signal",
            "--address", temporal_server.address,
            "--workflow-id", "refund-cli",
            "--name", "event",
            "--input", json.dumps({"key": APPROVAL, "payload": decision}),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert signal.returncode == 0, signal.stderr

    result = await asyncio.to_thread(durable, "result", "refund-cli", "--wait", env=env)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["status"], outcome["reviewer"]) == ("refunded", "dana")

    listing = await asyncio.to_thread(durable, "list", env=env)
    assert "refund-cli" in listing.stdout
    assert "completed" in listing.stdout

    # A sender retried after the end: the key was taken, which is no error.
    again = await asyncio.to_thread(
        durable, "event", "refund-cli", APPROVAL, "--payload", "{}", env=env
    )
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.startswith(f"not accepted: {APPROVAL!r} was already sent")
    late = await asyncio.to_thread(durable, "event", "refund-cli", "late", env=env)
    assert late.returncode == 1
    assert "[run_ended] run 'refund-cli' has already ended" in late.stderr


async def test_durable_event_is_first_emit_wins(
    agents_client: AgentClient, env: dict[str, str]
) -> None:
    await agents_client.start(
        "refund_review",
        {"order_id": "A-1001", "amount_cents": 100, "reason": "late"},
        run_id="refund-events",
    )
    await _waiting(agents_client, "refund-events")
    reject = '{"decision": "reject", "decided_by": "sam", "reason": "no photos"}'

    first = await asyncio.to_thread(
        durable, "event", "refund-events", APPROVAL, "--payload", reject, env=env
    )

    assert (first.returncode, first.stdout.strip()) == (0, "accepted")
    outcome = await agents_client.result("refund-events")
    assert outcome.status == "declined"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "refund_review", "--input", "{bad"), "--input is not valid JSON"),
        (("run", "no_such_agent", "--input", "{}"), "no agent named 'no_such_agent'"),
        (("run", "refund_review", "--input", '{"order_id": 1}'), "does not match"),
        (("event", "missing-run", "approval"), "no run 'missing-run'"),
        (("watch", "missing-run", "--timeout", "0"), "no run 'missing-run'"),
        (("watch", "missing-run", "--timeout", "0", "--local"), "no run 'missing-run'"),
        (("watch", "some-run", "--after", "-1"), "--after must be 0 or the seq"),
    ],
)
def test_bad_input_is_refused_with_the_fix(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    refused = durable(*args, env=env)

    assert refused.returncode == 2, refused  # bad input, an unknown run included
    assert message in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr


async def _watch(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    script = Path(sys.executable).parent / "durable"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "durable_agents.cli"]
    return await asyncio.create_subprocess_exec(
        *command, "watch", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _read_until(process: asyncio.subprocess.Process, marker: str) -> str:
    assert process.stdout is not None
    seen = ""
    while marker not in seen:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, f"durable watch ended before printing {marker!r}; it printed:\n{seen}"
        seen += line.decode()
    return seen


async def _rest(process: asyncio.subprocess.Process) -> tuple[int, str]:
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_durable_watch_streams_a_runs_steps_tokens_and_waits(
    agents_client: AgentClient, env: dict[str, str]
) -> None:
    request = {"order_id": "A-1001", "amount_cents": 2500, "reason": "damaged"}
    await agents_client.start("refund_review", request, run_id="refund-watch")
    watcher = await _watch("refund-watch", env=env)

    before = await _read_until(watcher, f"waiting for event `{APPROVAL}`")
    await agents_client.decide("refund-watch", "approve", decided_by="kim")
    code, after = await _rest(watcher)

    assert code == 0, after
    assert "step 0 started: look up the order" in before
    assert "step 2 started: write the note for the reviewer" in before
    assert "step 2 streams:\n[scripted model] You said:" in before
    assert f"event `{APPROVAL}` received" in after
    assert "started: issue the payout" in after
    assert after.rstrip().endswith("run completed")


async def test_durable_event_local_after_the_end(env: dict[str, str], tmp_path: Path) -> None:
    from durable_agents.adapters.local import SqliteStore, run_durable
    from durable_agents.examples.refund import RefundRequest, refund_review

    store = SqliteStore(tmp_path / "durable.db")  # where DURABLE_DATA puts the local store
    request = RefundRequest(order_id="A-1001", amount_cents=2500, reason="damaged")
    run = asyncio.create_task(run_durable(refund_review, request, store=store, run_id="local-e"))
    while f"await_event:{APPROVAL}" not in [s.intent for s in await store.load_steps("local-e")]:
        await asyncio.sleep(0.01)
    approve = '{"decision": "approve", "decided_by": "kim"}'

    first = await asyncio.to_thread(
        durable, "event", "local-e", APPROVAL, "--payload", approve, "--local", env=env
    )
    await run
    again = await asyncio.to_thread(
        durable, "event", "local-e", APPROVAL, "--payload", approve, "--local", env=env
    )
    late = await asyncio.to_thread(durable, "event", "local-e", "late", "--local", env=env)
    await store.close()

    assert (first.returncode, first.stdout.strip()) == (0, "accepted")
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.startswith(f"not accepted: {APPROVAL!r} was already sent")
    assert late.returncode == 1
    assert "[run_ended] run 'local-e' has already ended" in late.stderr


async def test_durable_watch_local_follows_a_run_in_the_sqlite_store(
    env: dict[str, str], tmp_path: Path
) -> None:
    from durable_agents.adapters.local import SqliteStore, run_durable, send_event
    from durable_agents.examples.refund import RefundRequest, refund_review

    store = SqliteStore(tmp_path / "durable.db")  # where DURABLE_DATA puts the local store
    request = RefundRequest(order_id="A-1001", amount_cents=2500, reason="damaged")
    run = asyncio.create_task(run_durable(refund_review, request, store=store, run_id="local-w"))
    while await store.load_run("local-w") is None:
        await asyncio.sleep(0.01)
    watcher = await _watch("local-w", "--local", env=env)

    before = await _read_until(watcher, f"waiting for event `{APPROVAL}`")
    reject = {"decision": "reject", "decided_by": "kim", "reason": "no photos"}
    await send_event(store, "local-w", APPROVAL, reject)
    await run
    code, after = await _rest(watcher)
    await store.close()

    assert code == 0, after
    assert "step 2 streams:\n[scripted model] You said:" in before
    assert after.rstrip().endswith("run completed")
    replay = durable("watch", "local-w", "--local", "--json", env=env)  # an ended run replays
    kinds = [json.loads(line)["kind"] for line in replay.stdout.splitlines()]
    assert kinds[0] == "step_started"
    assert kinds[-1] == "run_completed"
