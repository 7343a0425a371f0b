"""A review panel: two model participants weigh a refund request, as a conversation.

``python -m durable_agents.examples.panel_demo`` runs it. With no models configured the
participants are the offline scripted model.
"""

from __future__ import annotations

from pydantic import BaseModel

import durable_agents.agents.conversation  # noqa: F401  (registers the conversation agent and its turn step)
from durable import DurableContext, agent
from durable.conversation import (
    CallPolicy,
    ConversationPolicy,
    ConversationResult,
    Participant,
    define_conversation,
)

panel = define_conversation(
    "refund.review_panel",
    description="an advocate and an auditor weigh a refund request",
    participants=[
        Participant(
            name="advocate",
            label="Customer advocate",
            model="default",
            system="Argue for the customer in one sentence.",
        ),
        Participant(
            name="auditor",
            label="Policy auditor",
            model="default",
            system="Check the case against the refund policy in one sentence.",
            auth_source="agent-owned",
        ),
    ],
    policy=ConversationPolicy(
        max_turns=4,
        max_credits_cents=25,
        turn_order="alternate",
        halt_on=lambda state: "agreed" if "AGREED" in state.transcript[-1].text else None,
        default_call_policy=CallPolicy(max_retries=2, failures_to_open=3),
    ),
)


class Case(BaseModel):
    summary: str


@agent(name="panel_review", description="a refund decided after a two-party review")
async def panel_review(ctx: DurableContext, case: Case) -> ConversationResult:
    return await ctx.conversation(panel, seed=case.summary)
