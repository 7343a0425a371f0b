"""Agents that ask people: the approval scenarios' agents.

Module level, like every agent, so the Temporal worker finds them by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from durable import ApprovalRequest, DurableContext, agent


class Refund(BaseModel):
    order: str
    amount: int = Field(ge=0)


class Ask(BaseModel):
    amount: int = 10
    timeout: float | None = None
    on_timeout: str = "reject"


def _outcome(decision: Any) -> dict[str, Any]:
    edited = decision.input
    return {
        "decision": decision.decision,
        "approved": decision.approved,
        "typed": isinstance(edited, Refund),
        "input": edited.model_dump() if isinstance(edited, Refund) else edited,
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "decided": decision.decided_at is not None,
    }


def _request(ask: Ask) -> ApprovalRequest:
    return ApprovalRequest(
        action="issue_refund",
        input=Refund(order="A-1", amount=ask.amount),
        summary=f"refund {ask.amount} on order A-1",
        tool="payments.refund",
    )


@agent(name="approvals.refund")
async def refund(ctx: DurableContext, ask: Ask) -> dict[str, Any]:
    decision = await ctx.approval(
        _request(ask),
        timeout=ask.timeout,
        on_timeout=ask.on_timeout,  # type: ignore[arg-type]
    )
    return _outcome(decision)


@agent(name="approvals.after_go")
async def after_go(ctx: DurableContext, ask: Ask) -> dict[str, Any]:
    """Waits for ``go`` first, so its approval (position 1) can be decided before it asks."""
    await ctx.await_event("go")
    return _outcome(await ctx.approval(_request(ask)))


@agent(name="approvals.plain")
async def plain(ctx: DurableContext, ask: Ask) -> dict[str, Any]:
    """An approval of plain JSON input: an edit is any JSON."""
    request = ApprovalRequest(action="send_email", input={"to": "a@example.com"}, summary="send")
    return _outcome(await ctx.approval(request))
