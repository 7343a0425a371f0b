"""Durable agents, installed under one name.

The repository keeps the design's layout (``adapters/``, ``workflows/``,
``activities/``, ``agents/``, ``examples/``, ``cli/`` and ``worker.py`` at its
top); this package links them, and the wheel installs them here, so that an
installed project adds only ``durable`` (the contract) and ``durable_agents``
to an environment.

The integration surface for hosting durable agents in a Temporal worker of your own::

    from durable_agents import DurableAgentsPlugin

    client = await Client.connect(address, plugins=[DurableAgentsPlugin(["my_app.agents"])])
    worker = Worker(client, task_queue="my-queue", workflows=[MyOwnWorkflow])

``DurableAgentsPlugin`` is loaded on first use: workflow code imports modules
of this package inside the sandbox, and must not bring the client with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._plugin import DurableAgentsPlugin

__all__ = ["DurableAgentsPlugin"]


def __getattr__(name: str) -> Any:
    if name == "DurableAgentsPlugin":
        from ._plugin import DurableAgentsPlugin

        return DurableAgentsPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
