"""The live stream of a Temporal run, on ``temporalio.contrib.workflow_streams``.

The agent workflow hosts a ``WorkflowStream``; the workflow itself publishes
step and wait entries (rebuilt identically on every replay), and a step
activity publishes its model's token deltas with ``ActivityTokens``. Entries
share one topic, ``live``; a watcher reads it with ``watch_stream``, by query, so
watching adds nothing to the run's history.

Deduplication across attempts: a retried activity reads how much of its
step's text earlier attempts published, and ``TokenDeltas`` publishes only
what lies beyond it. Its ``step_retry`` entry says why, from the server's
pending activity, which keeps the previous attempt's failure. Both reads run
beside the step, never before it: the text is read by query, which the worker
holding the run answers, and after a worker is killed that is often the dead
one, so the query waits ``ANSWER_WITHIN`` for nobody. What the step publishes
meanwhile waits for the reads; a step that ends first waits for them at most
``ANSWER_WITHIN`` each, and not at all for the query when it has no text to trim.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.contrib.workflow_streams import (
    PollInput,
    PollResult,
    TopicHandle,
    WorkflowStreamClient,
)
from temporalio.service import RPCError, RPCStatusCode

from durable import DurableRunDivergenceError, DurableRunEndedError, LiveEvent, TokenDeltas
from durable._live import joined_tokens, live_position_error, retry_entry, text_end

from ._convert import failure_error
from ._messages import LIVE_TOPIC
from ._status import workflow_pollers

__all__ = ["TOKEN_BATCH_INTERVAL", "ActivityTokens", "watch_stream"]

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
        on_retry: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        """``on_retry(attempt)`` makes the conversation event announcing a retried turn
        (the default is a ``step_retry`` entry)."""
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
        self._waiting: list[LiveEvent] | None = None
        """What the step published while a retry's reads were still under way."""
        self._retry: asyncio.Task[None] | None = None
        self._announced = asyncio.Event()

    async def __aenter__(self) -> TokenDeltas | None:
        info = activity.info()
        try:
            stream = WorkflowStreamClient.from_within_activity()
        except RuntimeError:
            return None  # no workflow, or no client to reach it
        self._stream = stream
        self._topic = stream.topic(LIVE_TOPIC, type=LiveEvent)
        deltas = TokenDeltas(self._step, self._offer, turn=self._turn)
        if info.attempt > 1:
            self._waiting = []
            self._retry = asyncio.get_running_loop().create_task(self._prepare(info, deltas))
        return deltas

    async def _prepare(self, info: activity.Info, deltas: TokenDeltas) -> None:
        """Announce the retry, read how far earlier attempts' text reached, then let
        through what the step published meanwhile, trimmed to what lies beyond."""
        assert info.workflow_id is not None  # from_within_activity refuses otherwise
        client = activity.client()
        shown = 0
        try:
            try:
                # The server answers this one, not a worker.
                error_type, message, delay = await _previous_failure(client, info)
                self._publish(
                    retry_entry(
                        self._step, info.attempt, turn=self._turn,
                        error_type=error_type, message=message, delay=delay,
                        intent=self._intent if self._on_retry is None else None,
                        detail=None if self._on_retry is None else self._on_retry(info.attempt),
                    )
                )  # fmt: skip
            finally:
                self._announced.set()
            shown = await _published_text(client, info.workflow_id, self._step, self._turn)
        finally:
            waiting, self._waiting = self._waiting or [], None
            for event in waiting:
                beyond = _beyond(event, shown)
                if beyond is not None:
                    self._publish(beyond)
            deltas.shown = max(deltas.shown, shown)

    async def _settle_retry(self) -> None:
        """Wait, ``ANSWER_WITHIN`` at most each, for the retry entry and, when the step
        published text, for how far earlier attempts' text reached; with no text, the
        step that ended does not wait for the query."""
        assert self._retry is not None
        limit = ANSWER_WITHIN.total_seconds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._announced.wait(), limit)
        if any(e.kind == "token" for e in self._waiting or ()):
            await asyncio.wait({self._retry}, timeout=limit)

    def _offer(self, event: LiveEvent) -> None:
        """Publish ``event``, or keep it until the retry's reads are done."""
        if self._waiting is not None:
            self._waiting.append(event)
        else:
            self._publish(event)

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
        if self._retry is not None:
            try:
                await self._settle_retry()
            finally:
                # Whatever is still unread is left unread: what waited goes out untrimmed.
                self._retry.cancel()
                await asyncio.gather(self._retry, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self._stream is not None:
            # A send cut short keeps its batch pending; this resends it under the same number.
            await self._send()


def _beyond(event: LiveEvent, shown: int) -> LiveEvent | None:
    """``event`` without the text before ``shown``; ``None`` when nothing is left."""
    if event.kind != "token" or event.offset is None or event.text is None:
        return event
    end = event.offset + len(event.text)
    if end <= shown:
        return None
    if event.offset >= shown:
        return event
    return event.model_copy(update={"offset": shown, "text": event.text[shown - event.offset :]})


async def _previous_failure(
    client: Client, info: activity.Info
) -> tuple[str | None, str | None, float | None]:
    """The error type and message that failed this activity's previous attempt, and the
    seconds since; ``None`` where the server does not say (a local activity is never pending).

    The server's pending activity keeps the last failure, as the step record keeps it,
    while the activity retries: reading it adds nothing to the run's history.
    """
    if info.is_local or info.workflow_id is None:
        return None, None, None
    try:
        described = await client.get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        ).describe(rpc_timeout=ANSWER_WITHIN)
    except RPCError:
        log.warning("could not read why activity %s is retried", info.activity_id, exc_info=True)
        return None, None, None
    for pending in described.raw_description.pending_activities:
        if pending.activity_id != info.activity_id or not pending.HasField("last_failure"):
            continue
        error = failure_error(pending.last_failure)
        delay = None
        if pending.HasField("last_attempt_complete_time"):
            failed = pending.last_attempt_complete_time.ToDatetime(UTC)
            delay = (info.current_attempt_scheduled_time - failed).total_seconds()
        return error.type, error.message, delay
    return None, None, None


