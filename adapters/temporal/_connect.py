"""The one way a Temporal client is made: the settings' connection, the pydantic converter,
and the caller's plugins.

Every client (the worker's, the CLI's, ``durable serve``'s and the deploy scripts') comes
from ``connect``, so TLS, an API key or a profile file set for one reaches all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Plugin
from temporalio.contrib.pydantic import pydantic_data_converter

from durable_agents.adapters.settings import TemporalSettings

__all__ = ["TemporalConnectError", "connect"]


class TemporalConnectError(RuntimeError):
    """The Temporal server could not be reached as configured; the message says what to check."""


async def connect(
    settings: TemporalSettings, *, plugins: Sequence[Plugin] = (), **options: Any
) -> Client:
    """A client of the server ``settings`` name (the embedded server's port when none is).

    ``options`` go to ``Client.connect`` (``identity``, ``interceptors``...). The API key
    and private key travel only to the server, never into an error message.
    """
    config = settings.client_profile().to_client_connect_config()
    try:
        return await Client.connect(
            **config,
            data_converter=pydantic_data_converter,
            plugins=list(plugins),
            **options,
        )
    except RuntimeError as exc:
        raise TemporalConnectError(
            f"cannot connect to Temporal at {settings.describe()}: {_scrubbed(exc, settings)}; "
            f"{_advice(settings)}"
        ) from None


def _advice(settings: TemporalSettings) -> str:
    if settings.embedded:
        return (
            "start `durable worker`, which starts the embedded server, or set "
            "TEMPORAL_ADDRESS to a running server"
        )
    if settings.uses_tls:
        return (
            "check TEMPORAL_ADDRESS, and that the server's certificate is signed by "
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH (or a system root) for the name "
            "TEMPORAL_TLS_SERVER_NAME (or the address's host); see deploy/README.md"
        )
    return (
        "check that the server is up at TEMPORAL_ADDRESS; a server that expects TLS "
        "(Temporal Cloud) needs TEMPORAL_TLS=true or a TEMPORAL_API_KEY; see deploy/README.md"
    )


def _scrubbed(exc: Exception, settings: TemporalSettings) -> str:
    """The error's text without any secret it might echo."""
    text = str(exc)
    for secret in (settings.api_key, settings.tls_client_key_data):
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "**********")
    return text
