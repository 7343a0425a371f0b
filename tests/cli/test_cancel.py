"""``durable cancel``, and the run tree in ``status`` and ``list``, run as real processes.

Locally one process runs the parent with its children in flight and another
cancels it; on Temporal the command cancels a run a real dev server holds.
Either way no child outlives its cancelled parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import SqliteStore
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance.family import Ask
from tests.support.cli import ROOT, checked, command, no_traceback

MODULES = ("tests.conformance.family",)


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_AGENT_MODULES": ",".join(MODULES),
        "DURABLE_LEASE_SECONDS": "2",
    }


async def _waiting_children(path: Path, run_id: str, count: int) -> list[str]:
    """The run's children, once ``count`` of them wait for their event."""
    for _ in range(600):
        if path.exists():
            store = SqliteStore(path)
            try:
                children = await store.list_children(run_id)
                waiting = [
                    c.run_id
                    for c in children
                    if any(s.intent == "await_event:go" for s in await store.load_steps(c.run_id))
                ]
            finally:
                await store.close()
            if len(waiting) == count:
                return [c.run_id for c in children]
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never had {count} children waiting")


async def _states(path: Path, run_ids: list[str]) -> list[str]:
    store = SqliteStore(path)
    try:
        return [
            run.status for run_id in run_ids if (run := await store.load_run(run_id)) is not None
        ]
    finally:
        await store.close()


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command(), *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_cancel_from_another_process_cancels_the_children_first(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "durable.db"
    running = _start("run", "family.hold_two", "--input", "{}", "--run-id", "fam", "--local",
                     env=local_env)  # fmt: skip
    try:
        children = await _waiting_children(store, "fam", 2)
        waiting = await asyncio.to_thread(checked, "status", "fam", "--local", env=local_env)
        leaf = "agent:family.waiting_leaf"
        assert f"run fam: running (agent family.hold_two), waiting for {leaf}, {leaf}" in (
            waiting.stdout
        )
        done = await asyncio.to_thread(
            checked, "cancel", "fam", "--reason", "stop now", "--local", env=local_env
        )
        assert done.returncode == 0, done.stderr
        assert "run fam: cancelling" in done.stdout
        out, err = await asyncio.to_thread(running.communicate, timeout=30)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 1, out + err
    assert "[cancelled] run 'fam' was cancelled: stop now" in err
    assert "Traceback" not in err
    assert await _states(store, ["fam", *children]) == ["cancelled"] * 3

    status = await asyncio.to_thread(checked, "status", "fam", "--local", env=local_env)
    assert "run fam: cancelled (agent family.hold_two)" in status.stdout
    assert "interrupted" in status.stdout
    assert "stop now" in status.stdout
    assert "child runs:" in status.stdout
    for child in children:
        assert f"{child}  family.waiting_leaf  cancelled" in status.stdout
    child_status = await asyncio.to_thread(checked, "status", children[0], "--local", env=local_env)
    assert "child run of fam" in child_status.stdout

    listing = await asyncio.to_thread(checked, "list", "--local", env=local_env)
    lines = listing.stdout.splitlines()
    assert lines[1].startswith("fam ")
    assert lines[2].startswith(f"├ {children[0]} ")
    assert lines[3].startswith(f"└ {children[1]} ")

    again = await asyncio.to_thread(checked, "cancel", "fam", "--local", env=local_env)
    assert again.returncode == 0
    assert "already ended" in again.stdout


async def test_cancel_of_a_run_whose_worker_died_ends_it_and_its_child(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "durable.db"
    running = _start("run", "family.waiting_parent", "--input", "{}", "--run-id", "orphaned",
                     "--local", env=local_env)  # fmt: skip
    try:
        (child,) = await _waiting_children(store, "orphaned", 1)
    finally:
        running.send_signal(signal.SIGKILL)
        running.communicate()
    await asyncio.sleep(2.2)  # the dead worker's leases lapse

    done = await asyncio.to_thread(
        checked, "cancel", "orphaned", "--reason", "its worker died", "--local", env=local_env
    )

    assert done.returncode == 0, done.stderr
    assert "cancelled, with its children" in done.stdout
    assert await _states(store, ["orphaned", child]) == ["cancelled", "cancelled"]


def test_cancel_of_an_unknown_run_is_bad_input(local_env: dict[str, str]) -> None:
    done = checked("cancel", "nobody-here", "--local", env=local_env)
    assert done.returncode == 2
    assert "nobody-here" in done.stderr


@pytest.fixture
async def family_client(client: Client, task_queue: str) -> AsyncIterator[AgentClient]:
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        yield AgentClient(client, task_queue=task_queue)


async def test_cancel_on_temporal_leaves_no_child_running(
    family_client: AgentClient, client: Client, temporal_server: DevServer, tmp_path: Path
) -> None:
    run_id = f"fam-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TASK_QUEUE": family_client.task_queue,
        "DURABLE_AGENT_MODULES": ",".join(MODULES),
        "DURABLE_DATA": str(tmp_path),
    }
    await family_client.start("family.hold_two", Ask(), run_id=run_id)
    children = [f"{run_id}/family.waiting_leaf-{i}" for i in range(2)]
    for _ in range(400):
        if len(await family_client.children(run_id)) == 2:
            break
        await asyncio.sleep(0.05)

    done = await asyncio.to_thread(checked, "cancel", run_id, "--reason", "stop now", env=env)
    assert done.returncode == 0, done.stderr
    assert "cancelling" in done.stdout
    for _ in range(400):
        found = [w async for w in client.list_workflows(f"ParentWorkflowId = '{run_id}'")]
        if found and all(w.status is not None and w.status.name == "CANCELED" for w in found):
            break
        await asyncio.sleep(0.05)
    assert sorted(w.id for w in found) == children
    assert {w.status.name for w in found if w.status is not None} == {"CANCELED"}

    status = await asyncio.to_thread(checked, "status", run_id, env=env)
    no_traceback(status)
    assert f"run {run_id}: cancelled" in status.stdout
    assert "cancelled with DurableRunCancelledError" in status.stdout
    assert "stop now" in status.stdout
    assert "interrupted" in status.stdout  # the children's steps never finished
    assert "child runs:" in status.stdout
    assert status.stdout.count("cancelled") >= 2
    again = await asyncio.to_thread(checked, "cancel", run_id, env=env)
    assert "already ended" in again.stdout


async def test_a_killed_parent_and_its_child_resume_on_a_new_worker_process(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "durable.db"
    marks = tmp_path / "marks"
    job = f'{{"n": 1, "path": "{marks}"}}'
    running = _start("run", "family.waiting_parent", "--input", job, "--run-id", "killed",
                     "--local", env=local_env)  # fmt: skip
    try:
        (child,) = await _waiting_children(store, "killed", 1)
    finally:
        running.send_signal(signal.SIGKILL)
        running.communicate()

    recovering = _start("worker", "--local", env=local_env)
    try:
        # The new worker takes the parent over once its lease lapses, and the parent its child.
        for _ in range(400):
            if await _states(store, [child]) == ["running"] and await _child_waits_again(
                store, child
            ):
                break
            await asyncio.sleep(0.05)
        sent = await asyncio.to_thread(
            checked, "event", child, "go", "--payload", "5", "--local", env=local_env
        )
        assert sent.returncode == 0, sent.stderr
        for _ in range(400):
            if await _states(store, ["killed", child]) == ["completed", "completed"]:
                break
            await asyncio.sleep(0.05)
    finally:
        recovering.send_signal(signal.SIGTERM)
        recovering.communicate(timeout=30)
    assert await _states(store, ["killed", child]) == ["completed", "completed"]
    assert marks.read_text().split() == ["before-1"]  # the child's step ran once


async def _child_waits_again(path: Path, child: str) -> bool:
    """Whether a worker holds ``child`` again (its lease is live)."""
    store = SqliteStore(path)
    try:
        run = await store.load_run(child)
    finally:
        await store.close()
    return run is not None and run.lease_generation >= 2


def test_a_policy_given_to_durable_run_applies_to_that_run(local_env: dict[str, str]) -> None:
    refused = checked("run", "family.undelegated", "--input", "{}", "--local", env=local_env)
    allowed = checked(
        "run", "family.undelegated", "--input", "{}", "--delegation", '{"max_calls": 1}',
        "--local", env=local_env,
    )  # fmt: skip
    wrong = checked(
        "run", "family.undelegated", "--input", "{}", "--delegation", '{"max_calls": -1}',
        "--local", env=local_env,
    )  # fmt: skip

    assert refused.returncode == 0, refused.stderr
    assert '"delegation_disabled"' in refused.stdout
    assert allowed.returncode == 0, allowed.stderr
    assert '"allowed"' in allowed.stdout
    assert wrong.returncode == 2
    assert "--delegation is not a delegation policy (max_calls:" in wrong.stderr
