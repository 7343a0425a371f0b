"""Durable chat turns (seed 000), written once: a turn is a run keyed ``chat:<session>:<turn>``.

A turn is one request and its answer. Its run has one step of kind ``llm``: the
producer, a registered step called by reference (on Temporal an activity, the
model call itself), which streams its text to the run's live stream and returns
the answer. ``DurableTurn`` wraps the run for the caller:

- **fresh**: no completed run has this id; this call starts it, forwards its
  text live as ``message.part.updated`` events, and reads the final text from
  the run's result once the stream drains;
- **replay**: the run completed before (the answer was lost on its way to the
  client, which asked again); exactly one ``result`` event carries the recorded
  text, and the producer never runs: no model request, no second bill;
- **in flight**: another attempt runs the turn now; ``DurableRunLeaseHeldError``;
- **failed, cancelled or interrupted**: started again under the same id, from
  the top (``retry_failed``: a failed run's records are discarded, and a run
  whose worker died is taken over). A completed turn is free to replay; an
  interrupted one runs again. There is no partial-stream checkpoint.

A caller that stops reading a fresh turn cancels it, so asking again starts it
again at once. ``TurnRuns`` is what a substrate provides: ``ClientTurns`` over
any ``DurableClient`` here, ``durable_agents.adapters.chat.StoreTurns`` over a local store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._client import DurableClient
from ._codec import JsonCodec
from ._context import DurableContext
from ._errors import (
    DurableError,
    DurableRegistrationError,
    DurableRunFailedError,
    DurableRunLeaseHeldError,
)
from ._live import LiveEvent
from ._names import check_name
from ._records import ACTIVE_STATUSES
from ._registry import registered_agents, registered_steps
from ._retry import RetryPolicy

__all__ = [
    "CHAT_TURN_AGENT",
    "RESULT_EVENT",
    "TEXT_EVENT",
    "ChatStreamEvent",
    "ChatTurn",
    "ChatTurnIdentity",
    "ClientTurns",
    "DurableTurn",
    "TurnProducer",
    "TurnRuns",
    "TurnText",
    "answer_turn",
    "chat_run_id",
    "turn_in_flight",
]

CHAT_TURN_AGENT = "chat.turn"
"""The agent every chat turn runs (``agents/chat.py``); on Temporal, the workflow type."""
TEXT_EVENT = "message.part.updated"
"""A fresh turn's text as it streams: ``{"delta": <text>}``."""
RESULT_EVENT = "result"
"""A replayed turn's one event: ``{"finalText": <text>}``."""


def chat_run_id(session_id: str, turn_index: int) -> str:
    """``chat:<session>:<turn>``: the run id of a session's turn, the same on every substrate."""
    return check_name(f"chat:{session_id}:{turn_index}", what="the run id of a chat turn")


class ChatTurnIdentity(BaseModel):
    """Which turn this is. ``tenant_id`` is the workspace, or the user for products
    whose sessions belong to a user; the run is keyed on session and turn index."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    turn_index: int = Field(ge=0)
    """0 for a session's first turn, then one more per turn."""
    user_id: str | None = None

    @field_validator("tenant_id", "session_id")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, what="a chat turn's tenant and session ids")

    @model_validator(mode="after")
    def _run_id(self) -> Self:
        self.run_id  # noqa: B018  (refused here, not when the turn starts)
        return self

    @property
    def run_id(self) -> str:
        return chat_run_id(self.session_id, self.turn_index)


class TurnProducer(BaseModel):
    """What answers a turn, by reference: a registered step and its one argument.

    The step is called only on a fresh turn. It streams its text with
    ``publish_token`` and returns the answer: its text, or an object with a
    ``text`` field (``llm.chat`` returns a ``ChatResult``, whose usage then
    counts toward the run's). By reference, never a closure, because on Temporal
    the step runs as an activity on a worker. ``durable_agents.agents.chat.model_reply``
    describes a model call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str = Field(min_length=1)
    """The registered step's name."""
    input: Any = None
    """Its one argument, as JSON; validated against the step's parameter type."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds one attempt may take; ``None``: the step's own timeout."""
    retry: RetryPolicy | None = None
    """How failed attempts are retried; ``None``: the step's own policy."""


