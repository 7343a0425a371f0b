"""The run-id rule for failed runs, the same on every substrate.

Started with ``retry_failed``, a run that failed or was cancelled starts again
fresh under its id; a completed one never runs again; without ``retry_failed``
an ended run is final; a run with child runs is not started again; other input
is refused. Locally through ``run_durable``, on Temporal through ``AgentClient``
(``ALLOW_DUPLICATE_FAILED_ONLY``).
"""

from __future__ import annotations

import pytest

from durable import DurableError, DurableRunInputMismatchError, ErrorCode
from tests.chat import agents
from tests.chat.agents import Job
from tests.chat.conftest import ChatSubstrate


async def fail_once(chat: ChatSubstrate, run_id: str) -> None:
    with pytest.raises(DurableError, match="the first call for"):
        await chat.run(agents.fails_once, Job(key=run_id), run_id=run_id, retry_failed=True)


async def test_a_failed_run_started_with_retry_failed_starts_again_fresh(
    chat: ChatSubstrate, run_id: str
) -> None:
    await fail_once(chat, run_id)

    result = await chat.run(agents.fails_once, Job(key=run_id), run_id=run_id, retry_failed=True)

    assert result == 2
    (step,) = await chat.steps(run_id)  # the failed attempt's record is gone
    assert (step.status, step.attempts, step.result) == ("completed", 1, 2)


async def test_a_completed_run_never_runs_again(chat: ChatSubstrate, run_id: str) -> None:
    await fail_once(chat, run_id)
    await chat.run(agents.fails_once, Job(key=run_id), run_id=run_id, retry_failed=True)

    again = await chat.run(agents.fails_once, Job(key=run_id), run_id=run_id, retry_failed=True)

    assert again == 2
    assert agents.calls[run_id] == 2


async def test_without_retry_failed_a_failed_run_stays_failed(
    chat: ChatSubstrate, run_id: str
) -> None:
    await fail_once(chat, run_id)

    with pytest.raises(DurableError, match="the first call for"):
        await chat.run(agents.fails_once, Job(key=run_id), run_id=run_id, retry_failed=False)
    assert agents.calls[run_id] == 1


async def test_a_failed_run_asked_again_with_other_input_is_refused(
    chat: ChatSubstrate, run_id: str
) -> None:
    await fail_once(chat, run_id)

    with pytest.raises(DurableRunInputMismatchError):
        await chat.run(agents.fails_once, Job(key="other"), run_id=run_id, retry_failed=True)
    assert agents.calls["other"] == 0


async def test_a_failed_run_with_child_runs_is_not_started_again(
    chat: ChatSubstrate, run_id: str
) -> None:
    # Its own error (locally the exception itself, on Temporal as a run failure).
    with pytest.raises(Exception, match="the parent failed after its child"):
        await chat.run(agents.parent_fails, Job(key=run_id), run_id=run_id, retry_failed=True)

    with pytest.raises(DurableError, match="the parent failed after its child") as again:
        await chat.run(agents.parent_fails, Job(key=run_id), run_id=run_id, retry_failed=True)

    assert again.value.code == ErrorCode.RUN_FAILED  # its recorded failure, not a new run
