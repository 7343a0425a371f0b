"""The substrate a command speaks to: Temporal, or the local SQLite store with ``--local``."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

import worker
from adapters.temporal import AgentClient

from ._common import UsageError

__all__ = ["not_found", "temporal_client"]


async def temporal_client(settings: worker.WorkerSettings) -> AgentClient:
    try:
        client = await Client.connect(
            settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
        )
    except RuntimeError as exc:
        raise UsageError(
            f"cannot reach Temporal at {settings.address} ({exc}); start `durable worker`, "
            "which starts the embedded server, or set TEMPORAL_ADDRESS"
        ) from None
    return AgentClient(client, task_queue=settings.task_queue)


def not_found(run_id: str, exc: RPCError) -> UsageError:
    return UsageError(f"no run {run_id!r} on this Temporal namespace ({exc.message})")
