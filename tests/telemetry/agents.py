"""The traced agent: two steps, a model call, an approval and a child run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from durable import ApprovalRequest, DelegationPolicy, DurableContext, agent, step
from durable_agents.activities.llm import chat


class Order(BaseModel):
    order_id: str
    model: str = "ok"


@step(name="telemetry.look_up")
async def look_up(order_id: str) -> str:
    return f"order {order_id}: one kettle, arrived damaged"


@step(name="telemetry.draft")
async def draft(found: str) -> str:
    return f"refund 25.00 for {found}"


@agent(name="telemetry.leaf")
async def leaf(ctx: DurableContext, order: Order) -> str:
    return await ctx.step("look up the order", look_up, order.order_id)


@agent(name="telemetry.traced", delegation=DelegationPolicy(allowed_agents=("telemetry.leaf",)))
async def traced(ctx: DurableContext, order: Order) -> dict[str, Any]:
    found = await ctx.step("look up the order", look_up, order.order_id)
    proposal = await ctx.step("draft a decision", draft, found)
    note = await chat(ctx, "write the note", model=order.model, messages=proposal)
    decision = await ctx.approval(
        ApprovalRequest(action="issue_refund", input={"amount_cents": 2500}, summary=proposal)
    )
    checked = await ctx.call_agent(leaf, Order(order_id=f"{order.order_id}-check"))
    return {"note": note.text, "decision": decision.decision, "checked": checked}
