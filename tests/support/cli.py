"""The ``durable`` command run as a process, as the CLI tests drive it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["ROOT", "checked", "command", "durable", "no_traceback"]

ROOT = Path(__file__).resolve().parents[2]


def command() -> list[str]:
    """The installed ``durable`` script, or the module when it is not installed."""
    script = Path(sys.executable).parent / "durable"
    return [str(script)] if script.exists() else [sys.executable, "-m", "durable_agents.cli"]


def durable(
    *args: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``durable ARGS`` to its end from the repository's root."""
    return subprocess.run(
        [*command(), *args], cwd=ROOT, env=env, input=stdin,
        capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn,
    )  # fmt: skip


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    """Neither a Python traceback nor an interpreter abort in the output."""
    for stream in (done.stdout, done.stderr):
        assert "Traceback" not in stream, stream
        assert "Fatal Python error" not in stream, stream


def checked(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``durable`` run to its end, refused if it printed a traceback."""
    done = durable(*args, env=env)
    no_traceback(done)
    return done
