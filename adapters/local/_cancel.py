"""Cancelling a local run from any process: through the store, which its worker watches."""

from __future__ import annotations

from durable import CancelOutcome, check_name

from ._store import DurableRunStore

__all__ = ["cancel_run"]


async def cancel_run(store: DurableRunStore, run_id: str, reason: str = "") -> CancelOutcome:
    """Cancel run ``run_id`` and its children; ``already_ended`` if it had ended.

    A run a live worker holds is cancelled by that worker, which sees the
    request within a second: its agent gets the asyncio cancellation where it
    waits (a step in flight included), its children are cancelled and settle
    first, and it ends ``cancelled`` with ``reason``. A run no worker holds ends
    ``cancelled`` at once, with its children, and is never resumed.
    """
    check_name(run_id, what="run_id")
    outcome, _ = await store.request_cancel(run_id, reason or "cancelled by a caller")
    return outcome
