"""Serving the API with uvicorn: one place for how the server is configured and announced."""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from durable import DurableClient

from ._app import create_app
from ._settings import ServerSettings

__all__ = ["http_server", "serving_message"]


def http_server(
    client: DurableClient, settings: ServerSettings, *, log_config: bool = True
) -> uvicorn.Server:
    """A uvicorn server for ``client``; ``ValueError`` if the settings must not be served.

    Run it with ``await server.serve()`` (or ``serve(sockets=[...])`` on a socket
    already bound). Open streams are given ``GRACEFUL_SECONDS`` to end at shutdown.
    """
    refusal = settings.refusal()
    if refusal is not None:
        raise ValueError(refusal)
    config = uvicorn.Config(
        create_app(client, settings),
        host=settings.host,
        port=settings.port,
        http="h11",
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        # Without it, the process's logging is left as it is (tests, an embedding app).
        log_config=LOGGING_CONFIG if log_config else None,
    )
    return uvicorn.Server(config)


GRACEFUL_SECONDS = 5
"""Live streams last as long as their runs: past this, shutdown closes them (readers resume)."""


def serving_message(settings: ServerSettings, bound: socket.socket | None = None) -> str:
    """What the server says at start: where it listens, and how requests are authenticated."""
    host, port = bound.getsockname()[:2] if bound is not None else (settings.host, settings.port)
    shown = f"[{host}]" if ":" in str(host) else host
    auth = (
        f"{len(settings.tokens)} bearer token(s) accepted (DURABLE_API_TOKENS)"
        if settings.tokens
        else "no DURABLE_API_TOKENS: answering without authentication, to this machine only"
    )
    return f"serving the API and the web view on http://{shown}:{port}/ ; {auth}"
