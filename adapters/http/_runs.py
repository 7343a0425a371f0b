"""Routes of runs: start, list, read, send events, cancel, and watch live."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import TypeAdapter

from durable import (
    ENDED_STATUSES,
    MAX_NAME_LENGTH,
    RunStatus,
    RunView,
    Started,
    StepRecord,
)

from ._common import Client, problems
from ._models import (
    Cancelled,
    CancelRequest,
    EventOutcome,
    EventRequest,
    EventStatus,
    RunPage,
    RunResult,
    StartRequest,
)
from ._stream import NDJSON, SSE, live_lines

__all__ = ["router"]

router = APIRouter(prefix="/v1/runs", tags=["runs"])

MAX_RESULT_WAIT = 60.0
"""The longest a result request waits; callers that need longer ask again."""
ENDED = frozenset({*ENDED_STATUSES, "terminated", "timed_out"})
"""The states of a run that has ended, Temporal's own among them (``RunView.status``)."""

RunId = Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH, description="The run's id.")]


def _location(run_id: str) -> str:
    return f"/v1/runs/{run_id}"


@router.post(
    "",
    status_code=201,
    response_model=Started,
    responses={
        200: {"model": Started, "description": "The identical run was already there."},
        **problems(409),
    },
    summary="Start a run",
)
async def start_run(body: StartRequest, response: Response, client: Client) -> Started:
    """201 with the new run; 200 when a run with this id and the same input exists;
    409 (``manifest_mismatch``) when the id holds a run with other input."""
    started = await client.start(
        body.agent, body.input, run_id=body.run_id, delegation=body.delegation
    )
    response.status_code = 201 if started.created else 200
    response.headers["Location"] = _location(started.run_id)
    return started


@router.get("", response_model=RunPage, responses=problems(404), summary="List runs")
async def list_runs(
    client: Client,
    status: Annotated[RunStatus | None, Query(description="Only runs in this state.")] = None,
    agent: Annotated[
        str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH, description="Only this agent.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many runs.")] = 50,
    before: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_NAME_LENGTH,
            description="The previous page's ``next_before``: runs older than that run "
            "(404 if no such run).",
        ),
    ] = None,
) -> RunPage:
    runs = await client.runs(status=status, agent=agent, limit=limit, before=before)
    return RunPage(runs=runs, next_before=runs[-1].run_id if len(runs) == limit else None)


# The run id is a path (child runs are `<parent>/<name>-<n>`), so the routes with
# a suffix come before the one without.


@router.get(
    "/{run_id:path}/steps",
    response_model=list[StepRecord],
    responses=problems(404),
    summary="A run's steps",
)
async def run_steps(run_id: RunId, client: Client) -> list[StepRecord]:
    return await client.steps(run_id)


@router.get(
    "/{run_id:path}/usage",
    response_model=dict[str, float | None],
    responses=problems(404),
    summary="A run's model usage and cost",
)
async def run_usage(run_id: RunId, client: Client) -> dict[str, float | None]:
    return await client.usage(run_id)


@router.get(
    "/{run_id:path}/result",
    response_model=RunResult,
    responses={
        202: {"model": RunView, "description": "The run has not ended within ``wait``."},
        **problems(404, 409),
    },
    summary="A run's result",
)
async def run_result(
    run_id: RunId,
    client: Client,
    wait: Annotated[
        float, Query(ge=0, le=MAX_RESULT_WAIT, description="Seconds to wait for the end.")
    ] = 0,
) -> RunResult | JSONResponse:
    """200 with the result of a completed run; 202 with the run's state while it is still
    active after ``wait`` seconds; 409 with the run's own error code when it failed or was
    cancelled (``step_failed``, ``run_failed``, ``cancelled``...)."""
    view = await client.describe(run_id)
    if view.status in ENDED:
        # A run that failed or was cancelled raises its own durable error: a problem.
        return RunResult(run_id=run_id, result=_json(await client.result(run_id)))
    if wait > 0:
        try:
            result = await asyncio.wait_for(client.result(run_id), wait)
        except TimeoutError:
            pass
        else:
            return RunResult(run_id=run_id, result=_json(result))
        view = await client.describe(run_id)
    # Returned as is: the route's model is the result's.
    return JSONResponse(view.model_dump(mode="json"), status_code=202)


def _json(value: Any) -> Any:
    """A result typed by its agent's return annotation, as JSON."""
    return TypeAdapter(Any).dump_python(value, mode="json")


@router.post(
    "/{run_id:path}/events/{key}",
    status_code=202,
    response_model=EventOutcome,
    responses={
        200: {"model": EventOutcome, "description": "An event was already accepted on this key."},
        **problems(404, 409),
    },
    summary="Send an event to a run",
)
async def send_event(
    run_id: RunId,
    key: Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH)],
    response: Response,
    client: Client,
    body: Annotated[EventRequest, Body()],
) -> EventOutcome:
    """202 accepted (or handed over, ``delivered``); 200 when an earlier event on the key
    won; 404 no such run; 409 (``run_ended``) the run ended; 422 a payload the run refuses."""
    accepted = await client.send_event(run_id, key, body.payload)
    response.status_code = 200 if accepted is False else 202
    return EventOutcome(run_id=run_id, key=key, status=_EVENT_STATUS[accepted])


_EVENT_STATUS: dict[bool | None, EventStatus] = {
    True: "accepted",
    False: "already_accepted",
    None: "delivered",
}


@router.post(
    "/{run_id:path}/cancel",
    response_model=Cancelled,
    responses={
        202: {"model": Cancelled, "description": "The run's worker was asked to end it."},
        **problems(404),
    },
    summary="Cancel a run and its child runs",
)
async def cancel_run(
    run_id: RunId,
    response: Response,
    client: Client,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Cancelled:
    outcome = await client.cancel(run_id, body.reason if body is not None else "")
    response.status_code = 202 if outcome == "requested" else 200
    return Cancelled(run_id=run_id, outcome=outcome)


_STREAM_CONTENT: dict[str, Any] = {
    NDJSON: {"schema": {"$ref": "#/components/schemas/LiveEvent"}},
    SSE: {"schema": {"type": "string"}},
}


@router.get(
    "/{run_id:path}/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The run's live stream, one ``LiveEvent`` a line (blank lines "
            "keep the connection alive), or as server-sent events with ``Accept: "
            "text/event-stream``. It ends after the run's last entry.",
            "content": _STREAM_CONTENT,
        },
        **problems(404),
    },
    summary="Watch a run live",
)
async def stream_run(
    run_id: RunId,
    request: Request,
    client: Client,
    after: Annotated[
        int | None, Query(ge=0, description="Resume after this entry's ``seq``.")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="As ``after``; sent by server-sent-event readers when they reconnect.",
        ),
    ] = None,
) -> StreamingResponse:
    await client.describe(run_id)  # 404 before the stream starts, not inside it
    start = after if after is not None else _seq(last_event_id)
    sse = SSE in request.headers.get("accept", "")
    lines = live_lines(client.watch(run_id, after=start), sse=sse)
    return StreamingResponse(
        lines,
        media_type=SSE if sse else NDJSON,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _seq(value: str | None) -> int:
    # A Last-Event-ID this server never sent starts from the beginning, as a
    # reader without one does.
    if value is None or not value.strip().isdigit():
        return 0
    return int(value.strip())


@router.get(
    "/{run_id:path}", response_model=RunView, responses=problems(404), summary="A run's state"
)
async def describe_run(run_id: RunId, client: Client) -> RunView:
    return await client.describe(run_id)
