"""The integration surface for hosting durable agents in a Temporal worker of your own.

from durable_agents import DurableAgentsPlugin

client = await Client.connect(address, plugins=[DurableAgentsPlugin(["my_app.agents"])])
worker = Worker(client, task_queue="my-queue", workflows=[MyOwnWorkflow])
"""

from ._plugin import DurableAgentsPlugin

__all__ = ["DurableAgentsPlugin"]
