"""Agents this library provides, written against ``DurableContext`` like any other.

``durable_agents.agents.conversation`` runs multi-agent conversations as child runs; a worker
that hosts conversations imports it (``worker.py`` does).
"""
