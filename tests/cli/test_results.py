"""``durable run`` and ``durable result`` as a process: what they say about a run's input and state.

Every answer is one clear line with a proper exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable import agent_definition
from durable_agents.adapters.local import SqliteStore, run_durable, send_event
from durable_agents.adapters.temporal import DevServer
from tests.conformance.agents import Job, ask, waiter
from tests.support.cli import durable, no_traceback
from tests.support.llm_server import catalog as models_on
from tests.support.llm_server import model_server

MODULES = "tests.conformance.agents"


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
    }


@pytest.fixture(params=["local", "temporal"])
def substrate_args(
    request: pytest.FixtureRequest, local_env: dict[str, str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    if request.param == "local":
        return ("--local",), local_env
    server: DevServer = request.getfixturevalue("temporal_server")
    return (), {**local_env, "TEMPORAL_ADDRESS": server.address}


def test_an_input_of_the_wrong_type_is_input_invalid_not_a_result_error(
    substrate_args: tuple[tuple[str, ...], dict[str, str]],
) -> None:
    flags, env = substrate_args

    done = durable("run", "conformance.pipeline", "--input", '{"n": "many"}', *flags, env=env)

    no_traceback(done)
    assert done.returncode == 2, done
    assert "[input_invalid]" in done.stderr
    assert "the input of agent 'conformance.pipeline' does not match" in done.stderr
    assert "send an input of that type" in done.stderr
    assert "result_not_serializable" not in done.stderr
    assert "return type" not in done.stderr


async def _running_run(tmp_path: Path, *, lease_for: timedelta) -> None:
    """A run of ``conformance.pipeline`` left running under worker ``w1``'s lease."""
    store = SqliteStore(tmp_path / "durable.db")
    try:
        await store.start_or_resume(
            run_id="held",
            agent="conformance.pipeline",
            manifest=agent_definition("conformance.pipeline").manifest(Job()),
            worker_id="w1",
            lease_for=lease_for,
        )
    finally:
        await store.close()


async def test_result_of_a_running_run_names_its_live_lease_holder(
    tmp_path: Path, local_env: dict[str, str]
) -> None:
    await _running_run(tmp_path, lease_for=timedelta(minutes=10))

    done = durable("result", "held", "--local", env=local_env)

    no_traceback(done)
    assert done.returncode == 0, done
    assert "run held is still running" in done.stdout
    assert "worker 'w1' holds its lease until" in done.stdout
    expires = done.stdout.split("until ")[1].split(" ")[0]
    assert datetime.fromisoformat(expires) > datetime.now(UTC) + timedelta(minutes=9)


async def test_result_of_a_running_run_without_a_live_worker_says_so(
    tmp_path: Path, local_env: dict[str, str]
) -> None:
    await _running_run(tmp_path, lease_for=timedelta(milliseconds=1))

    done = durable("result", "held", "--local", env=local_env)

    no_traceback(done)
    assert done.returncode == 0, done
    assert "run held is still running" in done.stdout
    assert "no worker holds it (its lease expired at" in done.stdout
    assert "start `durable worker --local`" in done.stdout
    assert "its worker continues it" not in done.stdout


async def test_status_shows_usage_a_server_never_reported_as_unknown(
    tmp_path: Path, local_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with model_server() as server:
        monkeypatch.setenv("DURABLE_MODELS", json.dumps(models_on(server, ["no-usage"])))
        store = SqliteStore(tmp_path / "durable.db")
        try:
            await run_durable(ask, Job(key="no-usage"), store=store, run_id="unknown-usage")
        finally:
            await store.close()

    done = await asyncio.to_thread(durable, "status", "unknown-usage", "--local", env=local_env)

    no_traceback(done)
    assert done.returncode == 0, done
    assert "model calls: unknown tokens in, unknown out, cost unknown" in done.stdout
    assert "0 tokens" not in done.stdout


async def test_result_says_an_active_run_is_still_going_and_waits_with_wait(
    tmp_path: Path, local_env: dict[str, str]
) -> None:
    store = SqliteStore(tmp_path / "durable.db")
    try:
        run = asyncio.create_task(run_durable(waiter, Job(key="go"), store=store, run_id="later"))
        while (found := await store.load_run("later")) is None or found.status != "waiting":
            await asyncio.sleep(0.02)
        said = await asyncio.to_thread(durable, "result", "later", "--local", env=local_env)
        waiting = asyncio.create_task(
            asyncio.to_thread(durable, "result", "later", "--wait", "--local", env=local_env)
        )
        await asyncio.sleep(1.5)
        still = not waiting.done()
        await send_event(store, "later", "go", {"v": 1})
        await run
        done = await asyncio.wait_for(waiting, 60)
    finally:
        await store.close()

    no_traceback(said)
    assert said.returncode == 0, said
    assert said.stdout.startswith("run later is still waiting for an event; worker ")
    assert "`durable result later --wait --local` waits for its end" in said.stdout
    assert still
    no_traceback(done)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"v": 1})


def test_running_the_same_run_again_finds_it(local_env: dict[str, str]) -> None:
    args = ("run", "conformance.pipeline", "--input", '{"n": 2}', "--run-id", "twice", "--local")

    first = durable(*args, env=local_env)
    again = durable(*args, env=local_env)
    other = durable(*args[:3], '{"n": 3}', *args[4:], env=local_env)

    for done in (first, again, other):
        no_traceback(done)
    assert first.returncode == 0, first
    assert first.stdout.startswith("started run twice of conformance.pipeline on the local store")
    assert again.returncode == 0, again
    assert again.stdout.startswith("found run twice of conformance.pipeline on the local store")
    assert "started before with this input" in again.stdout
    assert json.loads(again.stdout.split("\n", 1)[1]) == json.loads(first.stdout.split("\n", 1)[1])
    assert other.returncode == 1
    assert "[manifest_mismatch]" in other.stderr
    assert other.stdout == ""
