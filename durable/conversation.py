"""Multi-agent conversations: participants taking turns under a policy.

A ``Conversation`` is defined once, in code, with ``define_conversation`` and
registered by name, like an agent, so every worker and every replay finds the
same participants, turn order and halt predicate. Any agent runs one with
``await ctx.conversation(conversation, seed=...)``: a child workflow on
Temporal, a journaled loop inside the run locally. Both drive the same
``ConversationDriver``, which holds every rule: who speaks next, when to halt,
how a participant's circuit breaker counts failures. This module does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._canonical import canonical_hash
from ._errors import DurableRegistrationError
from ._names import check_name
from ._retry import RetryPolicy

__all__ = [
    "ABORT_EVENT",
    "CONVERSATION_AGENT",
    "DEFAULT_MAX_DEPTH",
    "BreakerState",
    "ConversationRun",
    "ConversationState",
    "FORWARD_HEADERS",
    "SPEAK_STEP",
    "TURN_ACTIVITY",
    "AuthSource",
    "Breaker",
    "CallPolicy",
    "Conversation",
    "ConversationDriver",
    "ConversationEvent",
    "ConversationPolicy",
    "ConversationResult",
    "ConversationTurn",
    "DriveState",
    "HaltReason",
    "Participant",
    "SpeakRequest",
    "TurnUsage",
    "conversation_call",
    "conversation_definition",
    "conversation_run_id",
    "define_conversation",
    "forward_headers",
    "nested_failure",
    "nested_text",
    "slugify_speaker",
    "turn_id",
    "turn_messages",
]

DEFAULT_MAX_DEPTH = 4
"""Nested conversations deeper than this are refused."""

CONVERSATION_AGENT = "durable.conversation"
"""The agent that runs one conversation as a child run (the workflow type on Temporal)."""
ABORT_EVENT = "abort"
"""The event that halts a conversation run before its next turn; ``abort_on`` forwards it."""

SPEAK_STEP = "conversation.speak"
"""The step that makes one participant's model call (``activities/conversation.py``)."""
TURN_ACTIVITY = "conversation.turn"
"""The activity of one turn on Temporal: the transcript travels by blob reference."""

FORWARD_HEADERS = {
    "authorization": "x-durable-forwarded-authorization",
    "depth": "x-durable-forwarded-depth",
    "run_id": "x-durable-run-id",
    "turn_id": "x-durable-turn-id",
    "parent_turn_id": "x-durable-parent-turn-id",
    "speaker": "x-durable-speaker",
}
"""Headers stamped on every participant's model call, so gateways can correlate and bill."""

