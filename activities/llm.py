"""The model-call step: ``llm.chat`` runs as an activity on Temporal, in-process locally.

Models are named in the worker's settings (``DURABLE_MODELS``, a JSON object
of ``ModelSettings``); API keys stay in the worker's environment, named there
by ``api_key_env``. With no models configured, the clearly labelled offline
``scripted`` model answers, so demos run anywhere. Failures carry retry hints
(``retryable``, ``retry_after``) that Temporal or the local runner honour; the
call itself never retries.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from durable import DurableContext, RetryPolicy, publish_token, step
from durable_agents.adapters.llm import (
    ChatClient,
    ChatResult,
    Messages,
    ModelRequestError,
    ModelSettings,
    Usage,
    as_messages,
    traced_call,
)
from durable_agents.adapters.settings import SCRIPTED, ModelsSettings, current

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ENV",
    "MODELS_ENV",
    "SCRIPTED",
    "ChatRequest",
    "ModelDefaults",
    "call_model",
    "chat",
    "llm_chat",
    "model_catalog",
    "model_defaults",
]

MODELS_ENV = "DURABLE_MODELS"
DEFAULT_MODEL_ENV = "DURABLE_DEFAULT_MODEL"
DEFAULT_MODEL = "default"
"""An alias the worker resolves: ``DURABLE_DEFAULT_MODEL`` if set, else ``scripted``.

Agents name it so the worker, not workflow code, picks the model: workflow code
never reads the environment."""

_clients: dict[tuple[ModelSettings, int], ChatClient] = {}
"""One client per model and event loop: connections are reused, never shared across loops."""


@dataclass(frozen=True)
class ModelDefaults:
    """A model's own call policy, between the step's defaults and a call's overrides."""

    timeout: timedelta | float | None = None
    retry: RetryPolicy | None = None
    heartbeat: timedelta | float | None = None


_defaults: dict[str, ModelDefaults] = {}


def model_defaults(
    model: str,
    *,
    timeout: timedelta | float | None = None,
    retry: RetryPolicy | None = None,
    heartbeat: timedelta | float | None = None,
) -> None:
    """Set the timeout, retry policy or heartbeat of every call that names ``model``.

    Call it at import time, in the module that defines the agents: workflow code
    reads it, so every worker and every replay must see the same values. A call's
    own ``timeout=``, ``retry=`` and ``heartbeat=`` still win.
    """
    _defaults[model] = ModelDefaults(timeout=timeout, retry=retry, heartbeat=heartbeat)


class ChatRequest(BaseModel):
    """One model call, as recorded in history: names and prompts, never keys."""

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    options: dict[str, Any] | None = None


def model_catalog(environ: Mapping[str, str] | None = None) -> dict[str, ModelSettings]:
    """The models a worker may call, from ``DURABLE_MODELS`` in ``environ`` (the process's
    environment by default); see ``ModelsSettings``."""
    return ModelsSettings.from_env(os.environ if environ is None else environ).models


def _on_fragment(text: str) -> None:
    # No heartbeat here: the step activity heartbeats in the background, so a
    # model that thinks in silence is kept alive; a stalled stream is the
    # client's ``idle_timeout`` to catch.
    publish_token(text)


SCRIPTED_PACE = 0.03
"""Seconds between the scripted model's words, so watchers see it stream."""


async def scripted_reply(request: ChatRequest) -> ChatResult:
    """A deterministic answer built from the prompt, labelled as scripted, streamed by word."""
    last = str(request.messages[-1].get("content") or "")
    text = f"[scripted model] You said: {last[:200]}"
    for word in re.findall(r"\S+\s*", text):
        _on_fragment(word)
        await asyncio.sleep(SCRIPTED_PACE)
    words = sum(len(str(m.get("content") or "").split()) for m in request.messages)
    return ChatResult(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=words, output_tokens=len(text.split()), model=SCRIPTED),
    )


@step(
    name="llm.chat",
    timeout=timedelta(seconds=120),
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
)
async def llm_chat(request: ChatRequest) -> ChatResult:
    return await call_model(
        request.model, request.messages, tools=request.tools, options=request.options
    )


async def call_model(
    model: str,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ChatResult:
    """One attempt at a model named in the worker's settings, streaming its tokens.

    Failures carry retry hints; the caller's policy decides about another attempt.
    """
    request = ChatRequest(model=model, messages=messages, tools=tools, options=options)
    try:
        configured = current(ModelsSettings)
    except ValueError as exc:
        # A configuration error: no later attempt can succeed until the worker is fixed.
        raise ModelRequestError(str(exc)) from None
    name = configured.default_model if request.model == DEFAULT_MODEL else request.model
    if name == SCRIPTED:
        return await traced_call(SCRIPTED, request.messages, scripted_reply(request))
    catalog = configured.models
    settings = catalog.get(name)
    if settings is None:
        known = ", ".join(sorted([*catalog, SCRIPTED]))
        raise ModelRequestError(
            f"no model named {name!r} is configured in {MODELS_ENV} (known: {known}); "
            "add it to the worker's settings"
        )
    key = (settings, id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = ChatClient(settings)
    return await client.chat(
        request.messages,
        tools=request.tools,
        options=request.options,
        on_delta=_on_fragment,
        headers=headers,
    )


async def chat(
    ctx: DurableContext,
    intent: str,
    *,
    model: str,
    messages: Messages,
    tools: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
    timeout: timedelta | float | None = None,
    retry: RetryPolicy | None = None,
    heartbeat: timedelta | float | None = None,
) -> ChatResult:
    """Call a model as a durable step: an activity on Temporal, replayed on resume.

    ``timeout``, ``retry`` and ``heartbeat`` override, for this call, the
    model's ``model_defaults`` and then the step's (120 s, five attempts with
    backoff, the default heartbeat timeout); ``options`` go to the API as is.
    The heartbeat comes from the step activity, not the stream: it tells how
    soon a lost worker's call is retried elsewhere, and a silent model is not
    cut off by it. A stalled stream ends at the model's ``idle_timeout``.
    """
    own = _defaults.get(model, ModelDefaults())
    request = ChatRequest(
        model=model,
        messages=as_messages(messages),
        tools=[dict(t) for t in tools] if tools else None,
        options=dict(options) if options else None,
    )
    return await ctx.step(
        intent,
        llm_chat,
        request,
        kind="llm",
        timeout=own.timeout if timeout is None else timeout,
        retry=own.retry if retry is None else retry,
        heartbeat=own.heartbeat if heartbeat is None else heartbeat,
    )
