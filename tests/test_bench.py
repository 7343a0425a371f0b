"""The LLM benchmark's measurements, on a small scale: they must keep measuring what they say."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from adapters.local import SqliteStore
from bench._model_server import Timing, model_server
from bench.llm_overhead import direct, local_calls


async def test_the_llm_bench_times_both_paths_against_one_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing = Timing(first_token=0.02, per_token=0.002, tokens=5)
    async with model_server(timing) as base_url, httpx.AsyncClient() as http:
        monkeypatch.setenv(
            "DURABLE_MODELS", json.dumps({"bench": {"base_url": base_url, "model": "m"}})
        )
        store = SqliteStore(tmp_path / "bench.db")
        samples = await local_calls(store, 3)
        baseline = await direct(http, base_url)
        await store.close()

    assert len(samples) == 3
    for sample in [*samples, baseline]:
        # The server holds the first token 20 ms and the rest 8 ms more.
        assert 0.02 <= sample.first_token < sample.total
        assert sample.total >= 0.028
