"""``LeaseKeeper``: renews the leases of running runs from a thread, not the event loop.

A lease renewed by an asyncio task lapses whenever a step blocks the event loop
(``time.sleep``, a synchronous HTTP client, CPU work) for longer than the lease:
another worker takes the run over and runs the step again while it still runs
here. So each store keeps one daemon thread that renews every lease it keeps,
each ``lease_for``/3, through the store's ``renew_lease_blocking``, which uses a
connection of its own. A renewal is the same fenced update as on the loop (same
holder, same generation, still running), so a worker that was taken over still
changes nothing; the keeper then tells the run's event loop, thread-safely.

The thread starts with the first kept lease and exits when none is left, so a
store that is never closed leaves no thread behind once its runs stop.

Each renewal waits for its store at most ``renewal_timeout(lease_for)``: the
thread renews one lease after another, so one renewal hung on a lock or a
silent server would otherwise let every lease it keeps lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from durable import DurableRunLeaseLostError, Lease

__all__ = ["KeptLease", "LeaseKeeper", "renewal_timeout"]

log = logging.getLogger("durable.local")

MAX_RENEWAL_WAIT = 5.0
"""Seconds one renewal may wait for its store, whatever the lease: a store that
answers a one-row update in milliseconds is in trouble long before this."""


def renewal_timeout(lease_for: timedelta) -> float:
    """Seconds a renewal of a ``lease_for`` lease may wait for its store.

    A tenth of the lease: a renewal that times out at ``lease_for``/3 is tried
    again ``lease_for``/3 later and still lands before the lease lapses.
    """
    return min(lease_for.total_seconds() / 10, MAX_RENEWAL_WAIT)


class BlockingRenewal(Protocol):
    def __call__(self, lease: Lease, *, lease_for: timedelta) -> Lease: ...


class KeptLease:
    """A run's lease while its keeper renews it; ``release()`` once the run stops."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        lease: Lease,
        lease_for: timedelta,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[DurableRunLeaseLostError], object],
    ) -> None:
        self.lease = lease
        """The latest renewal; its holder and generation, all a fence reads, never change."""
        self.lease_for = lease_for
        self.every = lease_for.total_seconds() / 3
        self.due = time.monotonic() + self.every
        self._keeper = keeper
        self._loop = loop
        self._on_lost = on_lost

    def release(self) -> None:
        """Stop renewing. Idempotent; a renewal already under way may still land."""
        self._keeper._release(self)

    def _lost(self, error: DurableRunLeaseLostError) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed, and the run with it
            self._loop.call_soon_threadsafe(self._on_lost, error)


class LeaseKeeper:
    """One thread that renews every kept lease of a store when it falls due."""

    def __init__(self, renew: BlockingRenewal, *, name: str = "durable-leases") -> None:
        self._renew = renew
        self._name = name
        self._kept: set[KeptLease] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def holding(self) -> int:
        """How many leases it keeps: the runs this process executes on its store now."""
        return len(self._kept)

    def keep(
        self,
        lease: Lease,
        *,
        lease_for: timedelta,
        on_lost: Callable[[DurableRunLeaseLostError], object],
    ) -> KeptLease:
        """Renew ``lease`` every ``lease_for``/3 until released.

        If another worker took the run over, ``on_lost`` is called on the calling
        event loop and renewing stops. A renewal that fails otherwise (the store
        unreachable for a moment) is logged and tried again: fencing protects
        every write meanwhile.
        """
        kept = KeptLease(self, lease, lease_for, asyncio.get_running_loop(), on_lost)
        with self._changed:
            self._kept.add(kept)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify()
        return kept

    def close(self, *, timeout: float = 2 * MAX_RENEWAL_WAIT) -> None:
        """Stop renewing every lease and wait up to ``timeout`` s for the thread. Idempotent.

        Stores call this from their async ``close``, so the wait is bounded: a
        renewal under way is bounded by ``renewal_timeout``, and a thread that
        still outlives the wait is a daemon that stops after that renewal.
        """
        with self._changed:
            self._kept.clear()
            thread = self._thread
            self._changed.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "the lease keeper %r is still renewing after %.1fs; it stops once that "
                    "renewal returns",
                    self._name,
                    timeout,
                )

    def _release(self, kept: KeptLease) -> None:
        with self._changed:
            self._kept.discard(kept)
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                due = self._wait_for_due()
                if not due:
                    # Decided under the lock, so keep() starts a new thread after this one.
                    self._thread = None
                    return
            # Renew outside the lock: a renewal may wait on the store for seconds,
            # and keep() and release() are called from event loops.
            for kept in due:
                self._renew_one(kept)

    def _wait_for_due(self) -> list[KeptLease]:
        while self._kept:
            now = time.monotonic()
            due = [kept for kept in self._kept if kept.due <= now]
            if due:
                return due
            self._changed.wait(min(kept.due for kept in self._kept) - now)
        return []

    def _renew_one(self, kept: KeptLease) -> None:
        try:
            kept.lease = self._renew(kept.lease, lease_for=kept.lease_for)
        except DurableRunLeaseLostError as error:
            with self._changed:
                if kept not in self._kept:
                    return  # released meanwhile: the run is over here anyway
                self._kept.discard(kept)
            kept._lost(error)
            return
        except Exception:
            # A store hiccup is not a lost lease; fencing protects every write meanwhile.
            log.warning(
                "renewing the lease of run %r failed; retrying", kept.lease.run_id, exc_info=True
            )
        kept.due = time.monotonic() + kept.every
