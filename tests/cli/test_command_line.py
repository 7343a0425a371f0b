"""The ``durable`` command as a process: its exits, inputs, waits, pipes, tables and help.

Every failure must be one clear line with a proper exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from durable import ELLIPSIS, steps_table, table
from durable_agents import cli
from durable_agents.adapters.llm import ModelSettings
from durable_agents.adapters.local import SqliteStore, run_durable
from durable_agents.adapters.temporal import AgentClient, DevServer
from tests.cli.wide_agents import LONG_INTENT, long_intent
from tests.conformance.agents import Job, pipeline
from tests.support.cli import command, durable, no_traceback

ROOT = Path(__file__).resolve().parents[2]
MODULES = "durable_agents.examples.refund,tests.conformance.agents,tests.cli.wide_agents"
BIG = 200 * 1024
"""Over the 128 KiB a single command-line argument may hold."""


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The local store in ``tmp_path``; no Temporal server is needed or reachable."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DURABLE_AGENT_MODULES": MODULES,
        "DURABLE_DATA": str(tmp_path),
        "REFUND_LEDGER": str(tmp_path / "ledger.jsonl"),
    }


@pytest.fixture
def env(temporal_server: DevServer, task_queue: str, local_env: dict[str, str]) -> dict[str, str]:
    return {**local_env, "TEMPORAL_ADDRESS": temporal_server.address, "TASK_QUEUE": task_queue}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The store ``durable --local`` uses under ``local_env``."""
    sqlite = SqliteStore(tmp_path / "durable.db")
    yield sqlite
    await sqlite.close()


# A graceful stop exits 0, and no failure ends in a traceback.


@pytest.mark.parametrize("script", [False, True], ids=["durable-worker", "worker.py"])
async def test_a_worker_stopped_by_sigterm_exits_0_every_time(
    env: dict[str, str], client: Client, task_queue: str, tmp_path: Path, script: bool
) -> None:
    # The abort is intermittent (about one stop in ten here): stop several times, after
    # real work and after idle polls of different lengths.
    agents = AgentClient(client, task_queue=task_queue)
    for attempt in range(8):
        log = tmp_path / f"worker-{attempt}.log"
        with log.open("w") as sink:
            worker = await asyncio.create_subprocess_exec(
                *([sys.executable, "worker.py"] if script else [*command(), "worker"]),
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            run_id = f"stop-{attempt}-{task_queue}"
            await agents.start(pipeline, Job(n=attempt), run_id=run_id)
            assert (await asyncio.wait_for(agents.result(run_id), 30))["total"] == attempt + 1
            await asyncio.sleep(attempt * 0.4)
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.wait(), 30)
        finally:
            if worker.returncode is None:
                worker.kill()
        output = log.read_text()
        assert code == 0, output
        assert "worker stopped" in output
        assert "Fatal Python error" not in output
        assert "Traceback" not in output


def test_a_server_error_is_a_message(env: dict[str, str]) -> None:
    done = durable("list", env={**env, "TEMPORAL_NAMESPACE": "no-such-namespace"})

    no_traceback(done)
    assert done.returncode == 1
    assert "the Temporal server answered NOT_FOUND" in done.stderr
    assert "TEMPORAL_NAMESPACE" in done.stderr


def test_an_agent_module_that_does_not_import_is_bad_input(local_env: dict[str, str]) -> None:
    done = durable(
        "run", "conformance.pipeline", "--input", "{}", "--local",
        env={**local_env, "DURABLE_AGENT_MODULES": "no_such_module"},
    )  # fmt: skip

    no_traceback(done)
    assert done.returncode == 2
    assert done.stderr.startswith("durable run: cannot import agent module 'no_such_module'")


def test_ctrl_c_ends_a_watch_quietly(local_env: dict[str, str]) -> None:
    watcher = subprocess.Popen(
        [*command(), "watch", "not-yet", "--local"], cwd=ROOT, env=local_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stderr is not None
    assert "waiting up to 30s" in watcher.stderr.readline()
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=30)

    assert watcher.returncode == 130, err
    assert "Traceback" not in out + err


# `durable watch` waits for a run that has not started yet.


