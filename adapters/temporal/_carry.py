"""What an agent run carries when it continues as new: a stored contract, read on both sides.

The agent workflow's first argument is the run's manifest, the run's identity.
An execution continued as new gets a second one, ``RunCarry``: the step
records of the executions before it (so the new execution replays them), the
order their outcomes arrived in, the errors they raised, the events received,
the usage totals and the live stream's position. The manifest is passed on
unchanged, so the run keeps its id and its manifest hash.

The records travel as zlib-compressed JSON (base64 in the JSON payload): a
replay needs every result inside the workflow, and history is the only way in,
so the bytes are in history either way; compressed, a position costs about 35
bytes instead of 260 (500 positions: 17 KB, not 132 KB). ``durable status``
reads them from the execution's first event without a worker, and without a
shared blob store.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.contrib.workflow_streams import WorkflowStreamState

from durable import StepRecord

__all__ = [
    "CARRY_LIMIT",
    "LIVE_TAIL_BYTES",
    "CarriedState",
    "RaisedError",
    "RunCarry",
    "live_tail",
    "pack",
    "unpack",
]

CARRY_LIMIT = 1024 * 1024
"""The most bytes the packed state may take: half of Temporal's default 2 MB payload
limit, so a continued execution starts well within its history limits. A run whose
records outgrow it stops continuing as new by itself and says so in the worker's log."""

LIVE_TAIL_BYTES = 8 * 1024
"""How much of its latest live entries a run carries: enough for a watcher a little behind
when the run continued; one further behind reads the rest from the execution before
(``watch_stream``). The offset itself always carries."""


class RaisedError(BaseModel):
    """The durable error a position raised to the agent, raised again on replay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str
    details: dict[str, Any]


class CarriedState(BaseModel):
    """The run so far, as a new execution replays it."""

    model_config = ConfigDict(extra="forbid")

    steps: list[StepRecord] = Field(default_factory=list)
    """Every position the run passed, by index."""
    arrivals: list[int] = Field(default_factory=list)
    """Outcomes that reached the agent from Temporal, in the order they arrived:
    position ``p`` for its end, ``-(p + 1)`` for the start of the child run at ``p``.
    A replay hands them back in this order, so parallel branches interleave as before."""
    raised: dict[int, RaisedError] = Field(default_factory=dict)
    """The durable errors raised at failed positions."""
    events: dict[str, Any] = Field(default_factory=dict)
    """Event payloads received or emitted, by key (first emit wins)."""
    usage: dict[str, float | None] = Field(default_factory=dict)
    """The run's model-call totals so far."""
    patches: dict[str, bool] = Field(default_factory=dict)
    """The answer ``ctx.patched`` gave for each change id the run asked about."""


class RunCarry(BaseModel):
    """The second argument of an agent workflow that continued as new."""

    model_config = ConfigDict(extra="forbid")

    execution: int = Field(ge=2)
    """This execution's number in the run's chain: 2 for the first one continued."""
    state: str
    """``CarriedState`` packed by ``pack``."""
    stream: WorkflowStreamState | None = None
    """The live stream's offset and its latest entries, so watchers read on."""


def pack(state: CarriedState) -> str:
    """``state`` as compressed JSON in base64; deterministic, as workflow code must be."""
    return base64.b64encode(zlib.compress(state.model_dump_json().encode(), 6)).decode("ascii")


def unpack(text: str) -> CarriedState:
    """The state ``pack`` made."""
    return CarriedState.model_validate_json(zlib.decompress(base64.b64decode(text)))


def live_tail(state: WorkflowStreamState, *, limit: int = LIVE_TAIL_BYTES) -> WorkflowStreamState:
    """``state`` with only its latest entries, up to ``limit`` bytes, at their offsets."""
    log = state.log
    start, size = len(log), 0
    while start > 0 and size + len(log[start - 1].data) <= limit:
        start -= 1
        size += len(log[start].data)
    return WorkflowStreamState(
        log=log[start:], base_offset=state.base_offset + start, publishers=state.publishers
    )
