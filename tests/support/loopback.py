"""An asyncio TCP server on a free loopback port that leaves no socket behind.

``asyncio.Server.close`` closes only the listening socket: a handler still running
(a test server told to hang, a proxy piping bytes) keeps its connection open until
the garbage collector finds it, and its warning then fails whichever test is running.
Here every handler is cancelled and every connection aborted on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["Connections", "loopback_server"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Connections"], Awaitable[None]]


class Connections:
    """The connections a server's handlers hold; a handler adds any it opens itself.

    Each is kept as the socket transport it was opened with. A stream that starts
    TLS later gets an SSL transport over it, which can no longer abort it once it
    was closed twice (``_SSLProtocolTransport.close`` forgets its protocol, and a
    graceful TLS shutdown waits for the peer): the socket transport always can.
    """

    def __init__(self) -> None:
        self.transports: set[asyncio.WriteTransport] = set()

    def add(self, writer: asyncio.StreamWriter) -> None:
        self.transports.add(writer.transport)


@contextlib.asynccontextmanager
async def loopback_server(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1; yields the port."""
    connections = Connections()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        connections.add(writer)
        try:
            await handler(reader, writer, connections)
        except asyncio.CancelledError:
            pass  # the server closing
        finally:
            tasks.discard(task)
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        # A connection accepted just before the close starts its handler a turn or two
        # later: let it, so that it is cancelled and closed with the others.
        for _ in range(3):
            await asyncio.sleep(0)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for transport in connections.transports:
            transport.abort()
        await asyncio.sleep(0)  # an abort closes its socket on the loop's next pass
