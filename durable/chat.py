"""Durable chat turns (seed 000): each turn a run ``chat:<session>:<turn>``, streamed as NDJSON.

``ChatTurnEngine(runs, produce=..., hooks=...).run_turn(identity, request)`` is
the whole surface a chat route needs: it returns the turn's NDJSON byte stream
(``application/x-ndjson``), which never raises. A completed turn replays its
answer without running its producer again; a turn another attempt is answering
gets ``lease_held``; a failed or interrupted turn runs again under the same id.
The turn's run is the agent ``CHAT_TURN_AGENT`` (``agents/chat.py``), whose one
step of kind ``llm`` is the producer. ``durable_agents.adapters.chat.run_durable_turn`` runs one
turn on a local store or through a client; ``durable_agents.adapters.chat.StoreTurns`` lets the
engine run turns in this process on a local store. This module does no I/O of
its own.
"""

from __future__ import annotations

from ._chat import (
    CHAT_TURN_AGENT,
    RESULT_EVENT,
    TEXT_EVENT,
    ChatStreamEvent,
    ChatTurn,
    ChatTurnIdentity,
    ClientTurns,
    DurableTurn,
    TurnProducer,
    TurnRuns,
    TurnText,
    answer_turn,
    chat_run_id,
    turn_in_flight,
)
from ._chat_engine import NDJSON, AssistantMessage, ChatTurnEngine, ChatTurnHooks

__all__ = [
    "CHAT_TURN_AGENT",
    "NDJSON",
    "RESULT_EVENT",
    "TEXT_EVENT",
    "AssistantMessage",
    "ChatStreamEvent",
    "ChatTurn",
    "ChatTurnEngine",
    "ChatTurnHooks",
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
