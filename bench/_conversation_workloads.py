"""What the conversation benchmark runs: conversations, and the same turns by hand.

Kept in an importable module because the workflow sandbox re-imports the
module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

import durable_agents.agents.conversation  # noqa: F401  (registers the conversation agent and its turn step)
from durable import DurableContext, agent
from durable.conversation import (
    ConversationPolicy,
    ConversationResult,
    Participant,
    conversation_definition,
    define_conversation,
)

with workflow.unsafe.imports_passed_through():
    from durable_agents.activities.llm import ChatRequest

LENGTHS = (50, 100, 200)
SEED = "Debate whether durable execution belongs in every agent framework. " * 8

for turns in LENGTHS:
    define_conversation(
        f"bench.debate{turns}",
        participants=[
            Participant(name="pro", model="bench", system="Argue for it, briefly."),
            Participant(name="con", model="bench", system="Argue against it, briefly."),
        ],
        policy=ConversationPolicy(max_turns=turns),
    )


class Debate(BaseModel):
    turns: int


@agent(name="bench.debate")
async def debate(ctx: DurableContext, job: Debate) -> ConversationResult:
    return await ctx.conversation(conversation_definition(f"bench.debate{job.turns}"), seed=SEED)


@workflow.defn(name="bench.raw_debate")
class RawDebate:
    """The baseline: each turn an ``llm.chat`` activity, the whole transcript inline."""

    @workflow.run
    async def run(self, job: Debate) -> int:
        messages: list[dict[str, str]] = [{"role": "user", "content": SEED}]
        for i in range(job.turns):
            outcome = await workflow.execute_activity(
                "llm.chat",
                ChatRequest(model="bench", messages=list(messages)),
                start_to_close_timeout=timedelta(seconds=60),
            )
            role = "assistant" if i % 2 else "user"
            messages.append({"role": role, "content": outcome["result"]["text"]})
        return len(messages)
