"""Recorded histories replay with today's code, and a changed step order is caught on replay.

The histories in ``tests/histories/`` are a stored contract with runs in
flight: if a change to the workflow code stops them replaying, runs started
before the deploy would break. Re-record them (``python -m
tests.histories.record``) only when that break is intended.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

import durable_agents.examples.refund  # noqa: F401  (registers the agents the histories ran)
import tests.conformance.family  # noqa: F401  (registers the child-run agents)
from durable_agents import DurableAgentsPlugin
from durable_agents.agents import conversation as _conversation  # noqa: F401  (the conversation agent)
from tests.conformance import agents

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
MODULES = ("durable_agents.examples.refund", "tests.conformance.agents", "tests.conformance.family")


def replayer() -> Replayer:
    return Replayer(workflows=[], plugins=[DurableAgentsPlugin(MODULES)])


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _knobs_as_recorded() -> Iterator[None]:
    agents.reset()
    agents.KNOBS.update(wait=False)  # the versioned run was recorded without its wait
    yield
    agents.reset()


@pytest.mark.parametrize(
    "name",
    [
        "refund-review",
        "versioned",
        "retrying",
        # A parent with three children in parallel, and one child of it.
        "fan-out",
        "fan-out--family.leaf-0",
        # A parent cancelled with two children in flight: they are cancelled first.
        "cancelled",
        # A conversation: its parent, and the conversation agent's own run.
        "talk",
        "talk--conversation-0",
    ],
)
async def test_recorded_histories_replay(name: str) -> None:
    result = await replayer().replay_workflow(history(name))

    assert result.replay_failure is None
    assert agents.CALLS == {}  # replay never runs a step


async def test_a_renamed_step_is_caught_on_replay() -> None:
    agents.KNOBS["intent"] = "a renamed first step"

    with pytest.raises(NondeterminismError, match="a renamed first step"):
        await replayer().replay_workflow(history("versioned"))


async def test_a_changed_input_fingerprint_is_caught_on_replay() -> None:
    agents.KNOBS["fingerprint"] = {"n": 3}

    with pytest.raises(NondeterminismError, match="does not match activity id"):
        await replayer().replay_workflow(history("versioned"))
