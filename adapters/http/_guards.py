"""What every request passes before a route runs: its size, its host, its token, its headers.

The body cap is ASGI middleware, so it counts what arrives whatever the
route; the rest are dependencies of the versioned routes, so they show in the
OpenAPI document (the bearer scheme and the two inbound headers).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from durable.conversation import FORWARD_HEADERS, read_depth

from ._problems import HttpCode, ProblemError, problem_response
from ._settings import ServerSettings, is_loopback

__all__ = [
    "DEPTH_HEADER",
    "BodyLimit",
    "OpenHostCheck",
    "is_depth_exceeded",
    "parse_traceparent",
    "read_inbound",
    "require_token",
]

DEPTH_HEADER = FORWARD_HEADERS.depth


def is_depth_exceeded(inbound_depth: int, max_depth: int) -> bool:
    """Whether a call that arrived ``inbound_depth`` hops deep has reached the limit.

    As the reference runtime's ``isDepthExceeded``: a call at the limit would
    forward one hop past it, so it is refused here (413), before anything runs.
    """
    return inbound_depth >= max_depth


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_traceparent(value: str | None) -> str | None:
    """A W3C ``traceparent`` if ``value`` is one, else ``None``.

    As the trace-context recommendation asks, a malformed header is ignored (the
    request starts a new trace), never refused.
    """
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _ = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return value.strip()


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by their length or as they arrive.

    The rest of a refused body is read and dropped, up to ``DRAIN_FACTOR`` times the
    limit, before the answer goes out: most clients send the whole body before they
    read any answer, and would see a reset connection instead of the 413. Past that
    much, the connection is closed.
    """

    DRAIN_FACTOR = 8

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"the request body is over {self.max_bytes} bytes, this server's limit "
            "(DURABLE_API_MAX_BODY_BYTES); send a smaller payload, or pass large data by reference"
        )

    async def _drain(self, receive: Receive, seen: int, more: bool) -> bool:
        """Read and drop the body's rest; whether all of it was read."""
        while more:
            if seen > self.DRAIN_FACTOR * self.max_bytes:
                return False
            message = await receive()
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            response = problem_response(
                400,
                HttpCode.BAD_HEADER.value,
                "the Content-Length header is not a number",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if length is not None and int(length) > self.max_bytes:
            drained = int(length) <= self.DRAIN_FACTOR * self.max_bytes and await self._drain(
                receive, 0, True
            )
            response = problem_response(
                413,
                HttpCode.BODY_TOO_LARGE.value,
                self._too_large(),
                headers=None if drained else {"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    more = bool(message.get("more_body", False))
                    drained = await self._drain(receive, seen, more)
                    # FastAPI passes an HTTPException raised while reading the body on
                    # to the handlers unchanged, which answer it as a problem.
                    raise HTTPException(
                        413, self._too_large(), headers=None if drained else {"Connection": "close"}
                    )
            return message

        await self.app(scope, counted, send)


class OpenHostCheck:
    """With no tokens, answer only requests addressed to a loopback host name.

    A web page can make a browser send requests to a name its author rebinds
    to 127.0.0.1; such requests carry that name in ``Host``, and are refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                response = problem_response(
                    421,
                    HttpCode.MISDIRECTED.value,
                    f"this server has no DURABLE_API_TOKENS, so it answers only requests to "
                    f"127.0.0.1 or localhost, not {host!r}; set DURABLE_API_TOKENS to serve others",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="One of the server's DURABLE_API_TOKENS.")


def _digest(token: str) -> bytes:
    # Comparing digests of equal length keeps the comparison's time independent
    # of the tokens' lengths as well as their contents.
    return hashlib.sha256(token.encode("utf-8")).digest()


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    settings: ServerSettings = request.app.state.settings
    if settings.open:
        return
    given = _digest(credentials.credentials if credentials is not None else "")
    matches = [
        hmac.compare_digest(given, _digest(token.get_secret_value())) for token in settings.tokens
    ]
    if credentials is None or not any(matches):
        raise ProblemError(
            401,
            HttpCode.UNAUTHORIZED,
            "this route needs a valid bearer token: send `Authorization: Bearer <token>` "
            "with a token the server's operator gave you",
            headers={"WWW-Authenticate": "Bearer"},
        )


def read_inbound(
    request: Request,
    depth: Annotated[
        str | None,
        Header(
            alias=DEPTH_HEADER,
            description="Forwarding hops so far, a whole number; absent for the origin. "
            "Anything else is refused (400), and so is a call at the server's limit (413).",
            # Documented, not validated by FastAPI: a bad value is a 400, as the
            # reference runtime answers it, not a 422.
            json_schema_extra={"pattern": "^[0-9]+$"},
        ),
    ] = None,
    traceparent: Annotated[
        str | None,
        Header(description="W3C trace context; kept with the request, ignored if malformed."),
    ] = None,
) -> None:
    """Read the forwarded depth (as the seed's ``readDepth``) and the trace context."""
    settings: ServerSettings = request.app.state.settings
    try:
        if depth is not None and not depth.isascii():
            raise ValueError(f"inbound header {DEPTH_HEADER} must be written in ASCII digits")
        inbound = read_depth({DEPTH_HEADER: depth} if depth is not None else {})
    except ValueError as exc:
        raise ProblemError(400, HttpCode.BAD_HEADER, str(exc)) from None
    if is_depth_exceeded(inbound, settings.max_depth):
        raise ProblemError(
            413,
            HttpCode.DEPTH_EXCEEDED,
            f"this call arrived {inbound} forwarding hops deep ({DEPTH_HEADER}); this server "
            f"refuses calls {settings.max_depth} or more hops deep (DURABLE_API_MAX_DEPTH), "
            "so a chain of agents calling each other stays bounded",
        )
    request.state.depth = inbound
    # Tracing does not exist in this project yet; the context is kept with the
    # request so the routes can pass it into runs when it does.
    request.state.traceparent = parse_traceparent(traceparent)
