"""Model calls: an OpenAI-compatible streaming chat client on httpx."""

from ._client import (
    RETRYABLE_STATUSES,
    ChatClient,
    Messages,
    as_messages,
    classify_status,
    traced_call,
)
from ._errors import ModelCallError, ModelRequestError, ModelStreamError, ModelUnavailableError
from ._types import ChatMessage, ChatResult, ModelSettings, ToolCall, Usage

__all__ = [
    "RETRYABLE_STATUSES",
    "ChatClient",
    "ChatMessage",
    "ChatResult",
    "Messages",
    "ModelCallError",
    "ModelRequestError",
    "ModelSettings",
    "ModelStreamError",
    "ModelUnavailableError",
    "ToolCall",
    "Usage",
    "as_messages",
    "classify_status",
    "traced_call",
]
