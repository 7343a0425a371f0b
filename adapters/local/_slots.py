"""``RunSlots``: at most so many local runs execute at once; the rest wait their turn.

A slot is taken before a run's lease, so a run waiting for one holds nothing a
worker elsewhere could want: another worker may take it over meanwhile, and
this one then finds the lease held and moves on. Waiters are served first come,
first served, and a slot is given back on every way out of a run. Child runs
execute inside their parent's slot: counting them too could leave a parent
holding the last slot while its child waits for one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["RunSlots"]


class RunSlots:
    """``limit`` slots shared by the runs given them (``run_durable(..., slots=)``)."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(
                f"a run slot limit must be a whole number of at least 1, got {limit!r}"
            )
        self.limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots held by runs now."""
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        """Runs waiting for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body; wait in line for it when none is free."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot just as it stopped waiting: pass it on
            raise
        finally:
            if turn in self._waiters:
                self._waiters.remove(turn)

    def _release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1
