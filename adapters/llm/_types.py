"""Settings and results of model calls: what callers, activities and agents share."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChatMessage", "ChatResult", "ModelSettings", "ToolCall", "Usage"]


class ModelSettings(BaseModel):
    """One model endpoint, named in settings. Holds no secret: only where to find it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    """The OpenAI-compatible API root, e.g. ``https://api.openai.com/v1``."""
    model: str = Field(min_length=1)
    """The model id sent in each request."""
    input_price_per_1k: float = Field(default=0.0, ge=0)
    """Price of 1,000 input tokens, in the account's currency."""
    output_price_per_1k: float = Field(default=0.0, ge=0)
    """Price of 1,000 output tokens."""
    api_key_env: str | None = None
    """Name of the worker's environment variable holding the API key; read per call."""
    headers_deadline: float = Field(default=30.0, gt=0)
    """Seconds an attempt may wait for the response headers before it is abandoned."""
    idle_timeout: float = Field(default=60.0, gt=0)
    """Seconds a stream may go without a chunk before the attempt fails."""
    stream: bool = True
    """Stream the answer. ``False`` asks for the whole answer in one response, for
    servers that report token usage only then; ``headers_deadline`` then bounds the
    whole answer, because such a server sends its headers with it."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://, got {value!r}; "
                "use the API root such as https://api.openai.com/v1"
            )
        return value.rstrip("/")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens / 1000 * self.input_price_per_1k
            + output_tokens / 1000 * self.output_price_per_1k
        )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str
    """The arguments as the model streamed them: a JSON text, unparsed."""


class Usage(BaseModel):
    """Tokens and cost of one model call; ``None`` where the server reported no usage.

    Unknown is never written as 0: a server that ignores ``include_usage`` leaves
    the tokens, and so the cost, unknown (see ``ModelSettings.stream``).
    """

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cost: float | None = 0.0
    latency_s: float = 0.0
    first_token_s: float | None = None
    model: str = ""

    @field_validator("latency_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        return value if math.isfinite(value) else 0.0


class ChatResult(BaseModel):
    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    raw_finish: dict[str, Any] | None = None
