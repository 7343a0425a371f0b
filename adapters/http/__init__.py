"""The HTTP API for other services, and the web view of runs: ``durable serve``.

``create_app(client, settings)`` serves any ``DurableClient`` (a local store's
or Temporal's) over FastAPI; ``ServerSettings`` says where it listens and what
it accepts. See the README's section "The HTTP API".
"""

from ._app import create_app
from ._chat import ChatTurnRequest
from ._guards import DEPTH_HEADER, is_depth_exceeded, parse_traceparent
from ._problems import STATUS_BY_CODE, HttpCode, Problem
from ._settings import DEFAULT_MAX_BODY_BYTES, ServerSettings, is_loopback

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEPTH_HEADER",
    "STATUS_BY_CODE",
    "ChatTurnRequest",
    "HttpCode",
    "Problem",
    "ServerSettings",
    "create_app",
    "is_depth_exceeded",
    "is_loopback",
    "parse_traceparent",
]
