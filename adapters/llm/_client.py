"""``ChatClient``: one streamed call to an OpenAI-compatible ``/chat/completions``.

Two clocks bound an attempt: a deadline until the response headers arrive, so a
hung upstream is abandoned, and an idle timeout between stream chunks, so a
stream that stalls is too. Every failure is classified (see ``_errors``); the
caller's retry policy, never this client, decides whether to try again.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from httpx_sse import EventSource
from pydantic import ValidationError

from durable_agents.adapters.telemetry import model_call, spans

from ._errors import ModelCallError, ModelRequestError, ModelStreamError, ModelUnavailableError
from ._types import ChatMessage, ChatResult, ModelSettings, ToolCall, Usage

__all__ = [
    "RETRYABLE_STATUSES",
    "ChatClient",
    "Messages",
    "as_messages",
    "classify_status",
    "traced_call",
]

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
"""Besides every 5xx: statuses after which the same request may succeed later."""

Messages = str | ChatMessage | Mapping[str, Any] | Sequence[ChatMessage | Mapping[str, Any]]
"""A prompt (one user message), one message, or a list of messages."""

DeltaCallback = Callable[[str], Awaitable[None] | None]


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A prompt, one message or a list of them, as the list of messages the API takes."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, ChatMessage | Mapping):
        messages = [messages]
    result = []
    for i, message in enumerate(messages):
        try:
            item = ChatMessage.model_validate(message)
        except ValidationError as exc:
            raise ModelRequestError(
                f"message {i} is not a chat message ({exc.errors(include_url=False)}); pass a "
                "prompt string, or messages like {'role': 'user', 'content': '...'}"
            ) from None
        result.append(item.model_dump(exclude_none=True))
    if not result:
        raise ModelRequestError("no messages to send; pass a prompt or at least one message")
    return result


def _retry_after(headers: httpx.Headers) -> float | None:
    """The delay the server asked for: ``retry-after-ms``, else ``Retry-After``."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return text[:500]


