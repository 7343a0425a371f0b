"""Errors as problem+json (RFC 9457), each carrying a stable ``code``.

Every ``DurableError`` code has one HTTP status, in ``STATUS_BY_CODE``; a test
keeps the table complete. Errors of the HTTP layer itself (a missing token, a
body too large, a bad header) use the codes in ``HttpCode``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from durable import DurableError, ErrorCode

__all__ = [
    "PROBLEM_TYPE",
    "STATUS_BY_CODE",
    "HttpCode",
    "Problem",
    "ProblemError",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger("durable.http")

PROBLEM_TYPE = "application/problem+json"

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.LEASE_HELD: 409,
    ErrorCode.LEASE_LOST: 409,
    ErrorCode.MANIFEST_MISMATCH: 409,
    ErrorCode.INPUT_INVALID: 422,
    ErrorCode.STEP_DIVERGENCE: 409,
    ErrorCode.STEP_INPUT_MISMATCH: 409,
    ErrorCode.RUN_FAILED: 409,
    ErrorCode.RUN_ENDED: 409,
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.STEP_FAILED: 409,
    ErrorCode.STEP_TIMEOUT: 409,
    ErrorCode.RESULT_NOT_SERIALIZABLE: 422,
    ErrorCode.AWAIT_EVENT_TIMEOUT: 409,
    ErrorCode.EVENT_PAYLOAD_INVALID: 422,
    ErrorCode.NON_CANONICAL_VALUE: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.REGISTRATION: 422,
    ErrorCode.STORE_ERROR: 503,
    ErrorCode.CANCELLED: 409,
    ErrorCode.CHILD_FAILED: 409,
    ErrorCode.DELEGATION_REFUSED: 422,
    ErrorCode.RECOVERY_EXHAUSTED: 409,
    ErrorCode.CHECKPOINT_NOT_FOUND: 404,
    ErrorCode.APPROVAL_NOT_FOUND: 404,
}
"""The status of each durable error: 404 for what does not exist, 409 for a run whose
state refuses the request, 422 for input the run or its agent refuses, 413 for a
payload over the substrates' limit, 503 for a store that cannot be used now."""


class HttpCode(StrEnum):
    """Codes of the HTTP layer's own refusals, beside the durable ones."""

    UNAUTHORIZED = "unauthorized"
    BODY_TOO_LARGE = "body_too_large"
    DEPTH_EXCEEDED = "depth_exceeded"
    BAD_HEADER = "bad_header"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    MISDIRECTED = "misdirected_request"
    UNAVAILABLE = "substrate_unavailable"
    INTERNAL = "internal_error"


class Problem(BaseModel):
    """An error answer: what went wrong (``detail``) and its stable ``code``."""

    model_config = ConfigDict(extra="forbid")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    """A durable error code (``run_not_found``, ``manifest_mismatch``...) or an ``HttpCode``."""
    errors: list[dict[str, Any]] | None = None
    """Request validation: each field that was wrong and why."""


class ProblemError(Exception):
    """Raised by the HTTP layer to answer with a problem."""

    def __init__(
        self,
        status: int,
        code: HttpCode,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=_TITLES.get(status, "Error"), status=status, detail=detail, code=code, errors=errors
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_TYPE,
        headers=headers,
    )


def _durable(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DurableError)
    return problem_response(STATUS_BY_CODE[exc.code], exc.code.value, exc.message)


def _ours(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.code.value, exc.detail, headers=exc.headers)


def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]
    said = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return problem_response(
        422,
        HttpCode.INVALID_REQUEST.value,
        f"the request does not match the API: {said}; see /openapi.json",
        errors=errors,
    )


def _value(_: Request, exc: Exception) -> JSONResponse:
    # Clients refuse bad names and decisions with ValueError, saying how to fix them.
    return problem_response(422, HttpCode.INVALID_REQUEST.value, str(exc))


def _starlette(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    code = {
        404: HttpCode.NOT_FOUND,
        405: HttpCode.METHOD_NOT_ALLOWED,
        406: HttpCode.NOT_ACCEPTABLE,
        413: HttpCode.BODY_TOO_LARGE,
    }.get(exc.status_code, HttpCode.INVALID_REQUEST)
    detail = {
        404: "no such route; the API's routes are listed at /openapi.json",
        405: "this route does not take that method; see /openapi.json",
    }.get(exc.status_code, str(exc.detail))
    return problem_response(exc.status_code, code.value, detail, headers=headers)


def _allowed(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    unavailable = _unavailable(exc)
    if unavailable is not None:
        return problem_response(503, HttpCode.UNAVAILABLE.value, unavailable)
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return problem_response(
        500,
        HttpCode.INTERNAL.value,
        f"unexpected {type(exc).__name__}; this is a defect in durable, please report it "
        "with the request that caused it (the server's log has the details)",
    )


def _unavailable(exc: Exception) -> str | None:
    """What to say when the substrate itself cannot be reached (a Temporal server down)."""
    try:
        from temporalio.service import RPCError, RPCStatusCode
    except ImportError:  # pragma: no cover - temporalio is a dependency of the package
        return None
    if isinstance(exc, RPCError) and exc.status in (
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
    ):
        return (
            f"the Temporal server did not answer ({exc.message}); check that it is up and "
            "that TEMPORAL_ADDRESS names it, then retry"
        )
    return None


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DurableError, _durable)
    app.add_exception_handler(ProblemError, _ours)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ValueError, _value)
    app.add_exception_handler(StarletteHTTPException, _starlette)
    app.add_exception_handler(Exception, _unexpected)
