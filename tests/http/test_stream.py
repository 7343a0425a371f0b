"""The live-stream encoder: keep-alives while a run is quiet, and it closes what it reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from durable import LiveEvent
from durable_agents.adapters.http._stream import live_lines


class Quiet:
    """A run's stream that says nothing for a while, then ends; records whether it was closed."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.closed = False

    async def events(self) -> AsyncIterator[LiveEvent]:
        try:
            yield LiveEvent(kind="step_started", seq=1, step=0)
            await asyncio.sleep(self.pause)
            yield LiveEvent(kind="run_completed", seq=2)
            yield LiveEvent(kind="token", seq=3, text="never read")
        finally:
            self.closed = True


async def test_keep_alives_fill_the_silence_and_the_stream_stops_at_the_final_entry() -> None:
    quiet = Quiet(pause=0.35)
    lines = [line async for line in live_lines(quiet.events(), sse=False, keepalive=0.1)]
    entries = [json.loads(line) for line in lines if line.strip()]
    assert [entry["seq"] for entry in entries] == [1, 2]
    assert lines.count(b"\n") >= 2  # blank keep-alive lines while the run was quiet
    assert quiet.closed


async def test_server_sent_events_carry_the_seq_as_their_id() -> None:
    quiet = Quiet(pause=0.25)
    text = b"".join([c async for c in live_lines(quiet.events(), sse=True, keepalive=0.1)])
    blocks = text.decode().split("\n\n")
    assert blocks[0].startswith("id: 1\nevent: step_started\ndata: {")
    assert ": keep-alive" in blocks
    assert "id: 2\nevent: run_completed" in text.decode()


async def test_a_reader_that_goes_away_closes_the_run_stream() -> None:
    quiet = Quiet(pause=30)
    lines = live_lines(quiet.events(), sse=False, keepalive=0.05)
    assert json.loads(await anext(lines))["seq"] == 1
    assert await anext(lines) == b"\n"
    await lines.aclose()  # what the server does when the connection drops
    assert quiet.closed