class ChatTurn(BaseModel):
    """The input of a turn's run: what identifies it (two different inputs under one
    turn id are refused with ``DurableRunInputMismatchError``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: ChatTurnIdentity
    produce: TurnProducer


class TurnText(BaseModel):
    """The result of a turn's run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    final_text: str


class ChatStreamEvent(BaseModel):
    """One line of the NDJSON chat protocol: ``{"type": ..., "data": {...}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    data: dict[str, Any] | None = None

    def ndjson(self) -> bytes:
        """The event as one NDJSON line: compact JSON, keys in order, ``data`` left out
        when there is none, non-ASCII text as is (what ``JSON.stringify`` writes)."""
        body: dict[str, Any] = {"type": self.type}
        if self.data is not None:
            body["data"] = self.data
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8") + b"\n"


def turn_in_flight(run_id: str) -> DurableRunLeaseHeldError:
    return DurableRunLeaseHeldError(
        f"chat turn {run_id!r} is already in flight: another attempt is answering it now; "
        "ask again once it has finished (a completed turn replays its answer)"
    )


async def answer_turn(ctx: DurableContext, turn: ChatTurn) -> TurnText:
    """The body of every turn's run: the producer as one step of kind ``llm``."""
    name = turn.produce.step
    definition = registered_steps().get(name)
    if definition is None:
        raise DurableRegistrationError(
            f"chat turn {ctx.run_id!r} is produced by the step {name!r}, which is not "
            "registered in this worker; import the module that defines it (on Temporal, add "
            "it to DURABLE_AGENT_MODULES)"
        )
    if len(definition.params) != 1:
        raise DurableRegistrationError(
            f"the step {name!r} takes {len(definition.params)} arguments, but a chat turn's "
            "producer takes exactly one (TurnProducer.input); wrap its arguments in one model"
        )
    argument: Any = JsonCodec(definition.params[0]).validate(turn.produce.input)
    answer = await ctx.step(
        f"chat:turn-{turn.identity.turn_index}",
        definition.fn,
        argument,
        kind="llm",
        timeout=turn.produce.timeout,
        retry=turn.produce.retry,
    )
    return TurnText(final_text=_text_of(answer, name))


def _text_of(answer: Any, step: str) -> str:
    if isinstance(answer, str):
        return answer
    text = answer.get("text") if isinstance(answer, Mapping) else getattr(answer, "text", None)
    if isinstance(text, str):
        return text
    raise TypeError(
        f"the chat turn's producer {step!r} returned a value of type {type(answer).__name__}, "
        "which has no text; return the answer's text, or an object with a text field"
    )


@runtime_checkable
class TurnRuns(Protocol):
    """What a substrate does for ``DurableTurn``: start a turn's run and follow it."""

    async def begin(self, turn: ChatTurn) -> TurnText | None:
        """Start the turn's run, or find it completed.

        ``None``: this call runs it (new, started again after a failure, or taken
        over from a worker that died). A ``TurnText``: it completed before; replay
        it. Raises ``turn_in_flight`` while another attempt runs it, and the run's
        failure when it failed for good (a run with child runs is not retried).
        """
        ...

    def live(self, run_id: str) -> AsyncIterator[LiveEvent]:
        """The live entries of a run ``begin`` started, until it ends."""
        ...

    async def finish(self, run_id: str) -> TurnText:
        """Wait for a run ``begin`` started to end; return its result or raise its failure."""
        ...

    async def abandon(self, run_id: str, reason: str) -> None:
        """The caller stopped reading: cancel a run ``begin`` started and wait for its end,
        so that asking again starts it again."""
        ...


