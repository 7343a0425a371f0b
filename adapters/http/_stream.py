"""A run's live stream over HTTP: NDJSON, or server-sent events on request.

Each entry carries its ``seq``; a reader that lost its connection resumes
from the last one it saw, with ``after=`` or (as browsers' ``EventSource``
does by itself) ``Last-Event-ID``. The stream ends after the run's final
entry. While nothing happens, a keep-alive line goes out every
``KEEPALIVE_SECONDS`` so proxies keep the connection and a reader that went
away is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from durable import LiveEvent

__all__ = ["KEEPALIVE_SECONDS", "NDJSON", "SSE", "live_lines"]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
KEEPALIVE_SECONDS = 15.0


def _ndjson(event: LiveEvent) -> bytes:
    return event.model_dump_json(exclude_none=True).encode() + b"\n"


def _sse(event: LiveEvent) -> bytes:
    data = event.model_dump_json(exclude_none=True)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def live_lines(
    events: AsyncIterator[LiveEvent], *, sse: bool, keepalive: float = KEEPALIVE_SECONDS
) -> AsyncIterator[bytes]:
    """The encoded entries of ``events``, with keep-alives between them; closes ``events``."""
    encode = _sse if sse else _ndjson
    idle = b": keep-alive\n\n" if sse else b"\n"
    pending: asyncio.Future[LiveEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            # Waiting on the task, not on the iterator, so a keep-alive never
            # cancels the read in progress.
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield idle
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield encode(event)
            if event.final:
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
