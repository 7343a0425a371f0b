"""The custom search attributes every agent run carries in the Temporal UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = ["AGENT_NAME", "PROJECT_ID", "SEARCH_ATTRIBUTES", "WAITING_FOR", "quoted"]

AGENT_NAME = SearchAttributeKey.for_keyword("AgentName")
"""The agent's name, also the workflow type."""
PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
"""The manifest's project."""
WAITING_FOR = SearchAttributeKey.for_keyword("WaitingFor")
"""The event the run waits for right now, empty otherwise."""

SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in (AGENT_NAME, PROJECT_ID, WAITING_FOR)}
"""Name and Temporal type of each attribute, as the dev server and deploy script register them."""


def quoted(value: str) -> str:
    """``value`` inside a single-quoted visibility query string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