AuthSource = Literal["forward-user", "agent-owned"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallPolicy(_Frozen):
    """How one turn calls its participant: a deadline per attempt, retries, a breaker.

    ``failures_to_open`` consecutive failed attempts of a participant open its
    circuit; while open (for ``cooldown``) its turns fail at once. Two retries by
    default: an attempt cut short by a lost worker must not end the conversation.
    """

    deadline: timedelta = timedelta(seconds=120)
    max_retries: int = Field(default=2, ge=0)
    backoff: timedelta = timedelta(milliseconds=250)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    failures_to_open: int | None = Field(default=None, ge=1)
    cooldown: timedelta = timedelta(seconds=30)

    def retry_policy(self, attempts: int) -> RetryPolicy:
        """The retry policy of a turn allowed ``attempts`` attempts."""
        return RetryPolicy(
            initial_interval=self.backoff,
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=max(self.backoff * 100, self.backoff),
            maximum_attempts=attempts,
        )


class Participant(_Frozen):
    """One speaker: a model named in the worker's settings, or another conversation."""

    name: str
    label: str | None = None
    model: str | None = None
    conversation: str | None = None
    """A registered conversation that speaks as this participant (nesting)."""
    system: str | None = None
    """This participant's instructions, sent as its system message."""
    call_policy: CallPolicy | None = None
    auth_source: AuthSource = "forward-user"
    """``forward-user`` forwards the worker's configured user authorization with
    each call; ``agent-owned`` never does, and the model's own key pays."""

    @model_validator(mode="after")
    def _one_backend(self) -> Participant:
        check_name(self.name, what="participant name")
        if (self.model is None) == (self.conversation is None):
            raise ValueError(
                f"participant {self.name!r} needs exactly one of model= (a model in the "
                "worker's settings) or conversation= (a registered conversation)"
            )
        return self

    @property
    def shown_as(self) -> str:
        return self.label or self.name


class TurnUsage(_Frozen):
    """A turn's tokens and cost; ``None`` where the model server reported no usage."""

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cost: float | None = 0.0
    latency_ms: float = 0.0
    model: str | None = None


_Number = TypeVar("_Number", int, float)


def _known_sum(values: Sequence[_Number | None]) -> _Number | None:
    """The sum, or ``None`` if any value is unknown: unknown is never counted as 0."""
    known = [value for value in values if value is not None]
    return sum(known) if len(known) == len(values) else None


class SpeakRequest(_Frozen):
    """One participant's model call: names, prompt and correlation headers, never keys."""

    model: str
    messages: list[dict[str, Any]]
    headers: dict[str, str] = {}
    auth_source: AuthSource = "forward-user"


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
    pending: list[ConversationTurn] = []
    breakers: dict[str, BreakerState]


class ConversationRun(BaseModel):
    """The input of a conversation's child run."""

    model_config = ConfigDict(extra="forbid")

    conversation: str
    seed: str
    depth: int = 1
    parent_turn: str | None = None
    aborted: bool = False
    """Set when the abort event had arrived before this execution started."""
    state: ConversationState | None = None


class ConversationEvent(_Frozen):
    """One event of a conversation, as the conversation protocol names them.

    They reach watchers as live entries of kind ``conversation`` (the event in
    ``detail``); text deltas reach them as ``token`` entries whose ``turn`` is the
    turn's index, deduplicated across attempts like any model call's tokens.
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
    turn: ConversationTurn | None = None
    result: ConversationResult | None = None


@dataclass(frozen=True)
class DriveState:
    """What turn-order functions and halt predicates see."""

    transcript: Sequence[ConversationTurn]
    turn_index: int
    spent_credits_cents: float


TurnOrder = Literal["alternate", "round_robin"] | Callable[[DriveState], int]
HaltPredicate = Callable[[DriveState], bool | str | None]
"""Called after every turn; truthy halts (a string is the reason). Must be deterministic."""


@dataclass(frozen=True)
class ConversationPolicy:
    max_turns: int
    max_credits_cents: float | None = None
    turn_order: TurnOrder | None = None
    """``alternate`` (the default for two), ``round_robin`` (for more), or a
    deterministic function of the state returning the next speaker's index."""
    halt_on: HaltPredicate | None = None
    default_call_policy: CallPolicy = field(default_factory=CallPolicy)


@dataclass(frozen=True)
class Conversation:
    name: str
    participants: tuple[Participant, ...]
    policy: ConversationPolicy
    description: str = ""

    def participant(self, name: str) -> Participant:
        for participant in self.participants:
            if participant.name == name:
                return participant
        raise KeyError(name)

    def call_policy(self, participant: Participant) -> CallPolicy:
        return participant.call_policy or self.policy.default_call_policy

    @property
    def summary(self) -> str:
        names = ", ".join(p.shown_as for p in self.participants)
        return f"conversation {self.name}: {names}"


_conversations: dict[str, Conversation] = {}


def define_conversation(
    name: str,
    *,
    participants: Sequence[Participant | Mapping[str, Any]],
    policy: ConversationPolicy,
    description: str = "",
) -> Conversation:
    """Define and register a conversation, refusing a misconfiguration at once.

    Participant names must be unique, ``alternate`` needs exactly two
    participants, and ``max_turns`` must be positive. Call it at import time in
    the module that defines the agents, so every worker registers it.
    """
    check_name(name, what="conversation name")
    people = tuple(p if isinstance(p, Participant) else Participant(**p) for p in participants)
    if not people:
        raise DurableRegistrationError(f"conversation {name!r} needs at least one participant")
    names = [p.name for p in people]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DurableRegistrationError(
            f"conversation {name!r} names participant(s) {duplicates} more than once; "
            "each participant needs its own name"
        )
    if policy.max_turns <= 0:
        raise DurableRegistrationError(
            f"conversation {name!r} has max_turns={policy.max_turns}; it must be at least 1"
        )
    if policy.turn_order == "alternate" and len(people) != 2:
        raise DurableRegistrationError(
            f"conversation {name!r} alternates between {len(people)} participants; "
            "alternate needs exactly two (use round_robin for more)"
        )
    if isinstance(policy.turn_order, str) and policy.turn_order not in ("alternate", "round_robin"):
        raise DurableRegistrationError(
            f"conversation {name!r} has turn_order={policy.turn_order!r}; use 'alternate', "
            "'round_robin' or a function of the state"
        )
    if policy.max_credits_cents is not None and policy.max_credits_cents < 0:
        raise DurableRegistrationError(f"conversation {name!r} has a negative max_credits_cents")
    conversation = Conversation(name, people, policy, description)
    existing = _conversations.get(name)
    if existing is not None and existing.participants != people:
        raise DurableRegistrationError(
            f"conversation name {name!r} is already defined with other participants; "
            "pick another name"
        )
    _conversations[name] = conversation
    return conversation


def conversation_definition(name: str) -> Conversation:
    try:
        return _conversations[name]
    except KeyError:
        known = ", ".join(sorted(_conversations)) or "none"
        raise DurableRegistrationError(
            f"no conversation named {name!r} is defined in this worker (defined: {known}); "
            "import the module that calls define_conversation in DURABLE_AGENT_MODULES"
        ) from None


_SLUG = re.compile(r"[^A-Za-z0-9]+")


def conversation_call(
    conversation: Conversation, seed: str, abort_on: str | None
) -> tuple[str, str]:
    """The step intent and input fingerprint of ``ctx.conversation``; checks ``abort_on``."""
    if abort_on is not None:
        check_name(abort_on, what="abort_on event key")
    fingerprint = canonical_hash({"conversation": conversation.name, "seed": seed})
    return f"conversation:{conversation.name}", fingerprint


def conversation_run_id(run_id: str, position: int) -> str:
    """The id of the conversation a run starts at step ``position``."""
    return f"{run_id}/conversation-{position}"


def slugify_speaker(speaker: str) -> str:
    """ASCII letters, digits and dashes: safe in logs and HTTP headers."""
    return _SLUG.sub("-", speaker).strip("-").lower() or "speaker"


def turn_id(run_id: str, index: int, speaker: str) -> str:
    """``<run>.t<index>.<speaker>``: stable across retries of the same logical turn."""
    return f"{run_id}.t{index}.{slugify_speaker(speaker)}"


def forward_headers(
    *, depth: int, run_id: str, turn: str, speaker: str, parent_turn: str | None = None
) -> dict[str, str]:
    """The correlation headers of one outbound participant call (no secrets)."""
    headers = {
        FORWARD_HEADERS["depth"]: str(depth),
        FORWARD_HEADERS["run_id"]: run_id,
        FORWARD_HEADERS["turn_id"]: turn,
        FORWARD_HEADERS["speaker"]: speaker,
    }
    if parent_turn:
        headers[FORWARD_HEADERS["parent_turn_id"]] = parent_turn
    return headers


def turn_messages(
    conversation: Conversation,
    speaker: Participant,
    seed: str,
    transcript: Sequence[ConversationTurn],
) -> list[dict[str, Any]]:
    """The prompt of ``speaker``'s next turn: its own turns as the assistant's."""
    messages: list[dict[str, Any]] = []
    if speaker.system:
        messages.append({"role": "system", "content": speaker.system})
    messages.append({"role": "user", "content": seed})
    for turn in transcript:
        if turn.speaker == speaker.name:
            messages.append({"role": "assistant", "content": turn.text})
        else:
            shown = conversation.participant(turn.speaker).shown_as
            messages.append({"role": "user", "content": f"[{shown}] {turn.text}"})
    return messages


class Breaker:
    """A participant's circuit breaker: consecutive failed attempts, and when it opened."""

    def __init__(self, policy: CallPolicy, failures: int = 0, opened_at: datetime | None = None):
        self.policy = policy
        self.failures = failures
        self.opened_at = opened_at

    def open_until(self, now: datetime) -> datetime | None:
        """When the open circuit closes again; ``None`` if calls may go out now."""
        if self.opened_at is None:
            return None
        until = self.opened_at + self.policy.cooldown
        if now >= until:
            self.opened_at, self.failures = None, 0
            return None
        return until

    def attempts_allowed(self) -> int:
        """Attempts this turn may make: its retries, cut short where the circuit would open."""
        attempts = 1 + self.policy.max_retries
        if self.policy.failures_to_open is not None:
            attempts = min(attempts, max(self.policy.failures_to_open - self.failures, 1))
        return attempts

    def succeeded(self) -> None:
        self.failures, self.opened_at = 0, None

    def failed(self, attempts: int, now: datetime) -> None:
        self.failures += attempts
        opens = self.policy.failures_to_open
        if opens is not None and self.failures >= opens:
            self.opened_at = now


class ConversationDriver:
    """The rules of one conversation run, shared by every substrate.

    A substrate asks ``next_speaker`` (``None`` once halted), runs the turn, and
    reports it with ``commit`` or ``fail``; ``result`` ends the run.
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        run_id: str,
        seed: str,
        transcript: Sequence[ConversationTurn] = (),
        started_at: datetime,
    ) -> None:
        self.conversation = conversation
        self.run_id = run_id
        self.seed = seed
        self.transcript: list[ConversationTurn] = list(transcript)
        self.started_at = started_at
        self.halted: HaltReason | None = None
        self.breakers = {
            p.name: Breaker(conversation.call_policy(p)) for p in conversation.participants
        }
        self._check_limits()

    @property
    def spent_cents(self) -> float:
        # A turn of unknown cost adds nothing it could prove; the totals say it is unknown.
        return sum(t.usage.cost or 0.0 for t in self.transcript) * 100

    def state(self) -> DriveState:
        return DriveState(tuple(self.transcript), len(self.transcript), self.spent_cents)

    def next_speaker(self) -> Participant | None:
        if self.halted is not None:
            return None
        people = self.conversation.participants
        order = self.conversation.policy.turn_order
        index = len(self.transcript)
        if callable(order):
            chosen = order(self.state())
            if not isinstance(chosen, int) or not 0 <= chosen < len(people):
                raise DurableRegistrationError(
                    f"the turn order of conversation {self.conversation.name!r} returned "
                    f"{chosen!r}; it must return a participant index from 0 to {len(people) - 1}"
                )
            return people[chosen]
        return people[index % len(people)]

    def turn_id(self, speaker: Participant) -> str:
        return turn_id(self.run_id, len(self.transcript), speaker.name)

    def commit(self, turn: ConversationTurn) -> None:
        self.transcript.append(turn)
        self.breakers[turn.speaker].succeeded()
        predicate = self.conversation.policy.halt_on
        if predicate is not None:
            verdict = predicate(self.state())
            if verdict:
                reason = verdict if isinstance(verdict, str) else "halt_on returned true"
                self.halted = HaltReason(kind="predicate", reason=reason)
                return
        self._check_limits()

    def may_call(self, speaker: Participant, now: datetime) -> bool:
        """Whether ``speaker``'s circuit lets a call out now; halts the run if not."""
        until = self.breakers[speaker.name].open_until(now)
        if until is None:
            return True
        self.fail(speaker, f"the circuit of {speaker.name!r} is open until {until.isoformat()}")
        return False

    def turn_failed(self, speaker: Participant, attempts: int, message: str, now: datetime) -> None:
        """A turn failed after ``attempts`` attempts: count them, and halt the run."""
        breaker = self.breakers[speaker.name]
        breaker.failed(attempts, now)
        opened = " (its circuit is now open)" if breaker.opened_at is not None else ""
        self.fail(speaker, f"{message}; after {attempts} attempt(s){opened}")

    def nesting_refused(self, speaker: Participant, depth: int) -> str | None:
        """Why ``speaker``, a conversation, may not run at ``depth``; ``None`` if it may."""
        if depth <= DEFAULT_MAX_DEPTH:
            return None
        return (
            f"participant {speaker.name!r} is conversation {speaker.conversation!r} at "
            f"nesting depth {depth}, beyond the maximum of {DEFAULT_MAX_DEPTH}; flatten the nesting"
        )

    def nested_seed(self) -> str:
        """What a nested conversation is asked: the latest word of this one."""
        return self.transcript[-1].text if self.transcript else self.seed

    def fail(self, speaker: Participant, message: str) -> None:
        self.halted = HaltReason(
            kind="participant_error", participant=speaker.name, message=message
        )

    def abort(self) -> None:
        self.halted = HaltReason(kind="abort")

    def _check_limits(self) -> None:
        policy = self.conversation.policy
        if len(self.transcript) >= policy.max_turns:
            self.halted = HaltReason(kind="max_turns", turns=len(self.transcript))
        elif policy.max_credits_cents is not None and self.spent_cents >= policy.max_credits_cents:
            self.halted = HaltReason(
                kind="max_credits", spent_cents=self.spent_cents, cap_cents=policy.max_credits_cents
            )

    def result(self, ended_at: datetime) -> ConversationResult:
        assert self.halted is not None, "result() before the conversation halted"
        usages = [t.usage for t in self.transcript]
        totals = TurnUsage(
            input_tokens=_known_sum([u.input_tokens for u in usages]),
            output_tokens=_known_sum([u.output_tokens for u in usages]),
            cost=_known_sum([u.cost for u in usages]),
            latency_ms=sum(t.usage.latency_ms for t in self.transcript),
        )
        return ConversationResult(
            run_id=self.run_id,
            conversation=self.conversation.name,
            transcript=list(self.transcript),
            turns=len(self.transcript),
            spent_credits_cents=self.spent_cents,
            halted=self.halted,
            usage=totals,
            duration_ms=(ended_at - self.started_at).total_seconds() * 1000,
            started_at=self.started_at,
            ended_at=ended_at,
        )


def nested_text(result: ConversationResult) -> str:
    """A nested conversation's answer as one turn: each inner turn, tagged with its speaker."""
    return "\n".join(f"[{turn.speaker}] {turn.text}" for turn in result.transcript)


def nested_failure(speaker: Participant, result: ConversationResult) -> str | None:
    """Why a nested conversation's result fails the outer turn; ``None`` if it does not."""
    if result.halted.kind != "participant_error":
        return None
    return f"conversation {speaker.conversation!r} failed: {result.halted.message}"
