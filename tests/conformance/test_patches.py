"""``ctx.patched``: agent code changes under runs in flight, on every substrate.

A run recorded before a change replays the old path; a run that reaches the
call fresh takes the new one, and says so again on every replay. The answer
takes no position, so the steps after it keep their positions either way.
"""

from __future__ import annotations

import pytest

from durable import ErrorCode
from tests.conformance import agents, approval_agents, family
from tests.conformance.agents import Job
from tests.conformance.substrates import Substrate
from tests.conformance.test_scenarios import expect_error


async def deploy_midway(substrate: Substrate, run_id: str, before: str | None, after: str) -> None:
    """Start the run on the code ``before``, and while it waits, deploy ``after``."""
    agents.KNOBS["patch"] = before
    await substrate.start(agents.patched, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    agents.KNOBS["patch"] = after
    await substrate.resume(agents.patched, Job(), run_id=run_id)
    await substrate.signal_event(run_id, "go", None)


async def test_a_run_from_before_the_change_keeps_the_old_path(
    substrate: Substrate, run_id: str
) -> None:
    await deploy_midway(substrate, run_id, None, "patched")

    assert await substrate.result(run_id) == ["old", "asked again: False"]
    steps = await substrate.steps(run_id)
    assert [s.intent for s in steps] == ["first", "await_event:go", "last"]
    assert agents.CALLS["add_one"] == 2  # "check" never ran


async def test_a_run_that_reaches_the_change_fresh_takes_it_on_every_replay(
    substrate: Substrate, run_id: str
) -> None:
    await deploy_midway(substrate, run_id, "patched", "patched")

    assert await substrate.result(run_id) == ["new", "asked again: True"]
    steps = await substrate.steps(run_id)
    assert [(s.step_index, s.intent) for s in steps] == [
        (0, "first"),
        (1, "check"),  # the patch took no position
        (2, "await_event:go"),
        (3, "last"),
    ]
    assert agents.CALLS["add_one"] == 3


async def test_a_deprecated_patch_replays_runs_that_took_it(
    substrate: Substrate, run_id: str
) -> None:
    await deploy_midway(substrate, run_id, "patched", "deprecated")

    assert await substrate.result(run_id) == ["new"]
    assert [s.intent for s in await substrate.steps(run_id)] == [
        "first",
        "check",
        "await_event:go",
        "last",
    ]


async def test_a_new_run_on_deprecated_code_takes_the_change(
    substrate: Substrate, run_id: str
) -> None:
    agents.KNOBS["patch"] = "deprecated"
    await substrate.start(agents.patched, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.send_event(run_id, "go", None)

    assert await substrate.result(run_id) == ["new"]


async def test_the_same_change_unguarded_fails_a_run_from_before_it(
    substrate: Substrate, run_id: str
) -> None:
    await deploy_midway(substrate, run_id, None, "unguarded")

    error = await expect_error(substrate, run_id, ErrorCode.STEP_DIVERGENCE)
    if substrate.local:  # Temporal's own nondeterminism message names the history event
        assert "'check'" in str(error)


async def test_patch_markers_cannot_be_sent_as_events(substrate: Substrate, run_id: str) -> None:
    agents.KNOBS["patch"] = "patched"
    await substrate.start(agents.patched, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")

    with pytest.raises(ValueError, match="reserved"):
        await substrate.send_event(run_id, "patch:check-first", True)

    await substrate.send_event(run_id, "go", None)
    assert await substrate.result(run_id) == ["new", "asked again: True"]


@pytest.mark.parametrize(
    ("code", "diverges"),
    [
        (None, False),  # unchanged
        ("patched", False),  # the change behind ctx.patched
        ("unguarded", True),  # the change with no patch
        ("deprecated", True),  # the old path gone while a run from before the change waits
    ],
)
async def test_check_compat_finds_the_runs_a_deploy_would_break(
    substrate: Substrate, run_id: str, code: str | None, diverges: bool
) -> None:
    await substrate.start(agents.patched, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)
    agents.KNOBS["patch"] = code

    report = await substrate.check_compat()

    assert run_id in report.checked  # a shared database holds other tests' runs too
    mine = [found for found in report.diverging if found.run_id == run_id]
    assert bool(mine) is diverges
    if diverges:
        (found,) = mine
        assert (found.agent, found.position) == ("conformance.patched", 1)
        assert found.now is not None
        assert "'check'" in found.now
        if substrate.local:  # history shows a wait as no step of its own
            assert found.recorded == "event 'await_event:go'"
        assert found.error
    assert agents.CALLS["add_one"] == 1  # the check ran no step


async def test_check_compat_passes_a_run_that_took_the_patch_once_it_is_deprecated(
    substrate: Substrate, run_id: str
) -> None:
    agents.KNOBS["patch"] = "patched"
    await substrate.start(agents.patched, Job(), run_id=run_id)
    await substrate.wait_for_step(run_id, "await_event:go")
    await substrate.crash(run_id)

    agents.KNOBS["patch"] = "deprecated"
    report = await substrate.check_compat()
    assert run_id in report.checked
    assert run_id not in [found.run_id for found in report.diverging]

    agents.KNOBS["patch"] = None  # the patch removed while a run that took it waits
    report = await substrate.check_compat(agents=["conformance.patched"])
    (found,) = [found for found in report.diverging if found.run_id == run_id]
    assert found.position == 1


async def test_check_compat_passes_unchanged_runs_waiting_on_approvals_and_children(
    substrate: Substrate, run_id: str
) -> None:
    await substrate.start(approval_agents.refund, approval_agents.Ask(), run_id=run_id)
    await substrate.pending(run_id)
    parent = f"{run_id}-parent"
    await substrate.start(family.hold_two, family.Ask(), run_id=parent)
    for child in (f"{parent}/family.waiting_leaf-0", f"{parent}/family.waiting_leaf-1"):
        await substrate.wait_for_step(child, "await_event:go")

    report = await substrate.check_compat(
        agents=["approvals.refund", "family.hold_two", "family.waiting_leaf"]
    )

    assert {run_id, parent} <= set(report.checked)
    assert {f"{parent}/family.waiting_leaf-0", f"{parent}/family.waiting_leaf-1"} <= set(
        report.checked
    )
    mine = [found for found in report.diverging if found.run_id.startswith(run_id)]
    assert mine == []