async def test_watch_waits_for_a_run_started_after_it_on_temporal(
    agents_client: AgentClient, env: dict[str, str]
) -> None:
    watcher = await asyncio.create_subprocess_exec(
        *command(), "watch", "later-t", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stderr is not None
    said = await asyncio.wait_for(watcher.stderr.readline(), 30)
    await agents_client.start(pipeline, Job(n=1), run_id="later-t")
    out, err = await asyncio.wait_for(watcher.communicate(), 60)

    assert watcher.returncode == 0, err
    assert said.decode().startswith("waiting up to 30s (--timeout) for run 'later-t' to start")
    assert "step 1 completed" in out.decode()
    assert out.decode().rstrip().endswith("run completed")
    assert b"Traceback" not in out + err


async def test_watch_waits_for_a_run_started_after_it_locally(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    watcher = await asyncio.create_subprocess_exec(
        *command(), "watch", "later-l", "--local", "--timeout", "20", cwd=ROOT, env=local_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stderr is not None
    said = await asyncio.wait_for(watcher.stderr.readline(), 30)
    store = SqliteStore(tmp_path / "durable.db")
    try:
        await run_durable(pipeline, Job(n=1), store=store, run_id="later-l")
    finally:
        await store.close()
    out, err = await asyncio.wait_for(watcher.communicate(), 60)

    assert watcher.returncode == 0, err
    assert said.decode().startswith("waiting up to 20s (--timeout) for run 'later-l' to start")
    assert out.decode().rstrip().endswith("run completed")
    assert b"Traceback" not in out + err


@pytest.mark.parametrize("local", [False, True], ids=["temporal", "local"])
def test_watch_gives_up_after_its_timeout(env: dict[str, str], local: bool) -> None:
    started = time.monotonic()
    done = durable("watch", "never", "--timeout", "1", *(["--local"] if local else []), env=env)

    no_traceback(done)
    assert done.returncode == 2
    assert time.monotonic() - started >= 1
    assert "waiting up to 1s (--timeout) for run 'never' to start" in done.stderr
    assert "no run 'never'" in done.stderr
    assert done.stderr.rstrip().endswith("waited 1s for it (--timeout)")


# Output into a reader that went away ends quietly.


def _into_a_closed_pipe(*args: str, env: Mapping[str, str]) -> tuple[int, str]:
    """Run with stdout a pipe whose reader is gone before anything is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*command(), *args], cwd=ROOT, env=env, stdout=write,
            stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)
    return done.returncode, done.stderr


async def test_result_and_watch_into_a_closed_pipe_exit_quietly(
    agents_client: AgentClient, env: dict[str, str], store: SqliteStore
) -> None:
    await agents_client.start(pipeline, Job(n=2), run_id="piped-t")
    await agents_client.result("piped-t")
    await run_durable(pipeline, Job(n=2), store=store, run_id="piped-l")

    for args in (
        ("result", "piped-t"),
        ("watch", "piped-t"),
        ("result", "piped-l", "--local"),
        ("watch", "piped-l", "--local"),
        ("watch", "piped-l", "--local", "--json"),
    ):
        code, err = await asyncio.to_thread(_into_a_closed_pipe, *args, env=env)
        assert (code, err) == (cli.EXIT_BROKEN_PIPE, ""), args


# Misleading messages.


@pytest.mark.parametrize("local", [False, True], ids=["temporal", "local"])
def test_an_unknown_agent_is_bad_input(env: dict[str, str], local: bool) -> None:
    done = durable(
        "run", "no_such_agent", "--input", "{}", *(["--local"] if local else []), env=env
    )

    no_traceback(done)
    assert done.returncode == 2
    assert "no agent named 'no_such_agent'" in done.stderr


def test_run_local_refuses_bad_input_before_saying_anything(local_env: dict[str, str]) -> None:
    done = durable("run", "conformance.pipeline", "--input", '{"n": "x"}', "--local", env=local_env)

    no_traceback(done)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "does not match" in done.stderr


async def test_a_refused_typed_event_says_its_code_once(
    agents_client: AgentClient, env: dict[str, str]
) -> None:
    await agents_client.start("conformance.gate", Job(), run_id="gate-cli")

    done = await asyncio.to_thread(
        durable, "event", "gate-cli", "approval", "--payload", '{"nope": 1}', env=env
    )

    no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.count("[event_payload_invalid]") == 1, done.stderr
    assert "DurableEventPayloadError" not in done.stderr
    assert "run 'gate-cli' refused event 'approval': event 'approval' of agent" in done.stderr


# Input of any size, from a file or standard input; no silent substitutes.


def test_input_from_a_file_larger_than_an_argument(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    big = tmp_path / "input.json"
    big.write_text(json.dumps({"n": 4, "padding": "x" * BIG}))

    done = durable(
        "run", "conformance.pipeline", "--input", f"@{big}", "--run-id", "big-file", "--local",
        env=local_env,
    )  # fmt: skip

    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.split("\n", 1)[1])["total"] == 5


async def test_input_and_payload_from_standard_input(
    agents_client: AgentClient, env: dict[str, str]
) -> None:
    job = json.dumps({"key": "go", "marker": "y" * BIG})
    started = await asyncio.to_thread(
        durable, "run", "conformance.waiter", "--input", "-", "--run-id", "big-stdin",
        env=env, stdin=job,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    payload = json.dumps({"blob": "z" * BIG})

    sent = await asyncio.to_thread(
        durable, "event", "big-stdin", "go", "--payload", "-", env=env, stdin=payload
    )
    result = await asyncio.to_thread(durable, "result", "big-stdin", env=env)

    no_traceback(sent)
    assert (sent.returncode, sent.stdout.strip()) == (0, "accepted"), sent.stderr
    assert json.loads(result.stdout) == {"blob": "z" * BIG}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input", "@no/such/file.json"), "cannot read --input file 'no/such/file.json'"),
        (("--input", "@"), "cannot read --input file ''"),
        (("--input", "{bad"), "--input is not valid JSON"),
        (("--input", "{}", "--run-id", ""), "--run-id must not be empty"),
    ],
)
def test_bad_input_arguments_are_refused(
    local_env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    done = durable("run", "conformance.pipeline", *args, "--local", env=local_env)

    no_traceback(done)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_payload_from_an_unreadable_source_is_refused(local_env: dict[str, str]) -> None:
    done = durable("event", "some-run", "go", "--payload", "-", "--local", env=local_env, stdin="{")

    no_traceback(done)
    assert done.returncode == 2
    assert "--payload from standard input is not valid JSON" in done.stderr


# Settings: honoured, and every one of them in the README.


async def test_run_local_holds_the_configured_lease(
    local_env: dict[str, str], store: SqliteStore
) -> None:
    waiter = await asyncio.create_subprocess_exec(
        *command(), "run", "conformance.waiter", "--input", '{"key": "go"}',
        "--run-id", "leased", "--local",
        cwd=ROOT, env={**local_env, "DURABLE_LEASE_SECONDS": "600"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (run := await store.load_run("leased")) is None or not run.lease_expires_at:
            assert time.monotonic() < deadline, "the run never took its lease"
            await asyncio.sleep(0.1)
    finally:
        waiter.kill()
        await asyncio.wait_for(waiter.wait(), 30)

    assert (run.lease_expires_at - datetime.now(UTC)).total_seconds() > 300


def _readme_table(after: str) -> list[list[str]]:
    """The rows of the first table after the line ``after`` in the README."""
    lines = (ROOT / "README.md").read_text().split(after + "\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def test_the_readme_lists_every_model_setting_with_its_default() -> None:
    documented = {
        row[0].strip("`"): row[2] for row in _readme_table("Each model in `DURABLE_MODELS` takes:")
    }

    assert set(documented) == set(ModelSettings.model_fields)
    for name, field in ModelSettings.model_fields.items():
        if field.is_required():
            assert documented[name] == "required", name
        elif field.default is None:
            assert documented[name] == "none", name
        elif isinstance(field.default, bool):
            assert documented[name] == f"`{str(field.default).lower()}`", name
        else:
            assert documented[name] == f"{field.default:g}", name
    assert (documented["headers_deadline"], documented["idle_timeout"]) == ("30", "60")


def test_the_readme_lists_every_exit_status() -> None:
    documented = {int(code): meaning for code, meaning in _readme_table("Exit status:")}

    assert documented == cli.EXIT_CODES


# Tables: a value of any width fits or is cut with a marker.


def test_a_table_cuts_a_wide_value_and_keeps_its_columns_apart() -> None:
    rows = [(1, "x" * 100, "llm"), (12, "日本語" * 20, "step"), (3, "a\nb", "")]

    lines = table(("#", "intent", "kind"), rows, right=(0,), max_width=20).splitlines()

    assert lines[0] == " #  intent                kind"
    assert lines[1] == " 1  xxxxxxxxxxxxxxxxxxx…  llm"
    assert lines[2] == "12  日本語日本語日本語…   step"  # a wide character takes two cells
    assert lines[3] == " 3  a b"
    assert table(("id", "n"), [("y" * 50, 1)], whole=(0,)).splitlines()[1] == "y" * 50 + "  1"


async def test_the_steps_table_of_a_long_intent(
    local_env: dict[str, str], store: SqliteStore
) -> None:
    await run_durable(long_intent, {}, store=store, run_id="wide")

    status = await asyncio.to_thread(durable, "status", "wide", "--local", env=local_env)
    steps = await store.load_steps("wide")

    no_traceback(status)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "write the note" in line)
    cut = re.escape(LONG_INTENT[:39] + ELLIPSIS)
    assert re.fullmatch(rf"0  {cut}  logic  completed  1", row), row
    assert steps_table(steps, indent="   ").splitlines()[1] == "   " + row  # the demo's


async def test_list_keeps_a_long_run_id_whole_and_apart(
    local_env: dict[str, str], store: SqliteStore
) -> None:
    run_id = "a-run-id-much-longer-than-the-forty-characters-the-column-had"
    await run_durable(pipeline, Job(), store=store, run_id=run_id)

    listing = await asyncio.to_thread(durable, "list", "--local", env=local_env)

    no_traceback(listing)
    assert listing.returncode == 0, listing.stderr
    assert re.fullmatch(
        rf"{run_id}  conformance\.pipeline  completed", listing.stdout.splitlines()[1]
    )


# Help is plain text.


@pytest.mark.parametrize(
    "args",
    [(), ("worker",), ("run",), ("event",), ("status",), ("result",), ("watch",), ("list",)],
)
def test_help_is_plain_text(local_env: dict[str, str], args: tuple[str, ...]) -> None:
    done = durable(*args, "--help", env=local_env)

    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout
    assert "usage: durable" in done.stdout
