"""The checkpoint activities: a checkpoint's payload in and out of the blob store.

Run as local activities (``adapters/temporal/_checkpoints.py``): a local
activity's input is never recorded, so a payload reaches the blob store without
entering the run's history, which keeps only the returned reference. Every
worker that runs agents must reach the same blob store (``DURABLE_BLOBS``).
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from durable import DurableError
from durable_agents.adapters.blobs import default_blob_store
from durable_agents.adapters.temporal import (
    GET_CHECKPOINT_ACTIVITY,
    PUT_CHECKPOINT_ACTIVITY,
    to_application_error,
)

__all__ = ["get_checkpoint", "put_checkpoint"]


@activity.defn(name=PUT_CHECKPOINT_ACTIVITY)
async def put_checkpoint(text: str) -> str:
    """Store a checkpoint's canonical JSON; return its reference (its sha256)."""
    return await asyncio.to_thread(default_blob_store().put, text.encode("utf-8"))


@activity.defn(name=GET_CHECKPOINT_ACTIVITY)
async def get_checkpoint(ref: str) -> str:
    """The canonical JSON stored under ``ref``."""
    try:
        data = await asyncio.to_thread(default_blob_store().get, ref)
    except DurableError as error:
        # Missing or corrupt: another attempt finds the same, so it is final.
        raise to_application_error(error) from None
    return data.decode("utf-8")
