"""``create_app``: the HTTP API over any ``DurableClient``, with the web view of runs."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from durable import DurableClient, LiveEvent
from durable.chat import ChatStreamEvent

from . import _approvals, _chat, _runs
from ._chat import ChatEngine
from ._guards import BodyLimit, OpenHostCheck, read_inbound, require_token
from ._page import api_router, health_router, page_router
from ._problems import PROBLEM_TYPE, install_problem_handlers
from ._settings import ServerSettings
from ._tracing import TraceContext

__all__ = ["create_app"]

_DESCRIPTION = """\
Start durable agent runs, send them events, decide their approvals, cancel
them and watch them live, on whichever substrate the server was started with
(a local store or Temporal). Every route but `/health` needs
`Authorization: Bearer <token>`; errors are `application/problem+json` with
the durable error `code`.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("durable-agents")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0.0.0"


def create_app(
    client: DurableClient,
    settings: ServerSettings | None = None,
    *,
    chat: ChatEngine | None = None,
) -> FastAPI:
    """The API serving ``client``; the caller keeps ownership of it (and closes it).

    With ``chat`` (a ``ChatTurnEngine`` whose requests are ``ChatTurnRequest``s), it
    serves chat turns at ``POST /v1/chat/{session}/turns`` too; the engine says how
    a turn is answered (``durable_agents.agents.chat.model_reply``: a model call).
    """
    settings = settings or ServerSettings()
    app = FastAPI(
        title="durable agents",
        version=_version(),
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        # The interactive docs load their script from a CDN; /openapi.json is enough.
        docs_url=None,
        redoc_url=None,
    )
    app.state.client = client
    app.state.settings = settings
    app.state.chat = chat
    install_problem_handlers(app)
    guarded = [Depends(require_token), Depends(read_inbound)]
    routers = [_runs.router, _approvals.router, api_router]
    if chat is not None:
        routers.append(_chat.router)
    for router in routers:
        app.include_router(router, dependencies=guarded)
    app.include_router(health_router)
    app.include_router(page_router)
    if settings.open:
        app.add_middleware(OpenHostCheck)
    app.add_middleware(TraceContext)
    # Added last, so outermost: a body is counted before anything reads it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (LiveEvent, ChatStreamEvent):
        components[model.__name__] = model.model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "header":
                    # An optional header is absent, never null: it is a plain string.
                    _not_nullable(parameter["schema"])
            # Error answers are problem documents: say so in their media type.
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    answer["content"] = {PROBLEM_TYPE: content["application/json"]}
    return schema


def _not_nullable(schema: dict[str, Any]) -> None:
    kinds = schema.pop("anyOf", None)
    if kinds is not None:
        (kept,) = [kind for kind in kinds if kind.get("type") != "null"]
        schema.update(kept)
