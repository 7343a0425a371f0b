"""The live stream of a local run: publishing with group commit, and watching.

A run's publisher hands entries to the store in the background: an entry
waits at most ``COALESCE`` seconds for the entries published after it (a
model's tokens go at once), and entries published while a write is in flight go
together in the next one, so a fast token stream costs a write per store round
trip, and a run of quick steps a write per window, rather than one per entry.
Watchers in the same process are woken as soon as a write lands; watchers
elsewhere poll the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from durable import LiveEvent, as_timedelta, check_name

from ._store import DurableRunStore, run_not_found, utc_now

__all__ = ["LivePublisher", "watch_run"]

log = logging.getLogger("durable.local")

_BATCH = 500
COALESCE = 0.01
"""Seconds an entry waits for others to share its write: no watcher sees the difference."""
_listeners: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}


def _ring(run_id: str) -> None:
    for loop, event in list(_listeners.get(run_id, ())):
        if loop.is_closed():
            continue
        loop.call_soon_threadsafe(event.set)


class LivePublisher:
    """Publishes one run's live entries to its store, in order, without blocking the run.

    The stream is progress, not state: a failed write is logged and the run goes on.
    """

    def __init__(self, store: DurableRunStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._pending: list[LiveEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._hurry = False
        """Set by ``flush``: write what is pending without waiting for more."""
        self._window: asyncio.Future[None] | None = None
        """The writer's wait for entries to share its write; ``flush`` cuts it short."""
        self._warned = False

    def publish(self, event: LiveEvent) -> None:
        if event.at is None:
            event = event.model_copy(update={"at": utc_now()})
        self._pending.append(event)
        self._start_writer()

    def _start_writer(self) -> None:
        # A writer cancelled before it began never cleared itself: start another.
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name=f"durable-live:{self._run_id}"
            )

    async def _write(self) -> None:
        try:
            while self._pending:
                if not self._hurry and not any(event.kind == "token" for event in self._pending):
                    # Tokens go at once: a watcher reads them as the model writes them.
                    await self._coalesce()
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                try:
                    await self._store.append_live(self._run_id, batch)
                except Exception:
                    if not self._warned:
                        self._warned = True
                        log.warning(
                            "run %r: writing its live stream failed; watchers miss entries",
                            self._run_id,
                            exc_info=True,
                        )
                _ring(self._run_id)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
                self._hurry = False

    async def _coalesce(self) -> None:
        """Wait ``COALESCE`` seconds, or until ``flush``. A future and a timer: on Python
        3.11 ``wait_for`` made a task, and on timing out an exception, for every write of
        every run."""
        loop = asyncio.get_running_loop()
        window = self._window = loop.create_future()
        timer = loop.call_later(COALESCE, _end_window, window)
        try:
            await window
        finally:
            timer.cancel()
            self._window = None

    async def flush(self) -> None:
        """Wait until everything published so far is in the store."""
        if not self._pending and (self._writer is None or self._writer.done()):
            return  # nothing to write: the next entries wait for their window as usual
        self._hurry = True
        self._start_writer()  # entries a cancelled writer left behind go too
        if self._window is not None:
            _end_window(self._window)
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)


def _end_window(window: asyncio.Future[None]) -> None:
    if not window.done():
        window.set_result(None)


async def watch_run(
    store: DurableRunStore,
    run_id: str,
    *,
    after: int = 0,
    poll_interval: timedelta | float = timedelta(milliseconds=100),
) -> AsyncIterator[LiveEvent]:
    """Yield run ``run_id``'s live entries after ``after``, as they come, until it ends.

    Entries written by this process wake the watcher at once; those written by
    other processes are found by polling every ``poll_interval``.
    """
    check_name(run_id, what="run_id")
    pause = as_timedelta(poll_interval, what="poll_interval").total_seconds()
    if await store.load_run(run_id) is None:
        raise run_not_found(run_id)
    loop = asyncio.get_running_loop()
    bell = (loop, asyncio.Event())
    _listeners.setdefault(run_id, set()).add(bell)
    try:
        cursor = after
        ended = False
        while True:
            bell[1].clear()
            events = await store.read_live(run_id, after=cursor)
            for event in events:
                yield event
                cursor = event.seq
                if event.final:
                    return
            if events:
                continue
            if ended:
                return  # ended without a final entry: nothing more will come
            run = await store.load_run(run_id)
            # The final entry lands just after the run ends: wait for it once more.
            ended = run is None or not run.active
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bell[1].wait(), pause)
    finally:
        listeners = _listeners.get(run_id)
        if listeners is not None:
            listeners.discard(bell)
            if not listeners:
                del _listeners[run_id]
