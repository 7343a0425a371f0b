"""The README's main command: the demo on the embedded Temporal dev server."""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demo_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "TEMPORAL_DEV_PORT": str(_free_port()),
        "TEMPORAL_UI_PORT": str(_free_port()),
        "REFUND_LEDGER": str(tmp_path / "ledger.jsonl"),
    }


def _row(output: str, run_kind: str) -> list[str]:
    """The cells of the demo's final table row for the run that was to be ``run_kind``ed."""
    for line in output.splitlines():
        cells = line.split()
        if cells and re.fullmatch(rf"refund-[0-9a-f]+-{run_kind}", cells[0]):
            return cells
    raise AssertionError(f"no row for the {run_kind} run in:\n{output}")


def test_the_demo_is_decided_from_a_second_shell(tmp_path: Path) -> None:
    env = _demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "durable_agents.examples.demo", "--approve-after", "90"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        commands: list[list[str]] = []
        while len(commands) < 3 and time.monotonic() < deadline:
            line = demo.stdout.readline()
            lines.append(line)
            if re.match(r"\s+\S+durable (approve|reject) refund-", line):
                commands.append(shlex.split(line.strip()))
        assert len(commands) == 3, "".join(lines)
        env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{env['TEMPORAL_DEV_PORT']}"
        said = []
        for command in commands:
            assert command[0].endswith("durable")
            if not Path(command[0]).exists():  # outside the project's venv: the same CLI module
                command = [sys.executable, "-m", "durable_agents.cli", *command[1:]]
            sent = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            assert sent.returncode == 0, sent.stderr
            said.append(sent.stdout)
        # Read on through the same buffered stream; the demo exits once the runs complete.
        rest = demo.stdout.read()
        demo.wait(timeout=60)
    finally:
        demo.kill()
        demo.wait()
        demo.stdout.close()
    output = "".join(lines) + rest
    me = getpass.getuser()
    assert f": approved by {me} at " in said[0]
    assert f": approved with an edit by {me} at " in said[1]
    assert 'input {"amount_cents": 2000}' in said[1]
    assert f": rejected by {me} at " in said[2]
    assert "the demo decides the rest" not in output
    assert _row(output, "approve")[2:5] == ["refunded", "2500", me]
    assert _row(output, "edit")[2:5] == ["refunded", "2000", me]
    assert _row(output, "reject")[2:5] == ["declined", "0", me]
    assert "approval refund-" in output  # the live stream shows the request
    assert (
        f"http://localhost:{env['TEMPORAL_UI_PORT']}/namespaces/default/workflows/refund-" in output
    )
    ledger = Path(env["REFUND_LEDGER"]).read_text().splitlines()
    assert sorted(json.loads(line)["amount_cents"] for line in ledger) == [2000, 2500]


def test_the_demo_decides_itself_with_the_temporal_cli_and_python(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "durable_agents.examples.demo", "--approve-after", "0.5"],
        cwd=ROOT,
        env=_demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert out.returncode == 0, out.stderr
    assert "the demo decides the rest" in out.stdout
    assert "with the temporal CLI:\n   temporal workflow signal --address 127.0.0.1:" in out.stdout
    assert "AgentClient.decide('edit'): decided" in out.stdout
    assert "AgentClient.decide('reject'): decided" in out.stdout
    assert _row(out.stdout, "approve")[2:5] == ["refunded", "2500", "demo"]
    assert _row(out.stdout, "edit")[2:5] == ["refunded", "2000", "demo"]
    assert _row(out.stdout, "reject")[2:6] == ["declined", "0", "demo", "outside"]
    assert (tmp_path / "temporal.db").exists()  # the embedded server keeps its runs
