"""Retry policy and step options, mirroring Temporal's ``RetryPolicy`` field for field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_STEP_TIMEOUT",
    "RetryPolicy",
    "StepOptions",
    "as_timedelta",
    "retry_hints",
]

DEFAULT_STEP_TIMEOUT = timedelta(minutes=5)
"""Per-attempt timeout of a step that names none (Temporal's start-to-close timeout)."""

DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""Heartbeat timeout of a step that names none: how soon Temporal retries a step elsewhere
after its worker is lost, instead of waiting out the attempt's whole timeout.

Every step activity heartbeats in the background while it runs (three times per
timeout), so only a lost worker or process misses it. Local activities take none.
"""


def as_timedelta(value: timedelta | float, *, what: str) -> timedelta:
    """Accept seconds or a ``timedelta``; refuse negative or non-finite values."""
    if not isinstance(value, timedelta) and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0):
        raise ValueError(f"{what} must not be negative, got {delta}; pass a duration >= 0")
    return delta


def retry_hints(error: BaseException | None) -> tuple[bool, float | None]:
    """What a failure says about retrying it: ``(retryable, retry_after_seconds)``.

    An exception may carry ``retryable = False`` (retrying cannot help, fail the
    step now) and ``retry_after`` (seconds the server asked to wait). Both
    substrates honour them on top of the step's ``RetryPolicy``: locally the
    runner does, on Temporal they become ``non_retryable`` and ``next_retry_delay``.
    """
    retryable = getattr(error, "retryable", True) is not False
    after = getattr(error, "retry_after", None)
    if isinstance(after, int | float) and not isinstance(after, bool) and after >= 0:
        return retryable, float(after)
    return retryable, None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a failing step is retried; maps 1:1 onto ``temporalio.common.RetryPolicy``."""

    initial_interval: timedelta = timedelta(seconds=1)
    """Delay before the first retry."""
    backoff_coefficient: float = 2.0
    """Each delay is the previous one times this factor."""
    maximum_interval: timedelta | None = None
    """Cap on the delay; ``None`` means 100 times ``initial_interval``, as on Temporal."""
    maximum_attempts: int = 0
    """Total attempts including the first; 0 means unlimited, as on Temporal."""
    non_retryable_error_types: Sequence[str] = field(default=())
    """Error class names (``type(exc).__name__``) that fail the step at once."""

    def __post_init__(self) -> None:
        if self.initial_interval <= timedelta(0):
            raise ValueError(f"initial_interval must be positive, got {self.initial_interval}")
        if self.backoff_coefficient < 1:
            raise ValueError(f"backoff_coefficient must be >= 1, got {self.backoff_coefficient}")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise ValueError(
                f"maximum_interval ({self.maximum_interval}) must be >= "
                f"initial_interval ({self.initial_interval})"
            )
        if self.maximum_attempts < 0:
            raise ValueError(
                f"maximum_attempts must be >= 0 (0 means unlimited), got {self.maximum_attempts}"
            )
        if isinstance(self.non_retryable_error_types, str):
            raise ValueError(
                "non_retryable_error_types must be a sequence of class names, not one string; "
                f"write ({self.non_retryable_error_types!r},)"
            )
        object.__setattr__(self, "non_retryable_error_types", tuple(self.non_retryable_error_types))

    def delay_before(self, attempt: int) -> timedelta:
        """Delay before ``attempt`` (2 for the first retry)."""
        cap = self.maximum_interval or self.initial_interval * 100
        delay = self.initial_interval * (self.backoff_coefficient ** max(attempt - 2, 0))
        return min(delay, cap)

    def allows_attempt(self, attempt: int) -> bool:
        return self.maximum_attempts == 0 or attempt <= self.maximum_attempts

    def retries(self, error_type: str) -> bool:
        return error_type not in self.non_retryable_error_types


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """Per-attempt timeout and retry policy of a step."""

    timeout: timedelta = DEFAULT_STEP_TIMEOUT
    """Start-to-close timeout of one attempt."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT
    """On Temporal, retry an attempt whose worker stopped heartbeating for this long;
    the step activity heartbeats in the background, and 0 turns the timeout off.
    Local activities and other substrates ignore it."""
    local_activity: bool = False
    """On Temporal, run as a local activity: no round trip through the server's task
    queue, for short steps. Elsewhere it changes nothing."""

    def with_overrides(
        self,
        *,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        heartbeat: timedelta | float | None = None,
    ) -> StepOptions:
        """These options with one call's overrides; ``None`` keeps the step's own."""
        if timeout is None and retry is None and heartbeat is None:
            return self
        attempt = self.timeout if timeout is None else as_timedelta(timeout, what="step timeout")
        if attempt <= timedelta(0):
            raise ValueError("a step timeout must be positive; pass seconds > 0")
        return replace(
            self,
            timeout=attempt,
            retry=self.retry if retry is None else retry,
            heartbeat_timeout=self.heartbeat_timeout
            if heartbeat is None
            else as_timedelta(heartbeat, what="heartbeat timeout"),
        )
