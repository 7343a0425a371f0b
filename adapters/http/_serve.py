"""Serving the API with uvicorn: one place for how the server is configured and announced."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from durable import DurableClient

from ._app import create_app
from ._chat import ChatEngine
from ._settings import ServerSettings

__all__ = ["GRACEFUL_SECONDS", "bind", "http_server", "serving_message"]


def http_server(
    client: DurableClient,
    settings: ServerSettings,
    *,
    chat: ChatEngine | None = None,
    log_config: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for ``client``; ``ValueError`` if the settings must not be served.

    Run it with ``await server.serve()`` (or ``serve(sockets=[...])`` on a socket
    already bound). Open streams are given ``GRACEFUL_SECONDS`` to end at shutdown.
    """
    refusal = settings.refusal()
    if refusal is not None:
        raise ValueError(refusal)
    config = uvicorn.Config(
        create_app(client, settings, chat=chat),
        host=settings.host,
        port=settings.port,
        http="h11",
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        # Without it, the process's logging is left as it is (tests, an embedding app).
        log_config=LOGGING_CONFIG if log_config else None,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT and SIGTERM without dying of them.

    uvicorn raises a caught signal again once it stopped, so a SIGTERM would end
    the process by that signal; a server stopped so has stopped gracefully, and
    its caller goes on to close its client and exit 0, as ``durable worker`` does.
    A second Ctrl-C still forces the exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


GRACEFUL_SECONDS = 5
"""Live streams last as long as their runs: past this, shutdown closes them (readers resume)."""


def bind(settings: ServerSettings) -> socket.socket:
    """A socket listening on the settings' host and port, for ``server.serve(sockets=...)``.

    Bound here rather than by uvicorn, so a port in use or an unknown host is an
    ``OSError`` that says which setting to change, instead of uvicorn's exit.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as exc:
        raise OSError(
            f"cannot listen on host {settings.host!r} ({exc.strerror}); set DURABLE_API_HOST "
            "(or --host) to an address of this machine, such as 127.0.0.1"
        ) from None
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as exc:
        listening.close()
        raise OSError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); another "
            "process may hold the port: stop it, or set DURABLE_API_PORT (or --port) to a "
            "free one"
        ) from None
    listening.listen(2048)
    return listening


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
