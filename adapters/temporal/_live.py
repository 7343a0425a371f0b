"""The live stream of a Temporal run, on ``temporalio.contrib.workflow_streams``.

The agent workflow hosts a ``WorkflowStream``; the workflow itself publishes
step and wait entries (rebuilt identically on every replay), and a step
activity publishes its model's token deltas with ``ActivityTokens``. Entries
share one topic, ``live``; a watcher subscribes with ``watch_stream``.

Deduplication across attempts: a retried activity first reads how much of its
step's text earlier attempts published, and ``TokenDeltas`` publishes only
what lies beyond it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient

from durable import LiveEvent, TokenDeltas
from durable._live import joined_tokens, text_end

__all__ = ["LIVE_TOPIC", "TOKEN_BATCH_INTERVAL", "ActivityTokens", "watch_stream"]

LIVE_TOPIC = "live"
TOKEN_BATCH_INTERVAL = timedelta(milliseconds=250)
"""How often a streaming activity sends its token deltas: each send is a signal in history."""

log = logging.getLogger("durable.temporal")


class ActivityTokens:
    """Publishes the running step activity's token deltas on its run's stream.

    ``async with ActivityTokens(step, intent) as deltas`` yields the step's
    ``TokenDeltas`` (``None`` when the activity has no workflow to publish to);
    leaving the block sends whatever is still buffered.

    Sends are scheduled here rather than by the stream client's own flusher
    task: on Python 3.11 cancelling that flusher just as a forced flush wakes
    it can be swallowed by ``asyncio.wait_for``, and leaving the block would
    then wait forever. The client still batches, numbers and deduplicates.
    """

    def __init__(
        self,
        step: int,
        intent: str,
        *,
        turn: int | None = None,
        on_retry: Callable[[int], LiveEvent] | None = None,
    ) -> None:
        """``on_retry(attempt)`` makes the entry announcing a retry (default ``step_retry``)."""
        self._step = step
        self._intent = intent
        self._turn = turn
        self._on_retry = on_retry
        self._stream: WorkflowStreamClient | None = None
        self._topic: TopicHandle[LiveEvent] | None = None
        self._tokens_sent = False
        self._held: LiveEvent | None = None
        """Token text waiting for the next send, fragments joined: one entry per batch."""
        self._sends: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TokenDeltas | None:
        info = activity.info()
        try:
            stream = WorkflowStreamClient.from_within_activity()
        except RuntimeError:
            return None  # no workflow, or no client to reach it
        self._stream = stream
        self._topic = stream.topic(LIVE_TOPIC, type=LiveEvent)
        shown = 0
        if info.attempt > 1:
            shown = await _published_text(stream, self._step, self._turn)
            retry = LiveEvent(
                kind="step_retry", step=self._step, intent=self._intent, attempt=info.attempt
            )
            self._publish(retry if self._on_retry is None else self._on_retry(info.attempt))
        return TokenDeltas(self._step, self._publish, shown=shown, turn=self._turn)

    def _publish(self, event: LiveEvent) -> None:
        event = event.model_copy(update={"at": datetime.now(UTC)})
        # Step entries and the first token go out at once; later tokens ride the batch
        # interval, joined into one entry per batch, as every entry costs history.
        if event.kind == "token" and self._tokens_sent:
            joined = None if self._held is None else joined_tokens(self._held, event)
            if joined is None:
                self._release()
            self._held = joined or event
            if self._timer is None:
                self._timer = self._spawn(self._send(TOKEN_BATCH_INTERVAL.total_seconds()))
            return
        self._release()
        assert self._topic is not None
        self._topic.publish(event)
        self._tokens_sent = self._tokens_sent or event.kind == "token"
        self._spawn(self._send())

    def _release(self) -> None:
        if self._held is not None:
            assert self._topic is not None
            self._topic.publish(self._held)
            self._held = None

    def _spawn(self, send: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(send)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return task

    async def _send(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
            self._timer = None
        self._release()
        assert self._stream is not None
        try:
            await self._stream.flush()
        except Exception:
            # The stream is progress, not state: never fail the step over it.
            log.warning("sending step %d's live entries failed", self._step, exc_info=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self._stream is not None:
            # A send cut short keeps its batch pending; this resends it under the same number.
            await self._send()


async def _published_text(stream: WorkflowStreamClient, step: int, turn: int | None) -> int:
    """How far into ``step``'s text the run's stream already reaches."""
    end = await stream.get_offset()
    shown = 0
    if end == 0:
        return shown
    async for item in stream.subscribe([LIVE_TOPIC], result_type=LiveEvent):
        shown = max(shown, text_end([item.data], step, turn))
        if item.offset >= end - 1:
            break
    return shown


async def watch_stream(client: Client, run_id: str, *, after: int = 0) -> AsyncIterator[LiveEvent]:
    """The run's live entries after ``after``, until its final entry or its end."""
    stream = WorkflowStreamClient.create(client, run_id)
    items: AsyncIterator[Any] = stream.subscribe(
        [LIVE_TOPIC], from_offset=after, result_type=LiveEvent
    )
    async for item in items:
        event: LiveEvent = item.data.model_copy(update={"seq": item.offset + 1})
        yield event
        if event.final:
            return
