"""A real uvicorn serving the API on a free port, in a thread with its own event loop.

The client it serves is made inside that loop (a Temporal client and its
worker, or a local store), so the tests speak to it only over HTTP, as other
services do. It serves chat turns as ``durable serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable

import uvicorn

from durable import DurableClient
from durable_agents.adapters.http import ServerSettings
from durable_agents.adapters.http._serve import http_server
from durable_agents.cli._serve import chat_engine

ClientFactory = Callable[[contextlib.AsyncExitStack], Awaitable[DurableClient]]
"""Makes the served client inside the server's loop; closes what it opened on the stack."""


class ServerThread:
    def __init__(self, make_client: ClientFactory, settings: ServerSettings) -> None:
        self.make_client = make_client
        self.settings = settings
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)

    def start(self, timeout: float = 60) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server did not start within {timeout}s")
        if self._failure is not None:
            raise RuntimeError("the server failed to start") from self._failure
        return self

    def stop(self, timeout: float = 30) -> None:
        if self._server is not None and self._loop is not None:
            server = self._server
            self._loop.call_soon_threadsafe(setattr, server, "should_exit", True)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the server thread did not stop"
        if self._failure is not None:
            raise RuntimeError("the server failed") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
        finally:
            self.socket.close()
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            client = await self.make_client(stack)
            stack.push_async_callback(client.close)
            chat = chat_engine(client)
            self._server = http_server(client, self.settings, chat=chat, log_config=False)
            serving = asyncio.create_task(self._server.serve(sockets=[self.socket]))
            while not self._server.started:
                if serving.done():
                    await serving
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
            self._ready.set()
            await serving
