from __future__ import annotations

import pytest

from activities.llm import MODELS_ENV, model_catalog


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
