"""Reading a run's checkpoints from outside it: the memo by ``describe``, payloads from blobs.

The client side of ``_checkpoints``: no worker is needed, while the run goes
on or after it closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from durable import Checkpoint, CheckpointInfo, check_name
from durable._checkpoints import checkpoint_not_found
from durable_agents.adapters.blobs import BlobStore

from ._checkpoints import CHECKPOINTS_MEMO
from ._delivery import unreachable_run

__all__ = ["read_checkpoint", "read_checkpoints"]


async def read_checkpoints(handle: WorkflowHandle[Any, Any]) -> list[CheckpointInfo]:
    """The run's checkpoints from its memo, by name: while it runs and after it closed."""
    check_name(handle.id, what="run_id")
    try:
        described = await handle.describe()
    except RPCError as failure:
        if failure.status == RPCStatusCode.NOT_FOUND:
            raise unreachable_run(handle.id, failure) from None
        raise
    raw: dict[str, Any] = await described.memo_value(CHECKPOINTS_MEMO, {})
    return sorted((CheckpointInfo.model_validate(info) for info in raw.values()), key=_name)


async def read_checkpoint(
    handle: WorkflowHandle[Any, Any], name: str, blobs: BlobStore
) -> Checkpoint:
    """Checkpoint ``name`` with its payload, from the memo and ``blobs``.

    Raises ``DurableCheckpointNotFoundError`` when the run has none of that name.
    """
    for info in await read_checkpoints(handle):
        if info.name == name:
            data = await asyncio.to_thread(blobs.get, info.digest)
            return Checkpoint.of(info, data.decode("utf-8"))
    raise checkpoint_not_found(handle.id, name)


def _name(info: CheckpointInfo) -> str:
    return info.name
