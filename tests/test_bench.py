"""The benchmarks' measurements, on a small scale: they must keep measuring what they say."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import bench._plain_temporal
from bench import _rounds, temporal_overhead
from bench._model_server import Timing, model_server
from bench.llm_overhead import direct, local_calls
from bench.temporal_overhead import Level, measure, report, sides
from durable_agents.adapters.local import SqliteStore
from durable_agents.adapters.temporal import DevServer
from tests.support.sources import parse

PROJECT_PACKAGES = ("durable", "durable_agents")


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


@pytest.mark.slow
async def test_the_temporal_bench_times_both_sides_on_one_server(
    temporal_server: DevServer,
) -> None:
    for local in (False, True):
        async with sides(temporal_server.address, local=local) as both:
            # Each side checks its runs' results: a run that did not run its steps fails here.
            timing = await measure(both, Level(runs=3, steps=2), repeats=2)
        assert timing.project > 0
        assert timing.plain > 0
        line = report(timing, throughput=True)
        assert f"ratio {timing.ratio:5.2f} (goal <= 1.05: " in line
        assert f"throughput {timing.throughput:5.2f} (goal >= 0.95: " in line
        assert timing.throughput == pytest.approx(1 / timing.ratio)


def test_the_temporal_bench_baseline_imports_no_project_code() -> None:
    """The baseline is Temporal written by hand: temporalio and the standard library only."""
    imported = set()
    for node in ast.walk(parse(Path(bench._plain_temporal.__file__))):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the baseline imports nothing relative to the bench"
            imported.add((node.module or "").split(".")[0])
    foreign = {name for name in imported if name not in sys.stdlib_module_names}
    assert foreign == {"temporalio"}
    # And nothing of the project comes in through temporalio's own imports.
    code = (
        "import sys, bench._plain_temporal; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PROJECT_PACKAGES!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_the_temporal_bench_refuses_a_side_that_skipped_its_steps() -> None:
    with pytest.raises(RuntimeError, match=r"returned 0 where its 3 steps sum to 3"):
        temporal_overhead._check("the plain workflow", [3, 0], Level(runs=2, steps=3))


@pytest.mark.parametrize("given", ["", "20,x", "0,20", "-5"])
def test_the_temporal_bench_refuses_bad_concurrency_levels(given: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"--concurrency takes run counts"):
        temporal_overhead._counts(given)


def test_the_temporal_bench_levels_start_sequential() -> None:
    assert temporal_overhead.levels(20, [20, 200], 5) == [
        Level(1, 20),
        Level(20, 5),
        Level(200, 5),
    ]
    assert [level.label for level in temporal_overhead.levels(3, [2], 1)] == [
        "sequential",
        "2 concurrent",
    ]


def _store_bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.store_throughput", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_the_store_bench_takes_each_figure_as_a_median_of_its_rounds() -> None:
    bench = _store_bench(
        *("--steps", "10", "--runs", "4", "--run-steps", "2", "--processes", "2"),
        *("--rounds", "2", "--resume", "5", "10", "--no-postgres"),
    )
    assert bench.returncode == 0, bench.stderr
    lines = bench.stdout.splitlines()
    assert lines[0] == "medians of 2 rounds; a ratio is the median of each round's own ratio"
    figures = {line[2:36].strip(): line for line in lines if "steps/s   ratio" in line}
    assert set(figures) >= {
        "SqliteStore (FULL)",
        "its writes alone (no runner)",
        "FileStore (fsync)",
        "InMemoryStore",
        "SqliteStore (NORMAL)",
        "4 runs in one process",
        "4 runs over 2 processes",
    }
    assert "goal >= 0.9: " in figures["SqliteStore (FULL)"]
    assert "goal >= 5: " in figures["4 runs over 2 processes"]


def test_the_store_bench_refuses_no_rounds() -> None:
    bench = _store_bench("--rounds", "0", "--no-postgres")
    assert bench.returncode == 2
    assert "--rounds must be at least 1, not 0" in bench.stderr


async def test_the_store_bench_runs_every_measure_in_every_round_in_order() -> None:
    calls: list[tuple[str, int]] = []

    def measure(name: str, values: list[float]) -> Callable[[int], Awaitable[float]]:
        async def taken(round_: int) -> float:
            calls.append((name, round_))
            return values[round_]

        return taken

    rates, baselines = await _rounds.rounds_of(
        3, measure("rate", [30.0, 10.0, 20.0]), measure("baseline", [10.0, 10.0, 40.0])
    )
    assert calls == [(name, r) for r in range(3) for name in ("rate", "baseline")]
    assert (rates, baselines) == ([30.0, 10.0, 20.0], [10.0, 10.0, 40.0])
    # Each round's own ratio (3, 1, 0.5), not the ratio of the medians (20 / 10).
    assert _rounds.ratio(rates, baselines) == 1.0
