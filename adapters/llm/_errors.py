"""How a model call failed, classified for the retry policy that owns retries.

    ModelCallError                 (retryable: bool, retry_after: float | None)
     ├── ModelUnavailableError     retryable: 408, 409, 425, 429, 5xx, transport errors,
     │                             a hung upstream, a stream cut off
     ├── ModelRequestError         not retryable: other 4xx, with the server's own message
     └── ModelStreamError          not retryable: a stream that breaks the protocol

Nothing here retries: on Temporal the activity's retry policy does, locally the
step's ``RetryPolicy``; ``retry_after`` is the delay the server asked for.
"""

from __future__ import annotations

__all__ = ["ModelCallError", "ModelRequestError", "ModelStreamError", "ModelUnavailableError"]


class ModelCallError(Exception):
    retryable: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class ModelUnavailableError(ModelCallError):
    """The endpoint could not answer now; another attempt may succeed."""

    retryable = True


class ModelRequestError(ModelCallError):
    """The endpoint refused the request itself; retrying the same request cannot help."""


class ModelStreamError(ModelCallError):
    """The endpoint's stream broke the protocol: not JSON, or not a chat completion."""
