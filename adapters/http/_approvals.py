"""Routes of approvals: the pending ones, and a person's decision on one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from durable import MAX_NAME_LENGTH, DecisionOutcome, PendingApproval

from ._common import Client, problems
from ._models import DecisionRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


@router.get(
    "",
    response_model=list[PendingApproval],
    responses=problems(),
    summary="Approvals waiting for a decision",
)
async def list_approvals(
    client: Client,
    agent: Annotated[
        str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH, description="Only this agent.")
    ] = None,
) -> list[PendingApproval]:
    return await client.approvals(agent=agent)


@router.post(
    "/{approval_id:path}",
    response_model=DecisionOutcome,
    responses={
        202: {
            "model": DecisionOutcome,
            "description": "Handed to the substrate; applied when a worker runs the run.",
        },
        **problems(404),
    },
    summary="Approve, edit or reject",
)
async def decide(
    approval_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=2 * MAX_NAME_LENGTH,
            description="The approval's id (``<run id>:approval-<n>``), or a run id for the "
            "run's one pending approval.",
        ),
    ],
    body: DecisionRequest,
    response: Response,
    client: Client,
) -> DecisionOutcome:
    """200 ``decided`` (this decision is the approval's) or ``already_decided`` (the first
    decision is in ``decision``); 202 ``delivered``; 404 no such approval; 422 a decision
    refused (an edit its input type does not accept, a reject without a reason)."""
    outcome = await client.decide(
        approval_id,
        body.decision,
        decided_by=body.decided_by,
        input=body.input,
        reason=body.reason,
    )
    response.status_code = 202 if outcome.status == "delivered" else 200
    return outcome