async def _published_text(client: Client, run_id: str, step: int, turn: int | None) -> int:
    """How far into ``step``'s text the run's stream already reaches (0 when nobody answers)."""
    handle = client.get_workflow_handle(run_id)
    shown, offset = 0, 0
    try:
        while True:
            read = await _read(handle, offset, answer_within=ANSWER_WITHIN)
            shown = max(shown, text_end([e for _, e in _entries(client, read)], step, turn))
            if not read.more_ready:
                return shown
            offset = read.next_offset
    except (RPCError, WorkflowQueryFailedError):
        # The stream is progress, not state: a retry that cannot read it shows its text again.
        log.warning("could not read step %d's published text", step, exc_info=True)
        return shown


STREAM_POLL_QUERY = "__temporal_workflow_stream_poll"
"""The stream's immediate read. The stream registers this name twice: as a long-poll
update and as this query. Only the query leaves the run's history as it was."""

ANSWER_WITHIN = timedelta(seconds=5)
"""How long one read waits for a worker; a watcher then waits and reads again."""
IDLE_POLL = timedelta(milliseconds=250)
"""The longest pause between reads of an idle stream: the most an entry waits for a watcher."""
FIRST_IDLE_POLL = timedelta(milliseconds=10)
"""The first pause once a read comes back empty; pauses double up to ``IDLE_POLL``."""
END_CHECK = timedelta(seconds=1)
"""How often an idle watcher asks the server whether the run has closed."""
ENDED_RUN_READS = 3
"""Reads more a watcher tries, after its run ended unanswered, while a worker polls its queue."""


async def _read(
    handle: WorkflowHandle[Any, Any], offset: int, *, answer_within: timedelta
) -> PollResult:
    result: PollResult = await handle.query(
        STREAM_POLL_QUERY,
        PollInput(topics=[LIVE_TOPIC], from_offset=offset),
        result_type=PollResult,
        rpc_timeout=answer_within,
    )
    return result


def _entries(client: Client, read: PollResult) -> list[tuple[int, LiveEvent]]:
    """The read's entries by offset; each travels as base64 of its serialized payload."""
    converter = client.data_converter.payload_converter
    entries = []
    for item in read.items:
        payload = Payload()
        payload.ParseFromString(base64.b64decode(item.data))
        entries.append((item.offset, converter.from_payload(payload, LiveEvent)))
    return entries


