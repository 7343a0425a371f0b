"""The turn step: one participant's model call, judged by its call policy.

``conversation.turn`` is an ordinary ``@step``: an activity on Temporal, an
in-process call locally, with the deadline and retry policy the conversation
gives it. It receives the transcript as a blob reference plus the turns
committed since, and returns the transcript with its own turn added, so a
run's history grows by one turn's text per turn.

Each failure is judged here and the substrate retries: a ``DurableError`` is
final, the call policy's ``is_retryable`` decides the rest, and the delay is
the server's ``Retry-After`` or the policy's backoff (with jitter). The user's
authorization is read from the worker's ``DURABLE_FORWARDED_AUTHORIZATION``
and sent only when the participant forwards it, so it never enters a run's
input or history.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from durable import DurableError, RetryPolicy, current_attempt, retry_hints, step
from durable._live import publish_step_entry, retry_entry, tag_turn
from durable.conversation import (
    TURN_STEP,
    CallPolicy,
    ConversationEvent,
    ConversationTurn,
    TurnUsage,
    conversation_definition,
    forward_headers,
    turn_messages,
)
from durable_agents.activities.llm import call_model
from durable_agents.adapters.blobs import default_blob_store
from durable_agents.adapters.settings import ForwardingSettings, current

__all__ = [
    "FORWARDED_AUTHORIZATION_ENV",
    "TurnOutcome",
    "TurnRequest",
    "conversation_turn",
    "load_transcript",
    "store_transcript",
]

FORWARDED_AUTHORIZATION_ENV = "DURABLE_FORWARDED_AUTHORIZATION"


class TurnRequest(BaseModel):
    """One turn: everything by name or reference, so it stays small in history."""

    conversation: str
    run_id: str
    speaker: str
    index: int
    turn_id: str
    seed: str
    transcript_ref: str | None
    """The turns so far (``None`` before the first), in the blob store."""
    pending: list[ConversationTurn] = []
    """Turns committed since ``transcript_ref`` was stored (nested conversations' turns)."""
    depth: int
    parent_turn: str | None = None
    root_run_id: str | None = None
    """The top-level conversation's run id, when this one is nested."""
    forward_user: bool
    """Whether this call forwards the user's authorization (the participant's auth_source)."""
    headers: dict[str, str] = {}
    """The inbound headers the conversation propagates (never a secret)."""
    attempts: int
    """Attempts this turn may make: the last one announces no retry."""


class TurnOutcome(BaseModel):
    """The answer; ``usage`` at the top, where a run's usage totals find a model call's."""

    text: str
    usage: TurnUsage
    attempts: int
    started_at: datetime
    """When the attempt that answered began."""
    ended_at: datetime
    transcript_ref: str
    """The transcript with this turn added."""

    def turn(self, request: TurnRequest) -> ConversationTurn:
        """The committed turn this outcome answers ``request`` with."""
        return ConversationTurn(
            index=request.index, speaker=request.speaker, turn_id=request.turn_id,
            text=self.text, usage=self.usage, attempts=self.attempts,
            started_at=self.started_at, ended_at=self.ended_at,
        )  # fmt: skip


def store_transcript(turns: list[ConversationTurn]) -> str:
    data = json.dumps([t.model_dump(mode="json") for t in turns], separators=(",", ":"))
    return default_blob_store().put(data.encode())


def load_transcript(ref: str | None) -> list[ConversationTurn]:
    if ref is None:
        return []
    return [ConversationTurn.model_validate(t) for t in json.loads(default_blob_store().get(ref))]


@step(
    name=TURN_STEP,
    timeout=timedelta(seconds=120),
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=250), maximum_attempts=3),
)
async def conversation_turn(request: TurnRequest) -> TurnOutcome:
    tag_turn(request.index)
    attempt = current_attempt()
    began = time.monotonic()
    started = datetime.now(UTC)
    try:
        conversation = conversation_definition(request.conversation)
        speaker = conversation.participant(request.speaker)
        policy = conversation.call_policy(speaker)
        turns = [*load_transcript(request.transcript_ref), *request.pending]
    except DurableError as exc:
        exc.retryable = False  # type: ignore[attr-defined]  # another attempt finds the same
        raise
    assert speaker.model is not None, "a conversation participant runs as a child run"
    headers = {
        **request.headers,
        **forward_headers(
            conversation.policy.forward_headers, depth=request.depth,
            run_id=request.root_run_id or request.run_id,
            turn=request.turn_id, speaker=speaker.name, parent_turn=request.parent_turn,
        ),
    }  # fmt: skip
    forwarded = current(ForwardingSettings).authorization
    if request.forward_user and forwarded is not None:
        headers[conversation.policy.forward_headers.authorization] = forwarded.get_secret_value()
    messages = turn_messages(conversation, speaker, request.seed, turns)
    try:
        answer = await call_model(speaker.model, messages, headers=headers)
    except asyncio.CancelledError:
        if time.monotonic() - began >= policy.deadline.total_seconds():
            reason = f"no answer within the deadline of {policy.deadline.total_seconds():g}s"
            _announce_retry(request, attempt, "DurableStepTimeoutError", reason, None)
        raise
    except Exception as exc:
        _judge(exc, policy, request, attempt)
        raise
    usage = answer.usage
    outcome = TurnOutcome(
        text=answer.text,
        usage=TurnUsage(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=usage.cost,
            latency_ms=usage.latency_s * 1000, model=usage.model,
        ),
        attempts=attempt, started_at=started, ended_at=datetime.now(UTC), transcript_ref="",
    )  # fmt: skip
    turn = outcome.turn(request)
    return outcome.model_copy(update={"transcript_ref": store_transcript([*turns, turn])})


def _judge(error: Exception, policy: CallPolicy, request: TurnRequest, attempt: int) -> None:
    """Mark ``error`` with what the substrate needs to retry it, or not, as the policy says.

    The error keeps its class and message, which the step's record keeps.
    """
    if isinstance(error, DurableError) or not policy.is_retryable(error):
        error.retryable = False  # type: ignore[attr-defined]
        return
    error.retryable = True  # type: ignore[attr-defined]  # the policy, not the class, decides
    asked = retry_hints(error)[1]
    delay = asked if asked is not None else policy.delay_after(attempt)
    error.retry_after = delay  # type: ignore[attr-defined]
    _announce_retry(request, attempt, type(error).__name__, str(error) or repr(error), delay)


def _announce_retry(
    request: TurnRequest, attempt: int, error_type: str, message: str, delay: float | None
) -> None:
    """The seed's ``turn_retry`` event, published when this attempt fails and another follows."""
    if attempt >= request.attempts:
        return
    event = ConversationEvent(
        type="turn_retry", run_id=request.run_id, index=request.index, speaker=request.speaker,
        turn_id=request.turn_id, attempt=attempt + 1,
    )  # fmt: skip
    detail = event.model_dump(mode="json", exclude_none=True)
    entry = retry_entry(
        None, attempt + 1, turn=request.index, detail=detail,
        error_type=error_type, message=message, delay=delay,
    )  # fmt: skip
    publish_step_entry(entry)
