"""``durable approvals``, ``approve``, ``reject``, ``list --status`` and the approvals
``durable status`` shows, run as processes against a local SQLite store and a dev server.

Every answer is asserted by its exit status and its words, and no command may print a
traceback: an unknown id, a bad edit, a second decision and a rejection without a reason
are each one clear line.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from durable import PendingApproval
from durable_agents import DurableAgentsPlugin, cli
from durable_agents.adapters.local import (
    RunResult,
    SqliteStore,
    decide_approval,
    pending_approvals,
    run_durable,
)
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.conformance import approval_agents as agents
from tests.conformance.approval_agents import Ask
from tests.support.cli import ROOT, checked, command

MODULES = "tests.conformance.approval_agents"


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The local store in ``tmp_path``; no Temporal server is needed or reachable."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The store ``durable --local`` uses under ``local_env``."""
    sqlite = SqliteStore(tmp_path / "durable.db")
    yield sqlite
    await sqlite.close()


async def durable(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``durable ARGS`` as a process, while this test's own runs go on."""
    return await asyncio.to_thread(checked, *args, env=env)


async def _asking(
    store: SqliteStore, run_id: str, agent: Any = agents.refund, ask: Ask | None = None
) -> asyncio.Task[RunResult[Any]]:
    """A run of ``agent`` in this process, once it waits for its approval."""
    task = asyncio.create_task(
        run_durable(agent, ask or Ask(), store=store, run_id=run_id, poll_interval=0.02)
    )
    while not [p for p in await pending_approvals(store) if p.run_id == run_id]:
        assert not task.done(), task
        await asyncio.sleep(0.02)
    return task


def _rows(listing: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The cells of ``durable list``'s rows, under its header."""
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["run", "agent", "status"]
    return [row.split() for row in rows]


# durable approvals


async def test_approvals_lists_each_request_with_its_input_and_deadline(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    refund = await _asking(store, run_id, ask=Ask(amount=25, timeout=3600))
    plain = await _asking(store, f"{run_id}-plain", agent=agents.plain)

    listed = await durable("approvals", "--local", env=local_env)
    only = await durable("approvals", "--agent", "approvals.plain", "--local", env=local_env)
    as_json = await durable("approvals", "--json", "--local", env=local_env)

    assert listed.returncode == 0, listed.stderr
    assert f"{run_id}:approval-0  run {run_id}, agent approvals.refund\n" in listed.stdout
    assert "  action: issue_refund (tool payments.refund)\n" in listed.stdout
    assert "  summary: refund 25 on order A-1\n" in listed.stdout
    assert '  proposed input: {"order": "A-1", "amount": 25}\n' in listed.stdout
    deadline = listed.stdout.split("deadline: ")[1].split("\n")[0]
    assert datetime.fromisoformat(deadline) > datetime.now(UTC)
    assert f"{run_id}-plain:approval-0  run {run_id}-plain, agent approvals.plain" in listed.stdout
    assert "decide with `durable approve ID [--edit JSON] --local`" in listed.stdout
    assert f"{run_id}-plain:approval-0" in only.stdout
    assert f"{run_id}:approval-0" not in only.stdout
    pending = {p["approval_id"]: p for p in json.loads(as_json.stdout)}
    assert set(pending) == {f"{run_id}:approval-0", f"{run_id}-plain:approval-0"}
    assert pending[f"{run_id}:approval-0"]["input_schema"]["properties"]["amount"]["minimum"] == 0
    for task, target in ((refund, run_id), (plain, f"{run_id}-plain")):
        await decide_approval(store, target, "approve", decided_by="ana")
        await task


async def test_approvals_says_when_none_are_pending(local_env: dict[str, str]) -> None:
    none = await durable("approvals", "--local", env=local_env)
    of_agent = await durable("approvals", "--agent", "billing", "--local", env=local_env)
    as_json = await durable("approvals", "--json", "--local", env=local_env)

    assert (none.returncode, none.stdout) == (0, "no approvals pending\n")
    assert of_agent.stdout == "no approvals pending for agent billing\n"
    assert json.loads(as_json.stdout) == []


# durable approve / reject, and what durable status and result show


async def test_approve_decides_and_status_shows_the_request_and_who_when_why(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = await _asking(store, run_id, ask=Ask(amount=25))
    asking = await durable("status", run_id, "--local", env=local_env)
    result = await durable("result", run_id, "--local", env=local_env)

    done = await durable(
        "approve", run_id, "--by", "ana", "--reason", "looks right", "--local", env=local_env
    )
    outcome = (await task).result
    decided = await durable("status", run_id, "--local", env=local_env)

    assert asking.stdout.startswith(
        f"run {run_id}: waiting_for_approval (agent approvals.refund), waiting for approval:0\n"
    )
    steps = [line.split() for line in asking.stdout.splitlines()]
    assert ["0", "approval:issue_refund", "approval", "completed", "1"] in steps
    assert ["1", "await_event:approval:0", "event", "running", "1"] in steps  # not interrupted
    assert (
        f"    decision: pending; decide with `durable approve {run_id}:approval-0 --local`"
        in asking.stdout
    )
    assert f"run {run_id} is still waiting for an approval" in result.stdout
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"approval {run_id}:approval-0: approved by ana at ")
    assert done.stdout.endswith("; reason: looks right\n")  # the worker holds the run: no more
    assert (outcome["decision"], outcome["decided_by"], outcome["reason"]) == (
        "approve", "ana", "looks right"
    )  # fmt: skip
    assert decided.stdout.startswith(f"run {run_id}: completed (agent approvals.refund)\n")
    assert "approvals:\n" in decided.stdout
    request = f"  {run_id}:approval-0 at step 0: issue_refund (tool payments.refund)\n"
    assert request in decided.stdout
    assert "    summary: refund 25 on order A-1\n" in decided.stdout
    assert '    proposed input: {"order": "A-1", "amount": 25}\n' in decided.stdout
    verdict = decided.stdout.split("    decision: ")[1].split("\n")[0]
    assert verdict.startswith("approved by ana at ")
    assert verdict.endswith("; reason: looks right")
    when = verdict.removeprefix("approved by ana at ").split(";")[0]
    assert datetime.fromisoformat(when) <= datetime.now(UTC)


async def test_an_edit_reaches_the_run_typed(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = await _asking(store, run_id, ask=Ask(amount=25))

    done = await durable(
        "approve", f"{run_id}:approval-0", "--edit", '{"order": "A-1", "amount": 20}',
        "--reason", "partial", "--by", "ana", "--local", env=local_env,
    )  # fmt: skip
    outcome = (await task).result
    status = await durable("status", run_id, "--local", env=local_env)

    assert done.returncode == 0, done.stderr
    assert "approved with an edit by ana at " in done.stdout
    assert 'input {"order": "A-1", "amount": 20}; reason: partial' in done.stdout
    assert (outcome["decision"], outcome["typed"], outcome["input"]) == (
        "edit", True, {"order": "A-1", "amount": 20}
    )  # fmt: skip
    assert "approved with an edit by ana at " in status.stdout
    assert 'input {"order": "A-1", "amount": 20}; reason: partial' in status.stdout


async def test_a_bad_edit_is_refused_with_its_errors_and_the_run_keeps_asking(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = await _asking(store, run_id)

    bad = await durable(
        "approve", run_id, "--edit", '{"order": "A-1", "amount": -5}', "--by", "ana", "--local",
        env=local_env,
    )  # fmt: skip
    still = await durable("approvals", "--local", env=local_env)

    assert bad.returncode == 1, bad
    assert bad.stdout == ""
    assert bad.stderr.startswith("durable approve: [event_payload_invalid] the edited input of")
    assert "$.amount: -5 is less than the minimum of 0" in bad.stderr
    assert "(the run keeps waiting)" in bad.stderr
    assert f"{run_id}:approval-0" in still.stdout
    run = await store.load_run(run_id)
    assert run is not None
    assert run.status == "waiting_for_approval"
    await decide_approval(store, run_id, "approve", decided_by="ana")
    assert (await task).result["decision"] == "approve"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("{amount", "durable approve: --edit is not valid JSON (Expecting property name"),
        ("null", "durable approve: --edit null is no edit; give the edited input as JSON"),
        ("@no-such-file.json", "durable approve: cannot read --edit file 'no-such-file.json'"),
    ],
)
async def test_an_edit_that_is_not_json_is_bad_input(
    store: SqliteStore, local_env: dict[str, str], run_id: str, edit: str, message: str
) -> None:
    task = await _asking(store, run_id)

    done = await durable("approve", run_id, "--edit", edit, "--local", env=local_env)

    assert done.returncode == 2, done
    assert done.stderr.startswith(message), done.stderr
    assert len(await pending_approvals(store)) == 1  # nothing was sent
    await decide_approval(store, run_id, "approve", decided_by="ana")
    await task


async def test_a_second_decision_answers_already_decided_with_the_first(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = await _asking(store, run_id)
    first = await durable(
        "reject", run_id, "--reason", "duplicate order", "--by", "sam", "--local", env=local_env
    )
    await task

    again = await durable(
        "approve", f"{run_id}:approval-0", "--by", "ana", "--local", env=local_env
    )

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"approval {run_id}:approval-0: rejected by sam at ")
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.startswith(
        f"approval {run_id}:approval-0 was already decided: rejected by sam at "
    )
    assert "; reason: duplicate order; the first decision stands" in again.stdout
    assert (await task).result["decided_by"] == "sam"


async def test_the_decider_is_the_os_user_unless_given(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = await _asking(store, run_id)

    done = await durable("reject", run_id, "--reason", "not ours", "--local", env=local_env)

    assert done.returncode == 0, done.stderr
    assert f": rejected by {getpass.getuser()} at " in done.stdout
    assert (await task).result["decided_by"] == getpass.getuser()


def test_a_process_without_a_user_name_must_say_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def nobody() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", nobody)
    monkeypatch.setenv("DURABLE_DATA", str(tmp_path))

    code = cli._run(cli.parser().parse_args(["reject", "r", "--reason", "x", "--local"]))

    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "durable reject: cannot tell who decides (this process has no user name); pass --by NAME\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("reject", "some-run"), "the following arguments are required: --reason"),
        (("reject", "some-run", "--reason", ""), "a rejection needs a reason"),
        (("approve", "some-run", "--by", ""), "decided_by must not be empty"),
        (("approve", "no-such-run"), "[approval_not_found] no approval or run 'no-such-run'"),
        (("reject", "gone:approval-3", "--reason", "x"), "there is no run 'gone' in this store"),
    ],
)
async def test_bad_decisions_are_refused_with_the_fix(
    store: SqliteStore, local_env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    task = await _asking(store, "some-run")

    done = await durable(*args, "--local", env=local_env)

    assert done.returncode == 2, done
    assert message in done.stderr
    assert len(await pending_approvals(store)) == 1  # the run still asks
    await decide_approval(store, "some-run", "approve", decided_by="ana")
    await task


async def test_an_approval_id_at_another_kind_of_step_is_not_found(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    task = asyncio.create_task(run_durable(agents.after_go, Ask(), store=store, run_id=run_id))
    while not await store.load_steps(run_id):
        await asyncio.sleep(0.02)

    done = await durable("approve", f"{run_id}:approval-0", "--by", "ana", "--local", env=local_env)
    waiting = await durable("approve", run_id, "--by", "ana", "--local", env=local_env)

    assert done.returncode == 2, done
    assert "[approval_not_found]" in done.stderr
    assert "holds a step of kind 'event' (await_event:go)" in done.stderr
    assert waiting.returncode == 2, waiting
    assert f"run {run_id!r} has asked for no approval yet" in waiting.stderr
    await store.emit_event(run_id, "go", None)
    await decide_approval(store, f"{run_id}:approval-1", "approve", decided_by="ana")
    await task


async def test_a_decision_while_no_worker_runs_is_kept_until_a_worker_resumes_the_run(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    env = {**local_env, "DURABLE_LEASE_SECONDS": "1"}
    runner = await asyncio.create_subprocess_exec(
        *command(), "run", "approvals.refund", "--input", '{"amount": 25}', "--run-id", run_id,
        "--local", cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not await pending_approvals(store):
            assert runner.returncode is None
            await asyncio.sleep(0.05)
    finally:
        runner.kill()
        await runner.wait()
    run = await store.load_run(run_id)
    assert run is not None
    assert run.lease_expires_at is not None
    await asyncio.sleep((run.lease_expires_at - datetime.now(UTC)).total_seconds() + 0.1)

    done = await durable(
        "approve", run_id, "--edit", '{"order": "A-1", "amount": 20}', "--by", "ana", "--local",
        env=env,
    )  # fmt: skip
    listed = await durable("approvals", "--local", env=env)
    worker = await asyncio.create_subprocess_exec(
        *command(), "worker", "--local", cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while (run := await store.load_run(run_id)) is not None and run.active:
            assert worker.returncode is None
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    result = await durable("result", run_id, "--local", env=env)

    assert done.returncode == 0, done.stderr
    assert f"no worker runs {run_id} now: the decision is kept" in done.stdout
    assert listed.stdout == "no approvals pending\n"  # decided, waiting for a worker
    outcome = json.loads(result.stdout)
    assert (outcome["decision"], outcome["input"], outcome["decided_by"]) == (
        "edit", {"order": "A-1", "amount": 20}, "ana"
    )  # fmt: skip


# durable list --status


async def test_list_filters_runs_by_state(
    store: SqliteStore, local_env: dict[str, str], run_id: str
) -> None:
    asking = await _asking(store, f"{run_id}-asks")
    waiting = asyncio.create_task(
        run_durable(agents.after_go, Ask(), store=store, run_id=f"{run_id}-waits")
    )
    while (run := await store.load_run(f"{run_id}-waits")) is None or run.status != "waiting":
        await asyncio.sleep(0.02)
    done = await _asking(store, f"{run_id}-done")
    await decide_approval(store, f"{run_id}-done", "approve", decided_by="ana")
    await done

    lists = {
        status: await durable("list", "--status", status, "--local", env=local_env)
        for status in ("waiting_for_approval", "waiting", "completed", "failed")
    }
    everything = await durable("list", "--local", env=local_env)
    bad = await durable("list", "--status", "paused", "--local", env=local_env)

    assert _rows(lists["waiting_for_approval"]) == [
        [f"{run_id}-asks", "approvals.refund", "waiting_for_approval"]
    ]
    assert _rows(lists["waiting"]) == [[f"{run_id}-waits", "approvals.after_go", "waiting"]]
    assert _rows(lists["completed"]) == [[f"{run_id}-done", "approvals.refund", "completed"]]
    assert lists["failed"].stdout == "no failed runs\n"
    for name in ("asks", "waits", "done"):
        assert f"{run_id}-{name}" in everything.stdout
    assert bad.returncode == 2
    assert "argument --status: invalid choice: 'paused'" in bad.stderr
    await decide_approval(store, f"{run_id}-asks", "approve", decided_by="ana")
    await store.emit_event(f"{run_id}-waits", "go", None)
    await decide_approval(store, f"{run_id}-waits:approval-1", "approve", decided_by="ana")
    await asyncio.gather(asking, waiting)


# On Temporal: the same commands against a dev server


@pytest.fixture
def env(temporal_server: DevServer, task_queue: str, local_env: dict[str, str]) -> dict[str, str]:
    return {**local_env, "TEMPORAL_ADDRESS": temporal_server.address, "TASK_QUEUE": task_queue}


@pytest.fixture
async def served(client: Client, task_queue: str) -> AsyncIterator[AgentClient]:
    """A client whose task queue a worker hosting the approval agents serves."""
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin((MODULES,))]):
        yield AgentClient(client, task_queue=task_queue)


async def _listed(runs: AgentClient, run_id: str) -> PendingApproval:
    """The run's approval, once the server's run listing shows it."""
    for _ in range(300):
        for pending in await runs.approvals():
            if pending.run_id == run_id:
                return pending
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never listed its approval")


async def test_on_temporal_approvals_are_listed_decided_and_shown(
    served: AgentClient, env: dict[str, str], run_id: str
) -> None:
    edited, rejected = run_id, f"{run_id}-r"
    await served.start(agents.refund, Ask(amount=25), run_id=edited)
    await served.start(agents.refund, Ask(amount=30), run_id=rejected)
    await _listed(served, edited)
    await _listed(served, rejected)

    listed = await durable("approvals", "--agent", "approvals.refund", env=env)
    asking = await durable("list", "--status", "waiting_for_approval", env=env)
    bad = await durable(
        "approve", rejected, "--edit", '{"order": "A-1", "amount": -5}', "--by", "ana", env=env
    )
    edit = await durable(
        "approve", edited, "--edit", '{"order": "A-1", "amount": 20}', "--by", "ana",
        "--reason", "partial", env=env,
    )  # fmt: skip
    reject = await durable("reject", rejected, "--by", "sam", "--reason", "duplicate", env=env)
    results = [await served.result(edited), await served.result(rejected)]
    again = await durable(
        "reject", f"{edited}:approval-0", "--by", "sam", "--reason", "late", env=env
    )
    status = await durable("status", edited, env=env)
    completed = await durable("list", "--status", "completed", env=env)
    unknown = await durable("approve", f"no-run-{run_id}", "--by", "ana", env=env)

    assert listed.returncode == 0, listed.stderr
    assert f"{edited}:approval-0  run {edited}, agent approvals.refund" in listed.stdout
    assert '  proposed input: {"order": "A-1", "amount": 30}' in listed.stdout
    assert [edited, "approvals.refund", "waiting_for_approval"] in _rows(asking)
    assert bad.returncode == 1
    assert "$.amount: -5 is less than the minimum of 0" in bad.stderr
    assert edit.returncode == 0, edit.stderr
    assert edit.stdout.startswith(f"approval {edited}:approval-0: approved with an edit by ana at ")
    assert reject.stdout.startswith(f"approval {rejected}:approval-0: rejected by sam at ")
    assert [(r["decision"], r["decided_by"]) for r in results] == [
        ("edit", "ana"),
        ("reject", "sam"),
    ]
    assert results[0]["input"] == {"order": "A-1", "amount": 20}
    assert again.returncode == 0, again.stderr
    assert "was already decided: approved with an edit by ana at " in again.stdout
    assert f"  {edited}:approval-0 at step 0: issue_refund (tool payments.refund)" in status.stdout
    assert "    decision: approved with an edit by ana at " in status.stdout
    assert 'input {"order": "A-1", "amount": 20}; reason: partial' in status.stdout
    assert [edited, "approvals.refund", "completed"] in _rows(completed)
    assert [rejected, "approvals.refund", "completed"] in _rows(completed)
    assert unknown.returncode == 2
    assert f"[approval_not_found] no approval or run 'no-run-{run_id}'" in unknown.stderr


async def test_on_temporal_a_decision_no_worker_answers_is_delivered_then_applied(
    client: Client, task_queue: str, env: dict[str, str], run_id: str
) -> None:
    runs = AgentClient(client, task_queue=task_queue)
    await runs.start(agents.refund, Ask(), run_id=run_id)  # no worker polls the queue yet

    done = await durable("approve", f"{run_id}:approval-0", "--by", "ana", env=env)
    async with Worker(client, task_queue=task_queue, plugins=[DurableAgentsPlugin((MODULES,))]):
        outcome = await runs.result(run_id)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"approval {run_id}:approval-0: approved by ana at ")
    assert "delivered, not yet acknowledged: no worker answered in time" in done.stdout
    assert (outcome["decision"], outcome["decided_by"]) == ("approve", "ana")
