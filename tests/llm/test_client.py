"""The OpenAI-compatible client against a real local server that misbehaves on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from durable_agents.adapters.llm import (
    ChatClient,
    ChatMessage,
    ModelRequestError,
    ModelSettings,
    ModelStreamError,
    ModelUnavailableError,
)
from tests.support.llm_server import ModelServer, model_server


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    async with model_server() as running:
        yield running


def client(server: ModelServer, model: str, *, stream: bool = True, **options: float) -> ChatClient:
    settings = ModelSettings(
        base_url=server.base_url,
        model=model,
        input_price_per_1k=0.5,
        output_price_per_1k=1.5,
        api_key_env="TEST_MODEL_KEY",
        stream=stream,
    )
    return ChatClient(settings, environ={"TEST_MODEL_KEY": "sk-test-123"}, **options)


async def test_a_stream_yields_text_usage_and_cost(server: ModelServer) -> None:
    deltas: list[str] = []
    chat = client(server, "ok")

    result = await chat.chat("Say hello", on_delta=deltas.append)

    assert result.text == "Durable hello"
    # The finish and usage chunks carry no text: "" tells the caller the stream is alive.
    assert deltas == ["Dur", "able ", "hello", "", ""]
    assert result.finish_reason == "stop"
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (12, 3, "ok")
    assert usage.cost == pytest.approx(12 / 1000 * 0.5 + 3 / 1000 * 1.5)
    assert usage.first_token_s is not None
    assert usage.first_token_s <= usage.latency_s
    body = server.bodies[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert server.authorizations == ["Bearer sk-test-123"]
    await chat.aclose()


async def test_a_server_that_reports_no_usage_leaves_it_unknown_never_zero(
    server: ModelServer,
) -> None:
    chat = client(server, "no-usage")

    result = await chat.chat("Say hello")

    assert result.text == "Durable hello"
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cost) == (None, None, None)
    assert usage.model == "no-usage"
    await chat.aclose()


async def test_a_model_set_not_to_stream_gets_its_answer_and_usage_whole(
    server: ModelServer,
) -> None:
    deltas: list[str] = []
    chat = client(server, "no-usage", stream=False)

    result = await chat.chat("Say hello", on_delta=deltas.append)

    body = server.bodies[-1]
    assert body["stream"] is False
    assert "stream_options" not in body
    assert (result.text, result.finish_reason) == ("Durable hello", "stop")
    assert deltas == ["Durable hello"]  # watchers still see the text, in one piece
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens) == (12, 3)
    assert usage.cost == pytest.approx(12 / 1000 * 0.5 + 3 / 1000 * 1.5)
    await chat.aclose()


async def test_messages_and_a_single_message_are_both_accepted(server: ModelServer) -> None:
    chat = client(server, "ok")
    await chat.chat(
        [ChatMessage(role="system", content="Be brief"), {"role": "user", "content": "Hi"}]
    )
    await chat.chat({"role": "user", "content": "Hi"})

    assert [len(b["messages"]) for b in server.bodies] == [2, 1]
    await chat.aclose()


async def test_tool_calls_are_assembled_from_fragments(server: ModelServer) -> None:
    chat = client(server, "tools")

    result = await chat.chat(
        "Look up order 7", tools=[{"type": "function", "function": {"name": "lookup"}}]
    )

    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_1", "lookup", '{"order": 7}')
    ]
    await chat.aclose()


async def test_a_hung_upstream_is_abandoned_at_the_headers_deadline(server: ModelServer) -> None:
    chat = client(server, "hang-headers", headers_deadline=0.3)
    started = time.monotonic()

    with pytest.raises(ModelUnavailableError, match=r"no response headers within 0\.3s"):
        await chat.chat("hi")

    assert time.monotonic() - started < 2
    await chat.aclose()


async def test_a_stream_that_stalls_hits_the_idle_timeout(server: ModelServer) -> None:
    chat = client(server, "hang-stream", idle_timeout=0.3)

    with pytest.raises(ModelUnavailableError, match=r"stalled: no chunk for 0\.3s") as caught:
        await chat.chat("hi")

    assert caught.value.retryable
    await chat.aclose()


async def test_429_is_retryable_and_honours_retry_after(server: ModelServer) -> None:
    chat = client(server, "rate-limited")

    with pytest.raises(ModelUnavailableError, match="429: Rate limit reached") as caught:
        await chat.chat("hi")

    assert (caught.value.retryable, caught.value.status, caught.value.retry_after) == (True, 429, 7)
    await chat.aclose()


async def test_retry_after_ms_is_honoured(server: ModelServer) -> None:
    chat = client(server, "busy")

    with pytest.raises(ModelUnavailableError) as caught:
        await chat.chat("hi")

    assert caught.value.retry_after == 1.5
    await chat.aclose()


async def test_500_then_200_fails_once_and_never_retries_inside(server: ModelServer) -> None:
    chat = client(server, "flaky")

    with pytest.raises(ModelUnavailableError, match="500: The server had an error"):
        await chat.chat("hi")
    assert server.requests["flaky"] == 1  # the retry policy retries, not the client

    assert (await chat.chat("hi")).text == "Durable hello"
    await chat.aclose()


@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        ("bad-request", 400, "max_tokens is too large: 999999"),
        ("unauthorized", 401, "Incorrect API key provided"),
    ],
)
async def test_other_4xx_are_not_retryable_and_keep_the_servers_message(
    server: ModelServer, model: str, status: int, message: str
) -> None:
    chat = client(server, model)

    with pytest.raises(ModelRequestError, match=message) as caught:
        await chat.chat("hi")

    assert (caught.value.retryable, caught.value.status) == (False, status)
    await chat.aclose()


async def test_a_connection_dropped_mid_stream_is_retryable(server: ModelServer) -> None:
    chat = client(server, "drop")

    with pytest.raises(ModelUnavailableError, match=r"cut off|dropped mid-stream") as caught:
        await chat.chat("hi")

    assert caught.value.retryable
    await chat.aclose()


async def test_a_malformed_chunk_gives_a_clear_error(server: ModelServer) -> None:
    chat = client(server, "malformed")

    with pytest.raises(ModelStreamError, match=r"not JSON: '\{this is not json'") as caught:
        await chat.chat("hi")

    assert not caught.value.retryable
    await chat.aclose()


async def test_a_missing_api_key_is_named(server: ModelServer) -> None:
    settings = ModelSettings(base_url=server.base_url, model="ok", api_key_env="NOT_SET_KEY")
    chat = ChatClient(settings, environ={})

    with pytest.raises(ModelRequestError, match="NOT_SET_KEY is not set in the worker"):
        await chat.chat("hi")

    assert server.requests["ok"] == 0
    await chat.aclose()


async def test_an_unreachable_endpoint_is_retryable() -> None:
    chat = ChatClient(ModelSettings(base_url="http://127.0.0.1:1/v1", model="ok"))

    with pytest.raises(ModelUnavailableError, match="could not reach"):
        await chat.chat("hi")
    await chat.aclose()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        ModelSettings(base_url="api.openai.com", model="m")
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ModelSettings(base_url="http://x", model="m", input_price_per_1k=-1)
    with pytest.raises(ValueError, match="must be positive"):
        ChatClient(ModelSettings(base_url="http://x", model="m"), idle_timeout=0)


async def test_an_empty_message_list_is_refused() -> None:
    chat = ChatClient(ModelSettings(base_url="http://127.0.0.1:1/v1", model="m"))
    with pytest.raises(ModelRequestError, match="no messages to send"):
        await chat.chat([])
    await asyncio.sleep(0)
    await chat.aclose()


async def test_a_message_that_is_not_a_chat_message_is_named() -> None:
    chat = ChatClient(ModelSettings(base_url="http://127.0.0.1:1/v1", model="m"))
    with pytest.raises(ModelRequestError, match=r"message 1 is not a chat message.*'role'"):
        await chat.chat([{"role": "user", "content": "hi"}, "a bare string"])  # type: ignore[list-item]
    await chat.aclose()


def test_messages_name_the_endpoint_without_its_credentials() -> None:
    from durable_agents.adapters.llm._client import shown_url

    assert shown_url("https://user:sk-secret@models.example/v1/chat/completions?key=sk-2") == (
        "https://models.example/v1/chat/completions"
    )
    assert shown_url("http://localhost:8080/v1/chat/completions") == (
        "http://localhost:8080/v1/chat/completions"
    )
