from __future__ import annotations

import pytest

from durable_agents.activities.llm import MODELS_ENV, ChatRequest, llm_chat, model_catalog
from durable_agents.adapters.llm import ModelRequestError


def test_models_come_from_the_workers_settings() -> None:
    catalog = model_catalog(
        {MODELS_ENV: '{"fast": {"base_url": "http://localhost:8000/v1", "model": "qwen"}}'}
    )
    assert catalog["fast"].model == "qwen"
    assert model_catalog({}) == {}


@pytest.mark.parametrize(
    "raw",
    ["not json", '{"fast": {"model": "qwen"}}', '{"fast": {"base_url": "ftp://x", "model": "m"}}'],
)
def test_bad_model_settings_are_refused_with_an_example(raw: str) -> None:
    with pytest.raises(ValueError, match=r"DURABLE_MODELS must be a JSON object .* e\.g\."):
        model_catalog({MODELS_ENV: raw})


async def test_a_broken_model_setting_fails_the_call_without_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MODELS_ENV, "not json")

    with pytest.raises(ModelRequestError, match="DURABLE_MODELS must be a JSON object") as caught:
        await llm_chat(ChatRequest(model="gpt", messages=[{"role": "user", "content": "hi"}]))

    assert caught.value.retryable is False
