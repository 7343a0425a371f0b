"""The HTTP server's settings: the ``server`` group of the one settings object."""

from __future__ import annotations

from durable_agents.adapters.settings import DEFAULT_MAX_BODY_BYTES, ServerSettings, is_loopback

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServerSettings", "is_loopback"]
