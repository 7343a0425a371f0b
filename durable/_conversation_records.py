"""The records of a conversation: turns, results, halts, the run's input and its events.

Everything here crosses a boundary (a step's result, a child run's input, a
live entry), so it is pydantic and holds names, text and numbers, never code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from ._live import LiveEvent

__all__ = [
    "ABORT_EVENT",
    "CONVERSATION_AGENT",
    "DEFAULT_MAX_DEPTH",
    "TURN_STEP",
    "BreakerState",
    "ConversationEvent",
    "ConversationEvents",
    "ConversationResult",
    "ConversationRun",
    "ConversationState",
    "ConversationTurn",
    "HaltReason",
    "TurnUsage",
    "known_sum",
]

DEFAULT_MAX_DEPTH = 4
"""Nested conversations (and forwarded hops) deeper than this are refused."""

CONVERSATION_AGENT = "durable.conversation"
"""The agent that runs one conversation as a child run (the workflow type on Temporal)."""
ABORT_EVENT = "abort"
"""The event that halts a conversation run before its next turn; ``abort_on`` forwards it."""
TURN_STEP = "conversation.turn"
"""The step of one model turn (``activities/conversation.py``); its activity type on Temporal."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TurnUsage(_Frozen):
    """A turn's tokens and cost; ``None`` where the model server reported no usage."""

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cost: float | None = 0.0
    latency_ms: float = 0.0
    model: str | None = None


_Number = TypeVar("_Number", int, float)


def known_sum(values: Sequence[_Number | None]) -> _Number | None:
    """The sum, or ``None`` if any value is unknown: unknown is never counted as 0."""
    known = [value for value in values if value is not None]
    return sum(known) if len(known) == len(values) else None


class ConversationTurn(_Frozen):
    index: int
    speaker: str
    turn_id: str
    text: str
    usage: TurnUsage = TurnUsage()
    attempts: int = 1
    started_at: datetime
    ended_at: datetime


class HaltReason(_Frozen):
    """Why a conversation stopped; ``kind`` says which fields are set."""

    kind: Literal["max_turns", "max_credits", "predicate", "abort", "participant_error"]
    turns: int | None = None
    spent_cents: float | None = None
    cap_cents: float | None = None
    reason: str | None = None
    participant: str | None = None
    message: str | None = None


class ConversationResult(_Frozen):
    run_id: str
    conversation: str
    transcript: list[ConversationTurn]
    turns: int
    spent_credits_cents: float
    halted: HaltReason
    usage: TurnUsage
    """The conversation's totals: tokens and cost of every turn (``latency_ms`` summed)."""
    duration_ms: float
    started_at: datetime
    ended_at: datetime


class BreakerState(BaseModel):
    failures: int = 0
    opened_at: datetime | None = None


class ConversationState(BaseModel):
    """What a conversation carries into its next execution when it continues as new."""

    transcript: list[ConversationTurn]
    started_at: datetime
    transcript_ref: str | None
    """The stored transcript (``adapters/blobs.py``), up to the turns in ``pending``."""
    pending: list[ConversationTurn] = []
    """Committed turns not in ``transcript_ref`` yet (nested conversations' turns)."""
    breakers: dict[str, BreakerState]


class ConversationRun(BaseModel):
    """The input of a conversation's child run: names and references, never secrets.

    ``headers`` are the inbound headers the conversation propagates to its
    participants; they are recorded with the run, so they must never carry a
    secret (``define_conversation`` refuses authorization and cookies: the
    user's authorization is forwarded from the worker's settings instead).
    """

    model_config = ConfigDict(extra="forbid")

    conversation: str
    seed: str
    depth: int = 1
    """Hops of the next participant call: 1 for a conversation started by a caller."""
    parent_turn: str | None = None
    root_run_id: str | None = None
    """The top-level conversation's run id, stamped as the run id on every call of a
    nested conversation, as the reference propagates it; ``None`` at the top."""
    aborted: bool = False
    """Set when the abort event had arrived before this execution started."""
    headers: dict[str, str] = {}
    state: ConversationState | None = None


class ConversationEvent(_Frozen):
    """One event of a conversation, as the conversation protocol names them.

    They reach watchers as live entries of kind ``conversation`` (the event in
    ``detail``); text deltas reach them as ``token`` entries whose ``turn`` is the
    turn's index, deduplicated across attempts like any model call's tokens.
    ``ConversationEvents`` reads a stream back as these typed events, text
    deltas (``turn_text_delta``) included.
    """

    type: Literal[
        "conversation_start",
        "conversation_resumed",
        "turn_start",
        "turn_text_delta",
        "turn_retry",
        "turn_end",
        "conversation_end",
    ]
    run_id: str
    timestamp: datetime | None = None
    participants: list[str] | None = None
    seed: str | None = None
    index: int | None = None
    speaker: str | None = None
    turn_id: str | None = None
    attempt: int | None = None
    text: str | None = None
    reason: str | None = None
    transcript: list[ConversationTurn] | None = None
    turn: ConversationTurn | None = None
    result: ConversationResult | None = None

    def entry(self) -> LiveEvent:
        """This event as a live entry of the conversation's stream."""
        detail = self.model_dump(mode="json", exclude_none=True)
        return LiveEvent(kind="conversation", turn=self.index, detail=detail)


class ConversationEvents:
    """Reads a conversation run's live entries as typed ``ConversationEvent``s.

    Token entries become ``turn_text_delta`` events, named after the speaker and
    turn id of the ``turn_start`` seen before them; every event's timestamp is
    its entry's time. Entries of other kinds (a step starting) yield nothing.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._starts: dict[int, ConversationEvent] = {}

    def read(self, entry: LiveEvent) -> ConversationEvent | None:
        if entry.kind == "conversation" and entry.detail is not None:
            event = ConversationEvent.model_validate(entry.detail)
            if event.timestamp is None and entry.at is not None:
                event = event.model_copy(update={"timestamp": entry.at})
            if event.type == "turn_start" and event.index is not None:
                self._starts[event.index] = event
            return event
        if entry.kind == "token" and entry.turn is not None and entry.text:
            start = self._starts.get(entry.turn)
            return ConversationEvent(
                type="turn_text_delta",
                run_id=self.run_id,
                timestamp=entry.at,
                index=entry.turn,
                speaker=None if start is None else start.speaker,
                turn_id=None if start is None else start.turn_id,
                text=entry.text,
            )
        return None
