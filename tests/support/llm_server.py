"""A real local HTTP server speaking the OpenAI chat-completions stream, with faults on demand.

The requested ``model`` picks the behaviour: ``ok``, ``tools``, ``hang-headers``,
``hang-stream``, ``rate-limited`` (429 with Retry-After), ``busy`` (503 with
retry-after-ms), ``flaky`` (500, then 200), ``bad-request`` (400),
``unauthorized`` (401), ``drop`` (connection cut mid-stream), ``malformed``,
``down`` (500 every time) and ``slow`` (a quarter second before answering);
``hang-once``, ``hang-stream-once``, ``rate-limited-once``, ``busy-once`` and
``drop-once`` misbehave on the first request only. ``no-usage`` ignores
``stream_options.include_usage`` and reports usage only when asked without
streaming; any model asked with ``"stream": false`` answers in one JSON response.
It counts requests per model, notes when each arrived, and records the
Authorization headers it saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import Connections, loopback_server

STREAM_HEADERS = (
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Connection: close\r\n\r\n"
)
REPLY = ["Dur", "able ", "hello"]
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n".encode()


def _error(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": {"message": message, "type": "test"}})
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


def _whole(model: str) -> bytes:
    """A completion in one JSON response, as a server answers ``"stream": false``."""
    message = {"role": "assistant", "content": "".join(REPLY)}
    body = json.dumps({"id": "c1", "object": "chat.completion", "model": model,
                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                       "usage": USAGE})  # fmt: skip
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


@dataclass
class ModelServer:
    base_url: str = ""
    requests: Counter[str] = field(default_factory=Counter)
    authorizations: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    """Every request's headers, lower-cased names."""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    """Per model, when each request arrived (``time.monotonic``)."""

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Connections
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {
                k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            self.bodies.append(body)
            self.authorizations.append(headers.get("authorization", ""))
            self.headers.append(headers)
            model = body["model"]
            self.requests[model] += 1
            self.arrivals.setdefault(model, []).append(time.monotonic())
            if body.get("stream") is False:
                writer.write(_whole(model))
            else:
                await self._respond(model, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _respond(self, model: str, writer: asyncio.StreamWriter) -> None:
        first = self.requests[model] == 1
        if model == "hang-headers" or (model == "hang-once" and first):
            await asyncio.sleep(3600)
        if model == "rate-limited" or (model == "rate-limited-once" and first):
            wait = "7" if model == "rate-limited" else "2"
            writer.write(
                _error(429, "Too Many Requests", "Rate limit reached", f"Retry-After: {wait}\r\n")
            )
            return
        if model == "busy" or (model == "busy-once" and first):
            wait = "1500" if model == "busy" else "200"
            writer.write(
                _error(503, "Service Unavailable", "overloaded", f"retry-after-ms: {wait}\r\n")
            )
            return
        if model == "slow":
            await asyncio.sleep(0.25)
        if model == "down":
            writer.write(_error(500, "Internal Server Error", "The server is down"))
            return
        if model == "flaky" and self.requests[model] == 1:
            writer.write(_error(500, "Internal Server Error", "The server had an error"))
            return
        if model == "bad-request":
            writer.write(_error(400, "Bad Request", "max_tokens is too large: 999999"))
            return
        if model == "unauthorized":
            writer.write(_error(401, "Unauthorized", "Incorrect API key provided"))
            return
        writer.write(STREAM_HEADERS.encode())
        if model == "malformed":
            writer.write(b"data: {this is not json\n\n")
            await writer.drain()
            return
        if model == "tools":
            opening = {
                "index": 0,
                "id": "call_1",
                "function": {"name": "lookup", "arguments": '{"or'},
            }
            writer.write(_chunk({"role": "assistant", "tool_calls": [opening]}))
            writer.write(
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'der": 7}'}}]})
            )
            writer.write(_chunk({}, "tool_calls"))
        else:
            for i, text in enumerate(REPLY):
                writer.write(_chunk({"content": text}))
                await writer.drain()
                if i == 0 and (model == "hang-stream" or (model == "hang-stream-once" and first)):
                    await asyncio.sleep(3600)
                if i == 0 and (model == "drop" or (model == "drop-once" and first)):
                    writer.transport.abort()
                    return
            writer.write(_chunk({}, "stop"))
        if model != "no-usage":
            usage = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
            writer.write(f"data: {json.dumps(usage)}\n\n".encode())
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()


def catalog(
    server: ModelServer, names: Sequence[str], *, priced: bool = True
) -> dict[str, dict[str, Any]]:
    """Model settings naming each of ``names`` on ``server`` (for ``DURABLE_MODELS``): at
    0.5 and 1.5 per 1,000 tokens with the session's secret as key when ``priced``."""
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        models[name] = {"base_url": server.base_url, "model": name}
        if priced:
            models[name].update(
                input_price_per_1k=0.5, output_price_per_1k=1.5, api_key_env="PARTNER_API_KEY"
            )
    return models


@asynccontextmanager
async def model_server() -> AsyncIterator[ModelServer]:
    state = ModelServer()
    async with loopback_server(state.handle) as port:
        state.base_url = f"http://127.0.0.1:{port}/v1"
        yield state
