"""Processes of a fault scenario: started, killed with SIGKILL, and always reaped.

Every process a scenario starts goes through one ``Processes``; leaving it (on
success, failure or timeout alike) kills whatever is still alive, so a scenario
never leaves a worker, a server or a database behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ._faults_ledger import Kill

__all__ = ["ROOT", "Processes", "python"]

ROOT = Path(__file__).resolve().parents[1]


def python(*args: str) -> list[str]:
    """A command running this interpreter in the project's root."""
    return [sys.executable, *args]


class Processes:
    """The processes of one scenario, each logging to a file in ``logs``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.alive: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self.ended: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._count = 0

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self._count += 1
        log = self.logs / f"{name}-{self._count}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        self.alive[process.pid] = (f"{name}-{self._count}", process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> Kill:
        """SIGKILL ``process`` and reap it; the time is taken just before the signal."""
        at = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self._reap(process)
        return Kill(pid=process.pid, at=at, dead_at=time.time())

    def exited(self) -> list[tuple[str, int]]:
        """Processes that ended on their own since the last call: name and exit code."""
        gone: list[tuple[str, int]] = []
        for pid, (name, process) in list(self.alive.items()):
            code = process.poll()
            if code is not None:
                del self.alive[pid]
                self.ended.append((name, process))
                gone.append((name, code))
        return gone

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        entry = self.alive.pop(process.pid, None)
        if entry is not None:
            self.ended.append(entry)

    def close(self) -> None:
        for _, process in list(self.alive.values()):
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            self._reap(process)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
