"""The embedded dev server lives and dies with ``durable worker``, and never adopts a stranger.

Real processes only: the worker is the ``durable`` command, killed with SIGKILL;
a port is held by a real listening socket or a real Temporal dev server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from durable_agents.adapters.temporal import DevServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds: a port left in TIME_WAIT by closed connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _durable() -> list[str]:
    script = Path(sys.executable).parent / "durable"
    return [str(script)] if script.exists() else [sys.executable, "-m", "durable_agents.cli"]


def _worker_env(tmp_path: Path, *, port: int, ui_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DURABLE_DATA": str(tmp_path),
        "DURABLE_AGENT_MODULES": "durable_agents.examples.refund",
        "REFUND_LEDGER": str(tmp_path / "ledger.jsonl"),
        "TEMPORAL_DEV_PORT": str(port),
        "TEMPORAL_UI_PORT": str(ui_port),
    }
    env.pop("TEMPORAL_ADDRESS", None)  # the worker must start its own server
    return env


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after it do not.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{condition} within {timeout:g}s"
        time.sleep(0.1)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids a test saw; any still alive at the end are killed, so no test leaks a server."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
@pytest.mark.timeout(150)
def test_the_dev_server_dies_with_a_worker_killed_by_sigkill(
    tmp_path: Path, strays: list[int]
) -> None:
    port, ui_port = _free_port(), _free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*_durable(), "worker"],
            cwd=ROOT,
            env=_worker_env(tmp_path, port=port, ui_port=ui_port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    strays.append(worker.pid)
    try:
        _wait_for(
            "the worker reports it is running",
            lambda: "worker on" in log.read_text(errors="replace") or worker.poll() is not None,
            120,
        )
        assert worker.poll() is None, log.read_text(errors="replace")
        servers = [pid for pid in _children(worker.pid) if _alive(pid)]
        assert len(servers) == 1, f"expected one dev server child, found {servers}"
        strays.extend(servers)
        assert not _port_is_free(port)

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        _wait_for("the dev server is gone", lambda: not _alive(servers[0]), 5)
        _wait_for(f"port {port} is free", lambda: _port_is_free(port), 5)
        _wait_for(f"UI port {ui_port} is free", lambda: _port_is_free(ui_port), 5)
    finally:
        worker.kill()
        worker.wait()


def _refused(tmp_path: Path, *, port: int, ui_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_durable(), "worker"],
        cwd=ROOT,
        env=_worker_env(tmp_path, port=port, ui_port=ui_port),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("held", ["TEMPORAL_DEV_PORT", "TEMPORAL_UI_PORT"])
def test_a_worker_refuses_a_port_held_by_another_process(tmp_path: Path, held: str) -> None:
    ports = {"TEMPORAL_DEV_PORT": _free_port(), "TEMPORAL_UI_PORT": _free_port()}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[held]))
        holder.listen()

        out = _refused(tmp_path, port=ports["TEMPORAL_DEV_PORT"], ui_port=ports["TEMPORAL_UI_PORT"])

    assert out.returncode != 0, out
    assert f"port {ports[held]}" in out.stderr, out.stderr
    assert held in out.stderr
    assert "TEMPORAL_ADDRESS" in out.stderr
    if sys.platform == "linux":  # the holder is named where the system says who it is
        assert f"process {os.getpid()}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "temporal.db").exists()  # no server of its own was started


@pytest.mark.timeout(120)
def test_a_worker_does_not_adopt_a_dev_server_it_did_not_start(tmp_path: Path) -> None:
    with DevServer(port=_free_port()) as orphan:
        started = time.monotonic()
        out = _refused(tmp_path, port=orphan.port, ui_port=_free_port())

        assert out.returncode != 0, out
        assert f"port {orphan.port}" in out.stderr, out.stderr
        assert f"TEMPORAL_ADDRESS=127.0.0.1:{orphan.port}" in out.stderr
        assert time.monotonic() - started < 30  # refused up front, not after a timeout


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
@pytest.mark.timeout(90)
def test_a_server_outlives_the_short_lived_thread_that_started_it() -> None:
    # The parent-death signal follows the thread that forked, as with asyncio.to_thread.
    server = DevServer()
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    try:
        time.sleep(1)  # the signal would be immediate; give it a moment to land

        assert server._healthy(), "the server died with the thread that started it"
    finally:
        server.stop()
