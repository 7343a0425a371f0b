"""The background heartbeat of a step activity, recorded from a thread.

Temporal notices a lost worker only by heartbeats that stop arriving, so a step
activity heartbeats for as long as it runs. ``activity.heartbeat()`` cannot do
it from a thread: the SDK schedules every heartbeat on the event loop (even a
threaded activity's), so a step that blocks the loop (``time.sleep``, a
synchronous HTTP client, CPU work) would starve it, Temporal would time the
attempt out and run the step again on another worker while it still runs here.
Instead one daemon thread records each running step's heartbeat straight into
the worker's core, which takes heartbeats from any thread (a channel send, with
the GIL released), throttles them and sends them without the event loop. The
way to the core is not public SDK API: if an SDK release moves it, heartbeats
fall back to the event loop and a warning says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import temporalio.bridge.proto
from temporalio import activity
from temporalio.worker import ActivityOutboundInterceptor

__all__ = ["BEATS_PER_TIMEOUT", "heartbeating", "thread_heartbeats"]

BEATS_PER_TIMEOUT = 3
"""Heartbeats recorded per heartbeat timeout; the core sends at most one per 0.8 timeout."""

Record = Callable[[], None]


@dataclass(eq=False)
class _Beat:
    record: Record
    every: float
    due: float = 0.0

    def __post_init__(self) -> None:
        # The first beat waits a period: Temporal counts the timeout from the
        # attempt's start, and a step shorter than a period never costs a heartbeat.
        self.due = time.monotonic() + self.every


class _Beater:
    """One daemon thread that records every registered step's heartbeat when it is due."""

    def __init__(self) -> None:
        self._beats: set[_Beat] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = 0.0
        """When the thread looks at the beats next (``time.monotonic()``)."""

    def add(self, beat: _Beat) -> None:
        with self._changed:
            self._beats.add(beat)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="durable-step-heartbeats", daemon=True
                )
                self._thread.start()
            elif beat.due < self._wakes_at:
                # Only a beat due before the thread's next look wakes it: with many
                # steps starting at once, waking it for each (to scan every beat)
                # cost the worker more than the steps' own bookkeeping.
                self._changed.notify()

    def remove(self, beat: _Beat) -> None:
        # Records happen under the same lock: once this returns, none follows for
        # this step, so none reaches the core after its activity completed.
        with self._changed:
            self._beats.discard(beat)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for beat in [b for b in self._beats if b.due <= now]:
                    beat.due = now + beat.every
                    try:
                        beat.record()
                    except BaseException:  # a core panic too: the other steps must keep beating
                        self._beats.discard(beat)
                        activity.logger.exception("recording a step heartbeat failed")
                self._wakes_at = min((b.due for b in self._beats), default=now + 3600)
                self._changed.wait(max(self._wakes_at - now, 0.0))


_beater = _Beater()
_warned = False
_threaded: contextvars.ContextVar[bool] = contextvars.ContextVar("threaded", default=False)


def _fresh_beater() -> None:
    # A forked child has none of the parent's threads, and maybe a lock held by one.
    global _beater
    _beater = _Beater()


os.register_at_fork(after_in_child=_fresh_beater)


def _core_recorder(heartbeat: Callable[..., None], task_token: bytes) -> Record | None:
    """A thread-safe heartbeat of this activity into the worker's core, or None if not found."""
    # The context's heartbeat is the outermost outbound interceptor's; the SDK's
    # own one, at the end of the chain, holds the activity worker and its core.
    outbound = getattr(heartbeat, "__self__", None)
    while isinstance(outbound, ActivityOutboundInterceptor) and not hasattr(outbound, "_worker"):
        outbound = getattr(outbound, "next", None)
    bridge = getattr(getattr(outbound, "_worker", None), "_bridge_worker", None)
    record = getattr(bridge() if callable(bridge) else None, "record_activity_heartbeat", None)
    if not callable(record):
        return None
    message = temporalio.bridge.proto.ActivityHeartbeat(task_token=task_token)
    return lambda: record(message)


def thread_heartbeats() -> bool:
    """Whether the running step's background heartbeat is recorded from a thread."""
    return _threaded.get()


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat the running activity in the background until the block exits.

    Nothing happens for a local activity or one scheduled without a heartbeat
    timeout. Once the step heartbeats with details itself, the background stops,
    so the details it means the next attempt to see are never overwritten.
    """
    info = activity.info()
    context = activity._Context.current()
    own = context.heartbeat
    if info.is_local or not info.heartbeat_timeout or own is None:
        yield
        return
    every = info.heartbeat_timeout.total_seconds() / BEATS_PER_TIMEOUT
    record = _core_recorder(own, info.task_token)
    beat = _Beat(record or own, every)
    loop_beats: asyncio.Task[None] | None = None
    if record is None:
        _warn_loop_heartbeats()
        loop_beats = asyncio.create_task(_beat_on_loop(beat), name="durable-step-heartbeat")
    else:
        _beater.add(beat)
    threaded = _threaded.set(record is not None)

    def step_heartbeat(*details: Any) -> None:
        if details:
            _stop(beat, loop_beats)
        own(*details)

    context.heartbeat = step_heartbeat
    try:
        yield
    finally:
        context.heartbeat = own
        _threaded.reset(threaded)
        _stop(beat, loop_beats)
        if loop_beats is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await loop_beats


def _stop(beat: _Beat, loop_beats: asyncio.Task[None] | None) -> None:
    if loop_beats is None:
        _beater.remove(beat)
    else:
        loop_beats.cancel()


async def _beat_on_loop(beat: _Beat) -> None:
    while True:
        await asyncio.sleep(beat.every)
        beat.record()


def _warn_loop_heartbeats() -> None:
    global _warned
    if not _warned:
        _warned = True
        activity.logger.warning(
            "step heartbeats come from the event loop, because this temporalio release "
            "keeps the worker's core elsewhere than where step heartbeats look for it: a step "
            "that blocks the event loop for longer than its heartbeat timeout is retried while "
            "it still runs; use the temporalio release the test suite passes with"
        )