class DurableTurn:
    """One turn for its caller. ``stream`` yields the turn's events; once it has
    drained, ``final_text`` and ``replayed`` tell the outcome."""

    def __init__(self, runs: TurnRuns, turn: ChatTurn) -> None:
        self.turn = turn
        self.run_id = turn.identity.run_id
        self._runs = runs
        self._text = ""
        self._replayed = False
        self.stream: AsyncGenerator[ChatStreamEvent] = self._events()

    def final_text(self) -> str:
        """The turn's final text: the run's recorded result once ``stream`` drained."""
        return self._text

    def replayed(self) -> bool:
        """Whether the turn replayed a completed run (no producer ran)."""
        return self._replayed

    async def _events(self) -> AsyncGenerator[ChatStreamEvent]:
        recorded = await self._runs.begin(self.turn)
        if recorded is not None:
            self._text, self._replayed = recorded.final_text, True
            yield ChatStreamEvent(type=RESULT_EVENT, data={"finalText": recorded.final_text})
            return
        # Until the run ends by itself, a caller that stops reading (closes the stream, is
        # cancelled) or a live stream that breaks cancels it: it would otherwise hold the
        # turn's id until it finished, and asking again would find it in flight.
        entries = self._runs.live(self.run_id)
        try:
            async for entry in entries:
                if entry.kind == "token" and entry.text:
                    self._text += entry.text
                    yield ChatStreamEvent(type=TEXT_EVENT, data={"delta": entry.text})
        except BaseException:
            await self._abandon("the caller stopped reading the turn")
            raise
        finally:
            closing = getattr(entries, "aclose", None)
            if closing is not None:
                await closing()
        try:
            result = await self._runs.finish(self.run_id)  # its own failure raises here
        except asyncio.CancelledError:
            await self._abandon("the caller stopped waiting for the turn")
            raise
        self._text = result.final_text

    async def _abandon(self, reason: str) -> None:
        # Shielded: a cancelled caller still gets the run cancelled, not left holding its id.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._runs.abandon(self.run_id, reason))


class ClientTurns:
    """``TurnRuns`` over any ``DurableClient``: a worker (local or Temporal) runs the turn.

    The agent ``chat.turn`` must be registered in this process (import
    ``durable_agents.agents.chat``), to build the run's manifest, and hosted by the workers.
    """

    def __init__(self, client: DurableClient, *, settle_within: float = 30.0) -> None:
        """``settle_within``: how long ``abandon`` waits for a cancelled turn to end."""
        if CHAT_TURN_AGENT not in registered_agents():
            raise DurableRegistrationError(
                f"chat turns are runs of the agent {CHAT_TURN_AGENT!r}, which is not registered "
                "in this process; import durable_agents.agents.chat here "
                "(the workers import it too)"
            )
        self.client = client
        self.settle_within = settle_within

    async def begin(self, turn: ChatTurn) -> TurnText | None:
        run_id = turn.identity.run_id
        started = await self.client.start(CHAT_TURN_AGENT, turn, run_id=run_id, retry_failed=True)
        if started.created:
            return None
        view = await self.client.describe(run_id)
        if view.status == "completed":
            return _turn_text(await self.client.result(run_id))
        if view.status in ACTIVE_STATUSES:
            raise turn_in_flight(run_id)
        await self.client.result(run_id)  # raises the failure it was not started again after
        raise DurableRunFailedError(f"chat turn {run_id!r} ended {view.status}: {view.error}")

    def live(self, run_id: str) -> AsyncIterator[LiveEvent]:
        return self.client.watch(run_id)

    async def finish(self, run_id: str) -> TurnText:
        return _turn_text(await self.client.result(run_id))

    async def abandon(self, run_id: str, reason: str) -> None:
        await self.client.cancel(run_id, reason)
        with contextlib.suppress(DurableError, TimeoutError):
            await asyncio.wait_for(self.client.result(run_id), self.settle_within)


def _turn_text(result: Any) -> TurnText:
    """A turn run's result, typed or as JSON (the agent not registered where it was read)."""
    return result if isinstance(result, TurnText) else TurnText.model_validate(result)
