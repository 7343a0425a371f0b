"""Run a store's short blocking calls inline, and move them to a thread only to wait.

An uncontended SQLite statement or locked file append takes microseconds,
while handing it to a thread and waking the event loop again costs far more.
So each call first runs on the event loop thread with ``may_wait=False``;
if it would have to wait for another process's lock it raises ``WouldBlock``
and is retried on the store's single worker thread with ``may_wait=True``.
While any call waits there, later calls queue behind it on the same thread,
so the store's connection or files are never used from two threads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["Offloader", "WouldBlock"]

T = TypeVar("T")


class WouldBlock(Exception):
    """Raised by a call made with ``may_wait=False`` that would have to wait for a lock."""


class Offloader:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._waiting = 0
        self._closed = False

    async def call(self, fn: Callable[[bool], T]) -> T:
        if not self._waiting:
            try:
                return fn(False)
            except WouldBlock:
                pass
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, True)
        finally:
            self._waiting -= 1

    def close(self) -> bool:
        """Stop the worker thread; ``False`` if it was already closed."""
        if self._closed:
            return False
        self._closed = True
        self._executor.shutdown(wait=True)
        return True
