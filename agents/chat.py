"""The chat-turn agent: every durable chat turn is one run of it (``durable.chat``).

Its one step, of kind ``llm``, is the turn's producer: by default the model call
``llm.chat`` (``model_reply``), an activity on Temporal that streams its tokens
to the run's live stream. A worker that answers chat turns imports this module
(``worker.py`` does), and so does a caller that starts them: the agent's name
alone does not say how to build a run's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from durable import DurableContext, RetryPolicy, agent, step_definition
from durable.chat import CHAT_TURN_AGENT, ChatTurn, TurnProducer, TurnText, answer_turn
from durable_agents.activities.llm import ChatRequest, llm_chat
from durable_agents.adapters.llm import Messages, as_messages

__all__ = ["chat_turn", "model_reply"]


@agent(name=CHAT_TURN_AGENT, description="one durable chat turn: its producer as one llm step")
async def chat_turn(ctx: DurableContext, turn: ChatTurn) -> TurnText:
    return await answer_turn(ctx, turn)


def model_reply(
    model: str,
    messages: Messages,
    *,
    options: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> TurnProducer:
    """A turn answered by ``model`` (a name from ``DURABLE_MODELS``, or ``default``)
    on ``messages``: the conversation so far, ending with the user's message.

    ``timeout`` and ``retry`` replace the call's defaults (``llm.chat``: 120 s, five
    attempts); a model's ``model_defaults`` do not apply here, because they are the
    worker's, and the turn's are part of its identity, fixed where it is asked.
    """
    request = ChatRequest(
        model=model, messages=as_messages(messages), options=dict(options) if options else None
    )
    return TurnProducer(
        step=step_definition(llm_chat).name,
        input=request.model_dump(exclude_none=True),
        timeout=timeout,
        retry=retry,
    )
