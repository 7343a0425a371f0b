"""The chat-turn route: ``POST /v1/chat/{session}/turns``, the turn's NDJSON stream (seed 000)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from durable import MAX_NAME_LENGTH
from durable.chat import NDJSON, ChatTurnEngine, ChatTurnIdentity

from ._common import problems

__all__ = ["ChatEngine", "ChatTurnRequest", "router"]

router = APIRouter(prefix="/v1/chat", tags=["chat"])


class ChatTurnRequest(BaseModel):
    """One turn of a chat session: who asks, which turn, and the conversation so far."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """The workspace, or the user for products whose sessions belong to a user."""
    turn_index: int = Field(ge=0)
    """0 for a session's first turn, then one more per turn; the turn's run is
    ``chat:<session>:<turn>``, so asking the same turn again replays its answer."""
    user_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    messages: list[dict[str, Any]] = Field(min_length=1)
    """The conversation so far, ending with the user's message (``role``, ``content``)."""
    model: str = Field(default="default", min_length=1, max_length=MAX_NAME_LENGTH)
    """A model of the workers' ``DURABLE_MODELS``, or ``default``."""
    options: dict[str, Any] | None = None
    """Options of the model call (``temperature``...)."""


ChatEngine = ChatTurnEngine[ChatTurnRequest]

_LINES = {
    "description": "The turn's NDJSON stream, one ``ChatStreamEvent`` a line: "
    "``session.run.started``, the answer's ``message.part.updated`` deltas (or one "
    "``result`` when a completed turn replays), then ``session.run.completed``; a failure "
    "ends with ``error`` and ``session.run.failed`` instead (a turn in flight elsewhere: "
    "``lease_held``). Always 200: the stream carries the outcome.",
    "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/ChatStreamEvent"}}},
}


@router.post(
    "/{session}/turns",
    response_class=StreamingResponse,
    responses={200: _LINES, **problems()},
    summary="Run a chat turn, streamed",
)
async def chat_turn(
    session: Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH)],
    body: ChatTurnRequest,
    request: Request,
) -> StreamingResponse:
    engine: ChatEngine = request.app.state.chat
    identity = ChatTurnIdentity(
        tenant_id=body.tenant_id,
        session_id=session,
        turn_index=body.turn_index,
        user_id=body.user_id,
    )
    return StreamingResponse(
        engine.run_turn(identity, body),
        media_type=NDJSON,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
