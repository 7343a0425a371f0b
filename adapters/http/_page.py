"""The web view of runs (a page and its script, no build step), health, and server facts."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ._common import Settings, problems
from ._models import Health, ServerInfo

__all__ = ["STATIC", "api_router", "page_router"]

STATIC = Path(__file__).resolve().parent / "static"

# The page and its script hold no data: everything they show comes from the API,
# with the token the reader gives the page. So they are served without one.
page_router = APIRouter(include_in_schema=False)

_HEADERS = {
    "Cache-Control": "no-cache",
    # The page runs its own script only, talks to this server only, and is never
    # framed: what it shows (run inputs, model text) cannot become script.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@page_router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=_HEADERS)


@page_router.get("/static/app.js")
async def script() -> FileResponse:
    return FileResponse(STATIC / "app.js", media_type="text/javascript", headers=_HEADERS)


@page_router.get("/static/style.css")
async def style() -> FileResponse:
    return FileResponse(STATIC / "style.css", media_type="text/css", headers=_HEADERS)


health_router = APIRouter(tags=["server"])


@health_router.get("/health", response_model=Health, summary="Is the server up (no token)")
async def health() -> Health:
    return Health()


api_router = APIRouter(prefix="/v1", tags=["server"])


@api_router.get(
    "/server", response_model=ServerInfo, responses=problems(), summary="This server's facts"
)
async def server_info(settings: Settings) -> ServerInfo:
    return ServerInfo(temporal_ui=settings.temporal_ui, max_body_bytes=settings.max_body_bytes)
