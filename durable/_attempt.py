"""Which attempt of its step the running step function is: the same on every substrate.

Locally the runner sets it around each attempt; on Temporal the step activity
sets it from the activity's attempt. A step that computes its own backoff
(a conversation turn's ``CallPolicy``) reads it with ``current_attempt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["attempt_scope", "current_attempt"]

_attempt: ContextVar[int] = ContextVar("durable_step_attempt", default=1)


def current_attempt() -> int:
    """The attempt of the step being executed, from 1; 1 outside any step."""
    return _attempt.get()


@contextmanager
def attempt_scope(attempt: int) -> Iterator[None]:
    """Run the body as attempt ``attempt`` of its step."""
    token = _attempt.set(attempt)
    try:
        yield
    finally:
        _attempt.reset(token)
