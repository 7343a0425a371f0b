"""Conversation turns: one participant's model call, in-process or as an activity.

``conversation.speak`` makes the call: the participant's model from the
worker's settings, the correlation headers, and the user's authorization only
when the participant forwards it (``DURABLE_FORWARDED_AUTHORIZATION``, read
here, so it never enters a run's input or history). On Temporal each turn is
the ``conversation.turn`` activity, which receives the transcript as a blob
reference and stores the transcript with its own turn added, so a run's
history grows by one turn's text per turn.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm import call_model
from adapters.blobs import default_blob_store
from adapters.temporal import ActivityTokens
from durable import DurableError, live_tokens, retry_hints, step
from durable.conversation import (
    FORWARD_HEADERS,
    SPEAK_STEP,
    TURN_ACTIVITY,
    ConversationEvent,
    ConversationTurn,
    SpeakRequest,
    TurnUsage,
    conversation_definition,
    forward_headers,
    turn_messages,
)

__all__ = [
    "FORWARDED_AUTHORIZATION_ENV",
    "TurnOutcome",
    "TurnRequest",
    "conversation_turn",
    "speak",
]

FORWARDED_AUTHORIZATION_ENV = "DURABLE_FORWARDED_AUTHORIZATION"


@step(name=SPEAK_STEP, timeout=timedelta(seconds=120))
async def speak(request: SpeakRequest) -> tuple[str, TurnUsage]:
    headers = dict(request.headers)
    forwarded = os.environ.get(FORWARDED_AUTHORIZATION_ENV)
    if request.auth_source == "forward-user" and forwarded:
        headers[FORWARD_HEADERS["authorization"]] = forwarded
    answer = await call_model(request.model, request.messages, headers=headers)
    usage = answer.usage
    return answer.text, TurnUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=usage.cost,
        latency_ms=usage.latency_s * 1000,
        model=usage.model,
    )


class TurnRequest(BaseModel):
    """One turn on Temporal: everything by name or reference, so it stays small."""

    conversation: str
    run_id: str
    speaker: str
    turn_id: str
    seed: str
    transcript_ref: str | None
    """The turns so far (``None`` before the first), in the blob store."""
    pending: list[ConversationTurn] = []
    """Turns committed since ``transcript_ref`` was stored (nested conversations' turns)."""
    depth: int
    parent_turn: str | None = None


class TurnOutcome(BaseModel):
    text: str
    usage: TurnUsage
    attempts: int
    transcript_ref: str
    """The transcript with this turn added."""


def store_transcript(turns: list[ConversationTurn]) -> str:
    data = json.dumps([t.model_dump(mode="json") for t in turns], separators=(",", ":"))
    return default_blob_store().put(data.encode())


@activity.defn(name=TURN_ACTIVITY)
async def conversation_turn(request: TurnRequest) -> TurnOutcome:
    info = activity.info()
    try:
        conversation = conversation_definition(request.conversation)
        blobs = default_blob_store()
        seed = request.seed
        turns: list[ConversationTurn] = []
        if request.transcript_ref is not None:
            stored = json.loads(blobs.get(request.transcript_ref))
            turns = [ConversationTurn.model_validate(t) for t in stored]
        turns += request.pending
        speaker = conversation.participant(request.speaker)
        assert speaker.model is not None, "nested conversations run as child workflows"
        headers = forward_headers(
            depth=request.depth, run_id=request.run_id, turn=request.turn_id,
            speaker=speaker.name, parent_turn=request.parent_turn,
        )  # fmt: skip
        messages = turn_messages(conversation, speaker, seed, turns)
        index = len(turns)

        def retrying(attempt: int) -> dict[str, Any]:
            event = ConversationEvent(
                type="turn_retry", run_id=request.run_id, index=index, speaker=speaker.name,
                turn_id=request.turn_id, attempt=attempt, timestamp=datetime.now(UTC),
            )  # fmt: skip
            return event.model_dump(mode="json", exclude_none=True)

        intent = f"turn {index}: {speaker.name}"
        async with ActivityTokens(index, intent, turn=index, on_retry=retrying) as deltas:
            with live_tokens(deltas):
                request_ = SpeakRequest(
                    model=speaker.model,
                    messages=messages,
                    headers=headers,
                    auth_source=speaker.auth_source,
                )
                text, usage = await speak(request_)
    except ApplicationError:
        raise
    except Exception as exc:
        retryable, retry_after = retry_hints(exc)
        message = exc.message if isinstance(exc, DurableError) else str(exc) or repr(exc)
        raise ApplicationError(
            message,
            {"attempt": info.attempt},
            type=type(exc).__name__,
            non_retryable=not retryable or isinstance(exc, DurableError),
            next_retry_delay=None if retry_after is None else timedelta(seconds=retry_after),
        ) from exc
    now = activity.info().current_attempt_scheduled_time
    turn = ConversationTurn(
        index=len(turns), speaker=speaker.name, turn_id=request.turn_id, text=text,
        usage=usage, attempts=info.attempt, started_at=now, ended_at=now,
    )  # fmt: skip
    ref = store_transcript([*turns, turn])
    return TurnOutcome(text=text, usage=usage, attempts=info.attempt, transcript_ref=ref)
