"""A caller's W3C ``traceparent`` header: the context every request handler runs in, so a
run the request starts (or an event it sends) continues the caller's trace."""

from __future__ import annotations

from opentelemetry import context as otel_context
from starlette.types import ASGIApp, Receive, Scope, Send

from durable_agents.adapters.telemetry import spans

__all__ = ["TraceContext"]


class TraceContext:
    """ASGI middleware: attach the context a request's ``traceparent`` names, if any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        caller = spans.caller_context(value.decode("latin-1") if value else None)
        if caller is None:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
