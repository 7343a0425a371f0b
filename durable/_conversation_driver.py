"""The rules of one conversation run: who speaks next, when to halt, the breakers.

``ConversationDriver`` is the only loop's state: the conversation agent asks it
for the next speaker and reports every turn. It does no I/O.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ._call_policy import CallPolicy
from ._conversation_definition import (
    Conversation,
    DriveState,
    HaltContext,
    HaltSignal,
    HaltVerdict,
    Participant,
)
from ._conversation_records import (
    DEFAULT_MAX_DEPTH,
    BreakerState,
    ConversationResult,
    ConversationTurn,
    HaltReason,
    TurnUsage,
    known_sum,
)
from ._errors import DurableRegistrationError

__all__ = [
    "Breaker",
    "ConversationDriver",
    "nested_failure",
    "nested_text",
    "slugify_speaker",
    "turn_id",
    "turn_messages",
]

_SLUG = re.compile(r"[^A-Za-z0-9]+")


def slugify_speaker(speaker: str) -> str:
    """ASCII letters, digits and dashes: safe in logs and HTTP headers."""
    return _SLUG.sub("-", speaker).strip("-").lower() or "speaker"


def turn_id(run_id: str, index: int, speaker: str) -> str:
    """``<run>.t<index>.<speaker>``: stable across retries of the same logical turn."""
    return f"{run_id}.t{index}.{slugify_speaker(speaker)}"


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

    @property
    def state(self) -> BreakerState:
        return BreakerState(failures=self.failures, opened_at=self.opened_at)


class ConversationDriver:
    """The rules of one conversation run; the conversation agent is its only loop.

    The loop asks ``next_speaker`` (``None`` once halted), runs the turn, and
    reports it with ``commit`` or ``turn_failed``; ``result`` ends the run.
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        run_id: str,
        seed: str,
        transcript: Sequence[ConversationTurn] = (),
        started_at: datetime,
        breakers: Mapping[str, BreakerState] | None = None,
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
        for name, saved in (breakers or {}).items():
            if name not in self.breakers:
                continue  # a participant the definition no longer has
            self.breakers[name].failures, self.breakers[name].opened_at = (
                saved.failures,
                saved.opened_at,
            )
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

    def forwards_user(self, speaker: Participant) -> bool:
        """Whether ``speaker``'s next call forwards the user's authorization."""
        source = speaker.auth_source
        mode = source(self.state()) if callable(source) else source
        if mode not in ("forward-user", "agent-owned"):
            raise DurableRegistrationError(
                f"the auth_source of participant {speaker.name!r} returned {mode!r}; "
                "it must return 'forward-user' or 'agent-owned'"
            )
        return mode == "forward-user"

    async def commit(self, turn: ConversationTurn) -> None:
        """Add a completed turn, then ask the halt predicate and the limits."""
        self.transcript.append(turn)
        self.breakers[turn.speaker].succeeded()
        predicate = self.conversation.policy.halt_on
        if predicate is not None:
            seen = HaltContext(tuple(self.transcript), len(self.transcript), self.spent_cents, turn)
            verdict = predicate(seen)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict:
                self.halted = HaltReason(kind="predicate", reason=_halt_reason(verdict))
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
            input_tokens=known_sum([u.input_tokens for u in usages]),
            output_tokens=known_sum([u.output_tokens for u in usages]),
            cost=known_sum([u.cost for u in usages]),
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
            duration_ms=(ended_at - self.started_at) / timedelta(milliseconds=1),
            started_at=self.started_at,
            ended_at=ended_at,
        )


def _halt_reason(verdict: HaltVerdict) -> str:
    if isinstance(verdict, HaltSignal):
        return verdict.reason
    if isinstance(verdict, str):
        return verdict
    return "halt_on returned true"


def nested_text(result: ConversationResult) -> str:
    """A nested conversation's answer as one turn: each inner turn, tagged with its speaker."""
    return "\n".join(f"[{turn.speaker}] {turn.text}" for turn in result.transcript)


def nested_failure(speaker: Participant, result: ConversationResult) -> str | None:
    """Why a nested conversation's result fails the outer turn; ``None`` if it does not."""
    if result.halted.kind != "participant_error":
        return None
    return f"conversation {speaker.conversation!r} failed: {result.halted.message}"
