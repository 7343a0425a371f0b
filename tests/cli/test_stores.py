"""``durable --local`` on stores that are damaged, read-only or handed bad data: clear errors.

Tests run as root, which file permissions do not stop. A read-only store is
made real by taking from the child process the capabilities that let root
ignore permissions (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``,
``CAP_FOWNER``) before it starts: it is then held to the folder's mode bits
like any other user.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from durable import DurableRunManifest, TaskSpec
from durable_agents.adapters.local import SqliteStore
from tests.support.cli import command as durable_command

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = DurableRunManifest(
    project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={"x": "y" * 300}
)
_PR_CAPBSET_DROP = 24
_ROOT_OVERRIDES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _as_plain_user() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _ROOT_OVERRIDES:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def _run(
    command: list[str], env: dict[str, str], *, plain_user: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_as_plain_user if plain_user and os.geteuid() == 0 else None,
    )


def durable(
    *args: str, env: dict[str, str], plain_user: bool = False
) -> subprocess.CompletedProcess[str]:
    return _run([*durable_command(), *args], env, plain_user=plain_user)


def clean(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The combined output, once the exit code is ``code`` and no traceback shows."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    return output


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_AGENT_MODULES": "durable_agents.examples.refund",
    }


async def _store_with_runs(path: Path, count: int) -> None:
    store = SqliteStore(path)
    for i in range(count):
        await store.start_or_resume(
            run_id=f"run-{i}", agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(0)
        )
    await store.close()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` made read-only once the test has filled it; writable again after."""
    yield tmp_path
    for path in (tmp_path, *tmp_path.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _seal(folder: Path) -> None:
    for path in (*folder.rglob("*"), folder):
        path.chmod(0o555 if path.is_dir() else 0o444)
    probe = _run(["sh", "-c", f"touch {folder}/probe"], dict(os.environ), plain_user=True)
    if probe.returncode == 0:
        pytest.skip("this process cannot make a folder read-only for its children")


def test_a_file_that_is_not_a_database_is_named_with_the_fix(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "durable.db").write_bytes(b"a shopping list, not a database\n" * 64)

    for command in (["list", "--local"], ["status", "run-1", "--local"]):
        output = clean(durable(*command, env=env), 1)
        assert str(tmp_path / "durable.db") in output
        assert "not a SQLite database" in output
        assert "move this file away" in output


def test_a_database_with_damaged_pages_is_named_with_the_fix(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "durable.db"
    asyncio.run(_store_with_runs(path, 300))
    data = bytearray(path.read_bytes())
    for page in range(3 * 4096, len(data), 4096):
        data[page : page + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))

    for command in (["list", "--local"], ["status", "run-3", "--local"]):
        output = clean(durable(*command, env=env), 1)
        assert str(path) in output
        assert "damaged" in output
        assert "restore it from a backup" in output


def test_reading_commands_work_on_a_read_only_store(read_only: Path, env: dict[str, str]) -> None:
    asyncio.run(_store_with_runs(read_only / "durable.db", 2))
    _seal(read_only)

    listed = clean(durable("list", "--local", env=env, plain_user=True), 0)
    assert "run-0" in listed
    assert "run-1" in listed
    status = clean(durable("status", "run-1", "--local", env=env, plain_user=True), 0)
    assert "run run-1: running" in status
    clean(durable("result", "run-1", "--local", env=env, plain_user=True), 0)

    # A command that writes says the store is read-only and how to fix it.
    refused = clean(durable("event", "run-1", "go", "--local", env=env, plain_user=True), 1)
    assert str(read_only / "durable.db") in refused
    assert "make the file and its folder writable" in refused


def test_json_nested_thousands_deep_is_refused_clearly(tmp_path: Path, env: dict[str, str]) -> None:
    asyncio.run(_store_with_runs(tmp_path / "durable.db", 1))
    for depth in (500, 3_000, 10_000):
        deep = tmp_path / f"deep{depth}.json"
        deep.write_text("[" * depth + "]" * depth)
        started = clean(
            durable("run", "refund_review", "--input", f"@{deep}", "--local", env=env), 2
        )
        assert "--input" in started or "does not match" in started
        assert "[[[[" not in started  # the input is not printed back
        sent = clean(
            durable("event", "run-0", "go", "--payload", f"@{deep}", "--local", env=env), 2
        )
        assert "deep" in sent
        assert "[[[[" not in sent  # the payload is not printed back


_FILE_STORE_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    from durable_agents.adapters.local import FileStore
    from durable import DurableError, DurableRunManifest, TaskSpec

    async def main() -> None:
        store = FileStore(sys.argv[1])
        print("listed", sorted(r.run_id for r in await store.list_runs()))
        print("steps", len(await store.load_steps("run-1")))
        manifest = DurableRunManifest(
            project_id="p", task=TaskSpec(id="t", intent="i", domain="d"), input={}
        )
        try:
            await store.start_or_resume(
                run_id="new", agent="a", manifest=manifest, worker_id="w",
                lease_for=timedelta(seconds=5),
            )
        except DurableError as exc:
            print("refused", exc)
        await store.close()

    asyncio.run(main())
    """
)


async def _file_store_with_runs(root: Path) -> None:
    from durable_agents.adapters.local import FileStore

    store = FileStore(root)
    for run_id in ("run-0", "run-1"):
        resumed = await store.start_or_resume(
            run_id=run_id, agent="a", manifest=MANIFEST, worker_id="w", lease_for=timedelta(0)
        )
        assert resumed.lease is not None
        await store.begin_step(resumed.lease, step_index=0, intent="s", kind="logic", input_hash="")
    await store.close()


def test_a_file_store_on_a_read_only_disk_answers_reads(read_only: Path) -> None:
    asyncio.run(_file_store_with_runs(read_only / "runs"))
    _seal(read_only)

    child = _run(
        [sys.executable, "-c", _FILE_STORE_CHILD, str(read_only / "runs")],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        plain_user=True,
    )

    output = clean(child, 0)
    assert "listed ['run-0', 'run-1']" in output
    assert "steps 1" in output
    assert "refused [store_error]" in output
    assert "may only read" in output
    assert str(read_only / "runs") in output


def test_watch_from_a_position_the_stream_never_gave_out_is_refused(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_AGENT_MODULES": "tests.conformance.agents",
    }
    started = durable(
        "run", "conformance.pipeline", "--input", '{"n": 1}', "--run-id", "p-1", "--local", env=env
    )
    clean(started, 0)
    whole = clean(durable("watch", "p-1", "--local", "--json", env=env), 0)
    count = len(whole.strip().splitlines())

    refused = clean(durable("watch", "p-1", "--local", "--after", str(count + 1), env=env), 2)

    assert f"after={count + 1} is not a position in the live stream of run 'p-1'" in refused
    assert f"holds {count} entries" in refused


def test_a_data_folder_that_cannot_be_made_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = {
        **os.environ,
        "DURABLE_DATA": str(tmp_path / "a-file" / "data"),
        "DURABLE_AGENT_MODULES": "tests.conformance.agents",
    }

    refused = durable("run", "conformance.pipeline", "--input", "{}", "--local", env=env)

    output = clean(refused, 1)
    assert "a-file" in output
    assert "DURABLE_DATA" in output
    assert "defect" not in output
