"""``ChatTurnEngine``: a durable chat turn as an NDJSON byte stream that never raises.

The stream every chat client of seed 000 speaks, one JSON object per line:

    {"type":"session.run.started","data":{"sessionId":..,"tenantId":..,"turnIndex":..}}
    ...the turn's events: message.part.updated {delta} as it streams, or one
       result {finalText} when a completed turn replays...
    {"type":"session.run.completed","data":{"sessionId":..,"replayed":false}}

A turn that fails ends with ``error {message, code}`` and ``session.run.failed
{sessionId, message}`` instead, and the stream still closes cleanly. The
product's hooks run once the turn's events have drained, before the completion
line: persisting the assistant message (fresh turns only: a replay was
persisted the first time), post-processing, a transform of what is persisted.
``on_event`` sees every line as it goes out. A hook's error is logged and never
reaches the stream.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ._chat import (
    ChatStreamEvent,
    ChatTurn,
    ChatTurnIdentity,
    ClientTurns,
    DurableTurn,
    TurnProducer,
    TurnRuns,
)
from ._client import DurableClient
from ._errors import DurableError

__all__ = [
    "NDJSON",
    "AssistantMessage",
    "ChatTurnEngine",
    "ChatTurnHooks",
]

NDJSON = "application/x-ndjson"
"""The content type of ``ChatTurnEngine.run_turn``'s stream."""

log = logging.getLogger("durable.chat")

RequestT = TypeVar("RequestT")
Hook = Callable[..., Awaitable[Any] | Any]


class AssistantMessage(BaseModel):
    """What ``persist_assistant_message`` and ``on_turn_complete`` receive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: ChatTurnIdentity
    final_text: str
    """After ``transform_final_text``; the stream itself is never altered."""
    run_id: str


@dataclass(frozen=True, kw_only=True)
class ChatTurnHooks:
    """What the product supplies; every hook may be sync or async, and is optional."""

    persist_assistant_message: Callable[[AssistantMessage], Awaitable[None] | None] | None = None
    """Write the assistant's answer to the product's store: once, after a fresh turn."""
    on_turn_complete: Callable[[AssistantMessage], Awaitable[None] | None] | None = None
    """Post-process a fresh turn after it was persisted (citations, metering...)."""
    on_event: Callable[[ChatStreamEvent], Awaitable[None] | None] | None = None
    """A side channel for every event as it goes out, lifecycle lines included."""
    transform_final_text: Callable[[str], Awaitable[str] | str] | None = None
    """Change what is persisted (redact, say); an error persists the text as it was."""


class ChatTurnEngine(Generic[RequestT]):
    """Runs chat turns as NDJSON streams; one instance serves every request.

    ``runs`` is a ``DurableClient`` (a worker runs each turn: ``LocalClient``,
    ``AgentClient``) or any ``TurnRuns`` (``durable_agents.adapters.chat.StoreTurns``: the turn
    runs in this process on a local store). ``produce`` describes a turn's
    producer from the request (``durable_agents.agents.chat.model_reply``); it does no I/O, and
    the producer it describes runs only on a fresh turn. Without ``produce`` the
    request must be the ``TurnProducer`` itself.
    """

    content_type = NDJSON

    def __init__(
        self,
        runs: DurableClient | TurnRuns,
        *,
        produce: Callable[[ChatTurnIdentity, RequestT], TurnProducer] | None = None,
        hooks: ChatTurnHooks | None = None,
    ) -> None:
        self.runs: TurnRuns = runs if isinstance(runs, TurnRuns) else ClientTurns(runs)
        self.produce = produce
        self.hooks = hooks or ChatTurnHooks()

    def run_turn(self, identity: ChatTurnIdentity, request: RequestT) -> AsyncIterator[bytes]:
        """The turn's NDJSON stream; the turn runs as it is read. Never raises: a
        failure becomes its ``error`` and ``session.run.failed`` lines."""
        return self._lines(identity, request)

    async def _lines(self, identity: ChatTurnIdentity, request: RequestT) -> AsyncIterator[bytes]:
        session = identity.session_id
        yield await self._emit(
            ChatStreamEvent(
                type="session.run.started",
                data={
                    "sessionId": session,
                    "tenantId": identity.tenant_id,
                    "turnIndex": identity.turn_index,
                },
            )
        )
        try:
            turn = DurableTurn(
                self.runs, ChatTurn(identity=identity, produce=self._producer(identity, request))
            )
            # Closed with this stream: a reader that stops early cancels the turn at once.
            async with contextlib.aclosing(turn.stream) as events:
                async for event in events:
                    yield await self._emit(event)
            if not turn.replayed():
                await self._finish(identity, turn)
            done = {"sessionId": session, "replayed": turn.replayed()}
            line = ChatStreamEvent(type="session.run.completed", data=done)
        except Exception as failure:
            message = _message(failure)
            log.warning("chat turn %s failed: %s", identity.run_id, message)
            error: dict[str, Any] = {"message": message}
            if isinstance(failure, DurableError):
                error["code"] = failure.code.value
            yield await self._emit(ChatStreamEvent(type="error", data=error))
            line = ChatStreamEvent(
                type="session.run.failed", data={"sessionId": session, "message": message}
            )
        yield await self._emit(line)

    def _producer(self, identity: ChatTurnIdentity, request: RequestT) -> TurnProducer:
        if self.produce is not None:
            return self.produce(identity, request)
        if not isinstance(request, TurnProducer):
            raise TypeError(
                f"run_turn got a {type(request).__name__} and this engine has no produce "
                "function; pass a TurnProducer, or give the engine produce=..."
            )
        return request

    async def _emit(self, event: ChatStreamEvent) -> bytes:
        await _hook("on_event", self.hooks.on_event, event)
        return event.ndjson()

    async def _finish(self, identity: ChatTurnIdentity, turn: DurableTurn) -> None:
        """The product's hooks after a fresh turn, in order; none of them can fail it."""
        text = turn.final_text()
        transform = self.hooks.transform_final_text
        if transform is not None:
            changed = await _hook("transform_final_text", transform, text)
            text = changed if isinstance(changed, str) else text
        message = AssistantMessage(identity=identity, final_text=text, run_id=turn.run_id)
        await _hook("persist_assistant_message", self.hooks.persist_assistant_message, message)
        await _hook("on_turn_complete", self.hooks.on_turn_complete, message)


async def _hook(name: str, hook: Hook | None, *args: Any) -> Any:
    """Call ``hook``; log its error and return ``None`` instead of raising."""
    if hook is None:
        return None
    try:
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return outcome
    except Exception:
        log.exception("chat turn hook %s raised; the turn goes on", name)
        return None


def _message(failure: Exception) -> str:
    if isinstance(failure, DurableError):
        return failure.message
    return str(failure) or type(failure).__name__
