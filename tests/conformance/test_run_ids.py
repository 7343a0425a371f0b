"""Every run id the id rule allows works on every substrate, however long its encoding."""

from __future__ import annotations

import uuid

import pytest

from durable import MAX_NAME_LENGTH
from tests.conformance import agents
from tests.conformance.agents import Job
from tests.conformance.substrates import Substrate


def _longest(char: str) -> str:
    """A unique id of ``MAX_NAME_LENGTH`` characters, mostly ``char``."""
    tag = uuid.uuid4().hex[:8]
    return tag + char * (MAX_NAME_LENGTH - len(tag))


@pytest.mark.parametrize("char", ["a", "ü", "😀"], ids=["ascii", "latin", "emoji"])
async def test_the_longest_run_ids_run_and_resume(substrate: Substrate, char: str) -> None:
    run_id = _longest(char)
    await substrate.start(agents.two_phase, Job(n=1), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    await substrate.resume(agents.two_phase, Job(n=1), run_id=run_id)
    await substrate.send_event(run_id, "go", {})

    assert await substrate.result(run_id) == 4
    assert [s.intent for s in await substrate.steps(run_id)] == [
        "first",
        "second",
        "await_event:go",
        "third",
    ]
