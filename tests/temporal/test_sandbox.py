"""The workflow sandbox: workflow code loads only the safe face, and agents run checked.

Agent modules are imported inside the sandbox for every run instead of passed
through, so an agent that reads the clock with ``datetime.now()`` fails its
run, while its steps still run as the worker's activities, found by name in
registries the sandbox's copy left as they were.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable import (
    DurableContext,
    DurableRegistrationError,
    DurableRunFailedError,
    agent,
    registered_agents,
    registered_steps,
    step,
)
from durable._registry import registering_copies
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import WORKFLOW_SIDE_MODULES, AgentClient
from tests.temporal import sandbox_agents
from tests.temporal.sandbox_agents import Label

MODULES = ("tests.temporal.sandbox_agents",)

OUTSIDE_WORKFLOWS = (
    "durable_agents.adapters.temporal._approvals",
    "durable_agents.adapters.temporal._checkpoint_reads",
    "durable_agents.adapters.temporal._client",
    "durable_agents.adapters.temporal._delivery",
    "durable_agents.adapters.temporal._devserver",
    "durable_agents.adapters.temporal._live",
    "durable_agents.adapters.temporal._process",
    "durable_agents.adapters.temporal._sandbox",
    "durable_agents.adapters.temporal._status",
    "durable_agents._plugin",
)

_BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Unimportable(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED:
                raise ImportError(f"{name} is made unimportable for this test")
            return None

    sys.meta_path.insert(0, Unimportable())
    """
)


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where no client-side module can be imported."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED + textwrap.dedent(code), ",".join(OUTSIDE_WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflow_code_imports_only_the_safe_face() -> None:
    done = _run_blocked(
        """
        import durable_agents.workflows.agent
        import durable_agents.adapters.temporal
        from durable_agents.adapters.temporal import TemporalContext, run_on_workflow_step
        loaded = sorted(m for m in sys.modules if m.startswith("durable_agents.adapters.temporal."))
        print(",".join(loaded))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(",") == sorted(WORKFLOW_SIDE_MODULES)


@pytest.mark.parametrize("name", ["AgentClient", "DevServer", "exit_without_teardown"])
def test_the_block_bites_on_client_side_names(name: str) -> None:
    done = _run_blocked(f"from durable_agents.adapters.temporal import {name}")
    assert done.returncode != 0
    assert "is made unimportable for this test" in done.stderr


def test_client_side_names_are_loaded_on_first_use() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from durable_agents.adapters.temporal import AgentClient, DevServer; "
            "print('durable_agents.adapters.temporal._client' in sys.modules, "
            "AgentClient.__name__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.split() == ["True", "AgentClient"]


async def test_an_agent_reading_the_clock_fails_its_run(client: Client) -> None:
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=task_queue)
    run_id = f"clock-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await agents.start("sandbox.reads_the_clock", Label(label="now"), run_id=run_id)
        with pytest.raises(DurableRunFailedError) as failed:
            await agents.result(run_id)

    message = str(failed.value)
    assert "used datetime.datetime.now, which the workflow sandbox refuses" in message
    assert "ctx.now()" in message
    assert "RestrictedWorkflowAccessError" in message
    snapshot = await agents.snapshot(run_id)  # the run failed, not only its workflow task
    assert snapshot.state == "failed"
    assert "datetime.datetime.now" in (snapshot.failure or "")


async def test_an_agent_module_reading_the_clock_at_import_fails_its_runs(client: Client) -> None:
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=task_queue)
    run_id = f"loaded-{uuid.uuid4().hex[:8]}"
    plugin = DurableAgentsPlugin(("tests.temporal.sandbox_import_agents",))
    async with Worker(client, task_queue=task_queue, plugins=[plugin]):
        await agents.start("sandbox.loaded_at", {}, run_id=run_id)
        with pytest.raises(DurableRunFailedError) as failed:
            await agents.result(run_id)

    assert "used datetime.datetime.now, which the workflow sandbox refuses" in str(failed.value)


async def test_an_agent_asking_the_context_runs_its_steps_as_the_workers(client: Client) -> None:
    """Module-level imports of the clock, ``random`` and ``uuid`` are fine: only steps use them."""
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=task_queue)
    run_id = f"ctx-{uuid.uuid4().hex[:8]}"
    label = f"label-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin(MODULES)]):
        await agents.start("sandbox.asks_the_context", Label(label=label), run_id=run_id)
        result = await agents.result(run_id)

    assert result.stamp.label == label
    assert result.stamp.at >= result.started  # the step read the clock, outside the sandbox
    # The step ran the worker's own function: its module-level list is this process's.
    assert label in sandbox_agents.STAMPED
    # The sandbox's copy of the module registered nothing: the registries are the worker's.
    assert registered_agents()["sandbox.asks_the_context"].fn is sandbox_agents.asks_the_context
    assert registered_steps()["sandbox.stamp"].fn is sandbox_agents.stamp


async def _original(ctx: DurableContext, input: dict[str, str]) -> str:
    return "original"


async def _copy(ctx: DurableContext, input: dict[str, str]) -> str:
    return "copy"


async def _other(ctx: DurableContext, input: dict[str, str]) -> str:
    return "other"


def _as(fn: object, qualname: str) -> object:
    fn.__qualname__ = qualname  # type: ignore[attr-defined]
    fn.__name__ = qualname  # type: ignore[attr-defined]
    return fn


def test_a_copy_registers_nothing_and_a_clash_is_still_refused() -> None:
    name = f"sandbox.copied-{uuid.uuid4().hex[:8]}"
    original = agent(name=name)(_as(_original, "copied"))  # type: ignore[call-overload]
    with registering_copies():
        copy = agent(name=name)(_as(_copy, "copied"))  # type: ignore[call-overload]
        new = step(name=f"{name}.step")(_as(_other, "stepped"))  # type: ignore[call-overload]
    assert registered_agents()[name].fn is original
    assert registered_agents()[name] is not copy.__durable_agent__
    assert copy.__durable_agent__.fn is copy
    # A name the worker has not registered yet is registered as usual.
    assert registered_steps()[f"{name}.step"].fn is new
    with registering_copies(), pytest.raises(DurableRegistrationError, match="already used"):
        agent(name=name)(_as(_other, "other"))  # type: ignore[call-overload]
