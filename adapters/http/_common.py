"""What the route modules share: the client of the app, and the documented error answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from durable import DurableClient

from ._problems import Problem
from ._settings import ServerSettings

__all__ = ["Client", "Settings", "problems"]


def _client(request: Request) -> DurableClient:
    client: DurableClient = request.app.state.client
    return client


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


Client = Annotated[DurableClient, Depends(_client)]
Settings = Annotated[ServerSettings, Depends(_settings)]

_SAYS = {
    400: "A header is malformed (the forwarded depth is not a whole number).",
    401: "No valid bearer token.",
    404: "No such run or approval.",
    409: "The run's state refuses this: it ended, or its id holds other input.",
    413: "The body is over the size limit, or the call arrived too many hops deep.",
    422: "The request, its input or its payload is refused; ``detail`` says why.",
    503: "The substrate (the store or the Temporal server) cannot be reached.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answers ``statuses`` (and those every route can give), as problems."""
    every = {400, 401, 413, 422, 503}
    return {
        status: {"model": Problem, "description": _SAYS[status]}
        for status in sorted(every | set(statuses))
    }
