"""How one conversation turn calls its participant: the call policy and the forwarding headers.

A ``CallPolicy`` is applied around a single turn, not the whole conversation:
a deadline per attempt, retries judged by ``is_retryable`` and spaced by
``backoff`` (with jitter), and a per-participant circuit breaker. Its retries
are the turn step's retries, so the substrate that owns retries (Temporal, or
the local runner) makes them; the step only judges each failure and says how
long to wait.

The forwarding headers are the wire contract between gateways: correlation
(run, turn, parent turn, speaker), the hop depth, and the user's forwarded
authorization. Their names are configurable; ``REFERENCE_FORWARD_HEADERS``
are the reference runtime's own, for gateways that speak its protocol.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._retry import RetryPolicy, retry_hints

__all__ = [
    "FORWARD_HEADERS",
    "REFERENCE_FORWARD_HEADERS",
    "AuthMode",
    "Backoff",
    "CallPolicy",
    "ForwardHeaderNames",
    "RetryPredicate",
    "forward_headers",
    "network_errors",
    "read_depth",
    "transient_errors",
]

AuthMode = Literal["forward-user", "agent-owned"]
RetryPredicate = Callable[[BaseException], bool]
Backoff = timedelta | Callable[[int], timedelta | float]
"""The delay after a failed attempt: a first delay that grows by ``backoff_coefficient``,
or a function of the failed attempt's number (from 1) returning seconds or a timedelta."""


def network_errors(error: BaseException) -> bool:
    """The reference's default judgment: retry timeouts, aborts and network errors only.

    An answer the server gave (a 4xx, but also a 429 or a 5xx) is an outcome,
    not a transient fault of the network, and is not retried. A model call that
    got no answer at all (refused or cut connection, a hung upstream) is.
    """
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    answered = getattr(error, "status", None) is not None
    return not answered and getattr(error, "retryable", False) is True


def transient_errors(error: BaseException) -> bool:
    """Retry whatever the error itself says may succeed later: for a model call,
    408, 409, 425, 429 and 5xx answers as well as network errors."""
    return retry_hints(error)[0]


class CallPolicy(BaseModel):
    """How one turn calls its participant: a deadline per attempt, retries, a breaker.

    ``failures_to_open`` consecutive failed attempts of a participant open its
    circuit; while open (for ``cooldown``) its turns fail at once. A deadline
    that passes is always retried within ``max_retries``, as in the reference;
    other failures are retried when ``is_retryable`` says so. A ``retry_after``
    the server asked for (``Retry-After``) replaces the backoff.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deadline: timedelta = timedelta(seconds=120)
    """The most one attempt may take."""
    max_retries: int = Field(default=2, ge=0)
    """Attempts after the first; two by default, so a lost worker's attempt is not final."""
    backoff: Backoff = timedelta(milliseconds=250)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    """Growth of a fixed ``backoff`` per attempt; 1.0 waits the same each time."""
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    """Each delay is cut by a random fraction up to this, so retries spread out."""
    is_retryable: RetryPredicate = network_errors
    """Whether a failed attempt is worth another; see ``network_errors`` (the default)
    and ``transient_errors``. It runs in the worker that made the call."""
    failures_to_open: int | None = Field(default=None, ge=1)
    cooldown: timedelta = timedelta(seconds=30)

    @model_validator(mode="after")
    def _positive(self) -> CallPolicy:
        if self.deadline <= timedelta(0):
            raise ValueError(f"a call policy's deadline must be positive, got {self.deadline}")
        if isinstance(self.backoff, timedelta) and self.backoff <= timedelta(0):
            raise ValueError(f"a call policy's backoff must be positive, got {self.backoff}")
        return self

    def retry_policy(self, attempts: int) -> RetryPolicy:
        """The turn step's retry policy, allowed ``attempts`` attempts.

        Its intervals space only retries after a deadline: every other failure
        carries the delay ``delay_after`` computed, as its ``retry_after``.
        """
        first = self.backoff if isinstance(self.backoff, timedelta) else timedelta(seconds=0.25)
        return RetryPolicy(
            initial_interval=first,
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=first * 100,
            maximum_attempts=attempts,
        )

    def delay_after(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 1), jitter included."""
        if isinstance(self.backoff, timedelta):
            delay = self.backoff * self.backoff_coefficient ** (attempt - 1)
            seconds = min(delay, self.backoff * 100).total_seconds()
        else:
            value = self.backoff(attempt)
            seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
            if not seconds >= 0:
                raise ValueError(
                    f"the backoff function returned {value!r} for attempt {attempt}; "
                    "return a number of seconds >= 0 or a timedelta"
                )
        cut = (rng or random).uniform(0.0, self.jitter) if self.jitter else 0.0
        return seconds * (1.0 - cut)


_TOKEN = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


class ForwardHeaderNames(BaseModel):
    """The names of the headers stamped on every participant call (lower case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    authorization: str = "x-durable-forwarded-authorization"
    """The user's forwarded authorization, from the worker's settings; downstream bills it."""
    depth: str = "x-durable-forwarded-depth"
    """Hops so far, incremented on every call; refused beyond ``DEFAULT_MAX_DEPTH``."""
    run_id: str = "x-durable-run-id"
    turn_id: str = "x-durable-turn-id"
    parent_turn_id: str = "x-durable-parent-turn-id"
    speaker: str = "x-durable-speaker"

    @model_validator(mode="after")
    def _valid(self) -> ForwardHeaderNames:
        names = list(self.model_dump().values())
        for name in names:
            if not _TOKEN.match(name):
                raise ValueError(
                    f"{name!r} is not a header name this library sends: use lower-case "
                    "letters, digits and - (an HTTP token)"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"forwarding header names must differ from each other: {names}")
        return self

    def all(self) -> frozenset[str]:
        return frozenset(self.model_dump().values())


FORWARD_HEADERS = ForwardHeaderNames()
"""This library's own names (the default)."""
REFERENCE_FORWARD_HEADERS = ForwardHeaderNames(
    authorization="x-tangle-forwarded-authorization",
    depth="x-tangle-forwarded-depth",
    run_id="x-tangle-runid",
    turn_id="x-tangle-turnid",
    parent_turn_id="x-tangle-parent-turnid",
    speaker="x-tangle-speaker",
)
"""The reference runtime's names, for gateways that speak its protocol."""


def forward_headers(
    names: ForwardHeaderNames,
    *,
    depth: int,
    run_id: str,
    turn: str,
    speaker: str,
    parent_turn: str | None = None,
) -> dict[str, str]:
    """The correlation headers of one outbound participant call (no secrets)."""
    headers = {
        names.depth: str(depth),
        names.run_id: run_id,
        names.turn_id: turn,
        names.speaker: speaker,
    }
    if parent_turn:
        headers[names.parent_turn_id] = parent_turn
    return headers


def read_depth(headers: Mapping[str, str], names: ForwardHeaderNames = FORWARD_HEADERS) -> int:
    """The hop depth of an inbound request: 0 without the header (the caller is the origin).

    A value that is not a non-negative integer is refused rather than read as 0:
    a caller could otherwise reset the depth and escape the limit.
    """
    raw = {k.lower(): v for k, v in headers.items()}.get(names.depth)
    if raw is None:
        return 0
    if not raw.strip().isdigit():
        raise ValueError(
            f"inbound header {names.depth} is {raw!r}; it must be a non-negative integer "
            "(the number of hops so far), or absent for the origin"
        )
    return int(raw)