def shown_url(url: str) -> str:
    """``url`` without the parts that may carry credentials: user info and query."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def classify_status(status: int, body: bytes, headers: httpx.Headers, url: str) -> ModelCallError:
    message = _server_message(body)
    if status in RETRYABLE_STATUSES or status >= 500:
        return ModelUnavailableError(
            # No promise of another attempt here: the step's retry policy decides.
            f"{url} answered {status}: {message}",
            status=status,
            retry_after=_retry_after(headers),
        )
    return ModelRequestError(
        f"{url} refused the request with {status}: {message}; fix the request, "
        "the model settings or the API key",
        status=status,
    )


async def traced_call(
    model: str, messages: Sequence[Any], call: Awaitable[ChatResult]
) -> ChatResult:
    """``call`` under a model-call span (``chat <model>``) that records its usage and cost."""
    with model_call(model, messages) as traced:
        result = await call
        usage = result.usage
        traced.answered(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=usage.cost,
            finish_reason=result.finish_reason,
            response_model=usage.model,
            text=result.text,
        )
        return result


class ChatClient:
    """Calls one model endpoint; share one ``httpx.AsyncClient`` across calls."""

    def __init__(
        self,
        settings: ModelSettings,
        *,
        http: httpx.AsyncClient | None = None,
        headers_deadline: float | None = None,
        idle_timeout: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``headers_deadline`` and ``idle_timeout`` default to the model's settings."""
        headers_deadline = (
            settings.headers_deadline if headers_deadline is None else headers_deadline
        )
        idle_timeout = settings.idle_timeout if idle_timeout is None else idle_timeout
        if headers_deadline <= 0 or idle_timeout <= 0:
            raise ValueError("headers_deadline and idle_timeout must be positive seconds")
        self.settings = settings
        # No retries in the transport: every attempt is one the retry policy can see.
        self.http = http or httpx.AsyncClient(timeout=None, transport=httpx.AsyncHTTPTransport())
        self.headers_deadline = headers_deadline
        self.idle_timeout = idle_timeout
        self._environ = os.environ if environ is None else environ

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        name = self.settings.api_key_env
        if name:
            key = self._environ.get(name)
            if not key:
                raise ModelRequestError(
                    f"the API key variable {name} is not set in the worker's environment; "
                    "set it where the worker runs (keys never travel with a run)"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def chat(
        self,
        messages: Messages,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        on_delta: DeltaCallback | None = None,
        options: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChatResult:
        """Stream one completion; ``on_delta`` receives each text fragment as it arrives.

        Chunks that carry no text, such as tool-call fragments, call ``on_delta``
        with ``""``, so a caller can tell a live stream from a stalled one.
        ``headers`` are added to the request (correlation and forwarding headers).
        """
        url = f"{self.settings.base_url}/chat/completions"
        streamed = self.settings.stream
        body: dict[str, Any] = {
            **(options or {}),
            "model": self.settings.model,
            "messages": as_messages(messages),
            "stream": streamed,
        }
        if streamed:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = list(tools)
        return await traced_call(
            self.settings.model, body["messages"], self._call(url, body, headers, on_delta)
        )

    async def _call(
        self,
        url: str,
        body: dict[str, Any],
        headers: Mapping[str, str] | None,
        on_delta: DeltaCallback | None,
    ) -> ChatResult:
        streamed = self.settings.stream
        sent = {**(headers or {}), **self._headers()}
        spans.with_traceparent(sent)  # the model call's span is this request's parent
        request = self.http.build_request("POST", url, json=body, headers=sent)
        # Messages reach step records, live streams and history: name the endpoint only.
        url = shown_url(url)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.headers_deadline):
                response = await self.http.send(request, stream=True)
        except TimeoutError:
            raise ModelUnavailableError(
                f"{url} sent no response headers within {self.headers_deadline:g}s; "
                "the upstream hung, so this attempt was abandoned"
            ) from None
        except httpx.TransportError as exc:
            raise ModelUnavailableError(f"could not reach {url}: {exc!r}") from None
        try:
            if response.status_code >= 400:
                raise classify_status(
                    response.status_code, await self._body(response), response.headers, url
                )
            if not streamed:
                return await self._read_whole(response, url, started, on_delta)
            return await self._read_stream(response, url, started, on_delta)
        finally:
            await response.aclose()

    async def _body(self, response: httpx.Response) -> bytes:
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await response.aread()
        except (TimeoutError, httpx.TransportError):
            return b""

    async def _read_stream(
        self,
        response: httpx.Response,
        url: str,
        started: float,
        on_delta: DeltaCallback | None,
    ) -> ChatResult:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            raise ModelStreamError(
                f"{url} answered with {kind or 'no content type'} instead of an event stream; "
                "check that the endpoint supports stream=true"
            )
        events = EventSource(response).aiter_sse()
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        usage: Mapping[str, Any] = {}
        first: float | None = None
        done = False
        while True:
            try:
                event = await asyncio.wait_for(anext(events), self.idle_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ModelUnavailableError(
                    f"the stream from {url} stalled: no chunk for {self.idle_timeout:g}s"
                ) from None
            except httpx.TransportError as exc:
                raise ModelUnavailableError(f"the stream from {url} was cut off: {exc!r}") from None
            if event.data.strip() == "[DONE]":
                done = True
                break
            chunk = _chunk(event.data, url)
            # A chunk with no text (a tool-call fragment) still proves the stream alive.
            for fragment in _apply(chunk, text, calls, url) or [""]:
                if first is None and fragment:
                    first = time.monotonic() - started
                if on_delta is not None:
                    outcome = on_delta(fragment)
                    if inspect.isawaitable(outcome):
                        await outcome
            finish = _finish(chunk) or finish
            if isinstance(chunk.get("usage"), Mapping):
                usage = chunk["usage"]
        if not done and finish is None:
            raise ModelUnavailableError(
                f"the stream from {url} ended before the completion finished; "
                "the connection was dropped mid-stream"
            )
        return ChatResult(
            text="".join(text),
            tool_calls=[ToolCall(**calls[i]) for i in sorted(calls)],
            finish_reason=finish,
            usage=self._usage(usage, started, first),
        )

    async def _read_whole(
        self,
        response: httpx.Response,
        url: str,
        started: float,
        on_delta: DeltaCallback | None,
    ) -> ChatResult:
        """A completion answered in one JSON response (``stream`` off), as one delta."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                raw = await response.aread()
        except TimeoutError:
            raise ModelUnavailableError(
                f"the answer from {url} stalled: no data for {self.idle_timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise ModelUnavailableError(f"the answer from {url} was cut off: {exc!r}") from None
        completion = _chunk(raw.decode("utf-8", errors="replace"), url)
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        # A whole message folds like a single chunk whose delta is the message.
        choices = completion.get("choices") or []
        as_delta = {
            "choices": [
                {"delta": c.get("message") or {}} if isinstance(c, Mapping) else c for c in choices
            ]
        }
        for i, call in enumerate(_tool_calls(as_delta)):
            call.setdefault("index", i)  # a whole message's calls carry no index
        _apply(as_delta, text, calls, url)
        first = time.monotonic() - started if text else None
        if on_delta is not None:
            outcome = on_delta("".join(text))
            if inspect.isawaitable(outcome):
                await outcome
        usage = completion.get("usage")
        return ChatResult(
            text="".join(text),
            tool_calls=[ToolCall(**calls[i]) for i in sorted(calls)],
            finish_reason=_finish(completion),
            usage=self._usage(usage if isinstance(usage, Mapping) else {}, started, first),
        )

    def _usage(self, usage: Mapping[str, Any], started: float, first: float | None) -> Usage:
        """The call's usage; tokens the server did not report stay unknown (``None``)."""
        input_tokens = _tokens(usage.get("prompt_tokens"))
        output_tokens = _tokens(usage.get("completion_tokens"))
        cost = None
        if input_tokens is not None and output_tokens is not None:
            cost = self.settings.cost(input_tokens, output_tokens)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            latency_s=time.monotonic() - started,
            first_token_s=first,
            model=self.settings.model,
        )


def _tokens(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _tool_calls(chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, Mapping) else None
        if isinstance(delta, Mapping):
            calls.extend(c for c in delta.get("tool_calls") or [] if isinstance(c, dict))
    return calls


def _chunk(data: str, url: str) -> Mapping[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ModelStreamError(
            f"{url} sent a stream chunk that is not JSON: {data[:200]!r}; "
            "the endpoint does not speak the chat-completions stream protocol"
        ) from None
    if not isinstance(chunk, Mapping):
        raise ModelStreamError(f"{url} sent a stream chunk that is not an object: {data[:200]!r}")
    if "error" in chunk:
        raise ModelUnavailableError(f"{url} reported an error mid-stream: {chunk['error']}")
    return chunk


def _apply(
    chunk: Mapping[str, Any], text: list[str], calls: dict[int, dict[str, str]], url: str
) -> list[str]:
    """Fold one chunk into the text and tool calls; return its new text fragments."""
    fragments = []
    try:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                text.append(str(content))
                fragments.append(str(content))
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(
                    int(call["index"]), {"id": "", "name": "", "arguments": ""}
                )
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function") or {}
                entry["name"] += function.get("name") or ""
                entry["arguments"] += function.get("arguments") or ""
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ModelStreamError(
            f"{url} sent a chunk that is not a chat completion ({exc!r}): {dict(chunk)!r:.200}"
        ) from None
    return fragments


def _finish(chunk: Mapping[str, Any]) -> str | None:
    for choice in chunk.get("choices") or []:
        if isinstance(choice, Mapping) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None
