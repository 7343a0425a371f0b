"""A local OpenAI-compatible streaming server that answers with a model's timing.

It sends the response headers at once, the first token after ``first_token``
seconds and each further token ``per_token`` seconds apart, then the usage
chunk: what a fast hosted or local model looks like on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


@dataclass(frozen=True)
class Timing:
    first_token: float = 0.05
    per_token: float = 0.005
    tokens: int = 20


def _event(body: object) -> bytes:
    return f"data: {json.dumps(body)}\n\n".encode()


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    return _event(
        {"id": "b", "object": "chat.completion.chunk", "model": "bench",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )  # fmt: skip


@asynccontextmanager
async def model_server(timing: Timing) -> AsyncIterator[str]:
    """Serve until the block ends; yields the API root URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(HEADERS)
            await writer.drain()
            await asyncio.sleep(timing.first_token)
            for i in range(timing.tokens):
                if i:
                    await asyncio.sleep(timing.per_token)
                writer.write(_chunk(f"tok{i} "))
                await writer.drain()
            usage = {"prompt_tokens": 8, "completion_tokens": timing.tokens}
            writer.write(_chunk(None, "stop"))
            writer.write(_event({"id": "b", "choices": [], "usage": usage}))
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