async def _missed(client: Client, run_id: str, start: int, end: int) -> list[tuple[int, LiveEvent]]:
    """Entries ``[start, end)`` the run's latest execution no longer holds.

    A run that continued as new carries its stream's offset and latest entries
    only; the executions before it still hold the rest, read here by query (a
    worker replays a closed execution to answer). Best effort: what cannot be
    read is left out, and said in the log.
    """
    found: dict[int, LiveEvent] = {}
    try:
        execution = (await client.get_workflow_handle(run_id).describe()).run_id
        while execution and min(found, default=end) > start:
            events = client.get_workflow_handle(run_id, run_id=execution).fetch_history_events()
            first = await anext(aiter(events))
            execution = first.workflow_execution_started_event_attributes.continued_execution_run_id
            if not execution:
                break
            earlier = client.get_workflow_handle(run_id, run_id=execution)
            offset = start
            while True:
                read = await _read(earlier, offset, answer_within=ANSWER_WITHIN)
                found.update((at, e) for at, e in _entries(client, read) if start <= at < end)
                if not read.more_ready or read.next_offset >= end:
                    break
                offset = read.next_offset
    except (RPCError, WorkflowQueryFailedError, StopAsyncIteration):
        log.warning("could not read entries %d to %d of run %r", start, end, run_id, exc_info=True)
    return sorted(found.items())


async def _closed(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The task queue of a run that has closed, else ``None`` (also when the server is silent)."""
    try:
        described = await handle.describe(rpc_timeout=ANSWER_WITHIN)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise
        return None
    if described.status in (None, WorkflowExecutionStatus.RUNNING):
        return None
    return described.task_queue


async def watch_stream(
    client: Client,
    run_id: str,
    *,
    after: int = 0,
    idle_poll: timedelta = IDLE_POLL,
    answer_within: timedelta = ANSWER_WITHIN,
) -> AsyncIterator[LiveEvent]:
    """The run's live entries after ``after``, until its final entry or its end.

    Reads the stream by query, which adds no events to the run's history (a
    long-poll update would add two per read). A read that returns entries is
    followed at once by the next; an empty one by a pause that doubles from
    ``FIRST_IDLE_POLL`` up to ``idle_poll``, which bounds how late an entry
    reaches the watcher. A query needs a worker: when none answers within
    ``answer_within`` the watcher keeps waiting. The watch also ends when the
    run closes without a final entry (terminated, timed out, a conversation),
    once what the stream holds has been read. A run that continues as new keeps
    its offsets and carries only its latest entries: earlier ones are read from
    the executions before.
    """
    if after < 0:
        raise live_position_error(run_id, after, 0)
    handle = client.get_workflow_handle(run_id)
    offset = after
    pause = 0.0
    closed: str | None = None
    checked = time.monotonic()
    unanswered = False
    patience = ENDED_RUN_READS
    while True:
        read: PollResult | None = None
        try:
            read = await _read(handle, offset, answer_within=answer_within)
        except (RPCError, WorkflowQueryFailedError) as exc:
            if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
                raise
            if isinstance(exc, WorkflowQueryFailedError) and closed is not None:
                # A worker answered, but cannot replay the closed run: waiting would never end.
                raise DurableRunDivergenceError(
                    f"the worker cannot replay run {run_id!r} to read its live stream: "
                    f"{exc}; read it with a worker running the agent code that ran it"
                ) from None
            if not unanswered:
                log.info("no worker answered the stream query of run %r; waiting: %s", run_id, exc)
            unanswered = True
        if read is not None:
            unanswered = False
            if read.next_offset < offset:  # only the first read can ask past the end
                raise live_position_error(run_id, after, read.next_offset)
            entries = _entries(client, read)
            begins = entries[0][0] if entries else read.next_offset
            if begins > offset:
                entries = await _missed(client, run_id, offset, begins) + entries
            for position, entry in entries:
                event = entry.model_copy(update={"seq": position + 1})
                yield event
                if event.final:
                    return
            offset = read.next_offset
            if read.items or read.more_ready:
                pause = 0.0
                continue
            if closed is not None:
                return  # read after the run closed: nothing more can come
        if read is None or time.monotonic() - checked >= END_CHECK.total_seconds():
            checked = time.monotonic()
            closed = await _closed(handle)
            if closed is not None and read is not None:
                continue  # one more read: entries published just before it closed
            if closed is not None and unanswered:
                # An ended run can only be read by a worker replaying it. One that polls the
                # queue may just be slow to replay (a long history, a busy machine): give it
                # a few more reads. With none, none may ever come.
                if patience > 0 and await workflow_pollers(client, closed):
                    patience -= 1
                    continue
                raise DurableRunEndedError(
                    f"run {run_id!r} has ended, and no worker answered the query that reads its "
                    f"live stream; start a worker on task queue {closed!r} (durable worker with "
                    f"TASK_QUEUE={closed}) and watch again"
                )
        pause = min(idle_poll.total_seconds(), max(FIRST_IDLE_POLL.total_seconds(), 2 * pause))
        await asyncio.sleep(pause)
