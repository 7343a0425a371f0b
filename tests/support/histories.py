"""Search every workflow history on a Temporal server for a value."""

from __future__ import annotations

from temporalio.api.history.v1 import History
from temporalio.client import Client


async def histories_containing(client: Client, needle: str) -> list[str]:
    """Ids of the runs whose history holds ``needle`` anywhere, payloads included.

    The history is searched as its protobuf bytes, where payload data sits
    unencoded, so a value hidden inside a JSON payload is found too.
    """
    found = []
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        if needle.encode() in History(events=history.events).SerializeToString():
            found.append(execution.id)
    return found
