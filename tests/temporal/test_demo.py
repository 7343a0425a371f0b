"""The README's main command: the demo on the embedded Temporal dev server."""

from __future__ import annotations

import os
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


def test_the_demo_is_approved_from_a_second_shell(tmp_path: Path) -> None:
    env = _demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "examples.demo", "--approve-after", "60"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        command = None
        while command is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            lines.append(line)
            if " event refund-" in line and "--payload" in line:
                command = shlex.split(line.strip())
        assert command is not None, "".join(lines)
        assert command[0].endswith("durable")
        if not Path(command[0]).exists():  # outside the project's venv: the same CLI module
            command = [sys.executable, "-m", "cli", *command[1:]]
        env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{env['TEMPORAL_DEV_PORT']}"
        sent = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert (sent.returncode, sent.stdout.strip()) == (0, "accepted"), sent.stderr
        # Read on through the same buffered stream; the demo exits once the run completes.
        rest = demo.stdout.read()
        demo.wait(timeout=60)
    finally:
        demo.kill()
        demo.wait()
        demo.stdout.close()
    output = "".join(lines) + rest
    assert '"status":"refunded"' in output
    assert '"reviewer":"you"' in output
    assert "workflow signal --address 127.0.0.1:" in output
    assert "--workflow-id refund-" in output
    assert (
        f"http://localhost:{env['TEMPORAL_UI_PORT']}/namespaces/default/workflows/refund-" in output
    )


def test_the_demo_approves_itself_with_the_temporal_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--approve-after", "0.5"],
        cwd=ROOT,
        env=_demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert out.returncode == 0, out.stderr
    assert "approving with the temporal CLI" in out.stdout
    assert '"reviewer":"demo"' in out.stdout
    assert (tmp_path / "temporal.db").exists()  # the embedded server keeps its runs
