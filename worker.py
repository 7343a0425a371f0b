"""The worker entry point.

Today it runs the local worker: it hosts the agents of the modules named in
``DURABLE_AGENT_MODULES`` on the SQLite store at ``DURABLE_STORE`` and resumes
every run whose previous worker died. Stop it with Ctrl-C or SIGTERM; runs in
flight keep their progress and are resumed by the next worker.

    DURABLE_STORE=data/durable.db DURABLE_AGENT_MODULES=examples.refund python worker.py
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import NondeterminismError

from activities.steps import run_step
from adapters.local import LocalWorker, SqliteStore
from workflows.agent import AgentWorkflow

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Worker configuration, read from the environment by ``from_env``."""

    store_path: Path = ROOT / "data" / "durable.db"
    """``DURABLE_STORE``: the SQLite file holding the runs."""
    agent_modules: tuple[str, ...] = ("examples.refund",)
    """``DURABLE_AGENT_MODULES``: comma-separated modules whose ``@agent``s this worker hosts."""
    lease: timedelta = field(default=timedelta(seconds=30))
    """``DURABLE_LEASE_SECONDS``: how long a run stays ours without a heartbeat."""

    def __post_init__(self) -> None:
        if not self.agent_modules:
            raise ValueError(
                "DURABLE_AGENT_MODULES is empty; name at least one module that defines agents"
            )
        if self.lease <= timedelta(0):
            raise ValueError("DURABLE_LEASE_SECONDS must be a positive number of seconds")

    @classmethod
    def from_env(cls) -> WorkerSettings:
        env = os.environ
        modules = env.get("DURABLE_AGENT_MODULES")
        lease = env.get("DURABLE_LEASE_SECONDS")
        try:
            seconds = float(lease) if lease else None
        except ValueError:
            raise ValueError(
                f"DURABLE_LEASE_SECONDS must be a number of seconds, got {lease!r}"
            ) from None
        defaults = cls()
        return cls(
            store_path=Path(env["DURABLE_STORE"])
            if env.get("DURABLE_STORE")
            else defaults.store_path,
            agent_modules=(
                tuple(m.strip() for m in modules.split(",") if m.strip())
                if modules is not None
                else defaults.agent_modules
            ),
            lease=timedelta(seconds=seconds) if seconds is not None else defaults.lease,
        )


def temporal_worker(
    client: Client, *, task_queue: str, agent_modules: tuple[str, ...] = (), **options: Any
) -> Worker:
    """A Temporal worker hosting every registered agent and step.

    The agent modules and this project's packages pass through the workflow
    sandbox, so workflows see the same ``@agent`` / ``@step`` registries as the
    worker. A nondeterminism error fails the workflow instead of retrying its
    task forever; the client reports it as a divergence.
    """
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "durable", "adapters", *agent_modules
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentWorkflow],
        activities=[run_step],
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        workflow_failure_exception_types=[NondeterminismError],
        **options,
    )


def import_agents(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SystemExit(
                f"cannot import agent module {name!r} named in DURABLE_AGENT_MODULES ({exc}); "
                "check the module path and that it is installed"
            ) from None


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = WorkerSettings.from_env()
    import_agents(settings.agent_modules)
    settings.store_path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(settings.store_path)
    worker = LocalWorker(store, lease=settings.lease)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    logging.getLogger("durable.worker").info(
        "worker %s hosting %s on %s",
        worker.worker_id,
        ", ".join(settings.agent_modules),
        settings.store_path,
    )
    try:
        await worker.run()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
