"""Canonical JSON and identity hashes against the vectors computed with Node.js."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from durable import (
    DurableNonCanonicalValueError,
    DurableRunManifest,
    ErrorCode,
    canonical_hash,
    canonical_json,
    derive_worker_id,
    js_number,
    manifest_hash,
    step_id,
)

# A copy of the reference vectors, kept in the repository: a lone clone runs its tests.
GOLDEN_PATH = Path(__file__).resolve().parent / "golden" / "canonical_json.json"
GOLDEN: dict[str, Any] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", GOLDEN["canonical"], ids=lambda v: v["canonical_json"][:40])
def test_canonical_vectors(vector: dict[str, Any]) -> None:
    assert canonical_json(vector["value"]) == vector["canonical_json"]
    assert canonical_hash(vector["value"]) == vector["sha256"]


@pytest.mark.parametrize("vector", GOLDEN["manifests"], ids=lambda v: v["manifest_hash"][:12])
def test_manifest_vectors(vector: dict[str, Any]) -> None:
    raw = vector["manifest"]
    manifest = DurableRunManifest(
        project_id=raw["projectId"],
        scenario_id=raw.get("scenarioId"),
        task=raw["task"],
        input=raw["input"],
        tags=raw.get("tags"),
    )
    assert manifest_hash(manifest) == vector["manifest_hash"]


@pytest.mark.parametrize("vector", GOLDEN["step_ids"], ids=lambda v: v["step_id"][:12])
def test_step_id_vectors(vector: dict[str, Any]) -> None:
    assert step_id(vector["runId"], vector["stepIndex"], vector["intent"]) == vector["step_id"]


class _Plain:
    pass


REJECTED = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "undefined": ...,
    "a function": len,
    "a class instance (non-plain object)": _Plain(),
}


@pytest.mark.parametrize("name", GOLDEN["rejected"])
def test_rejected_values(name: str) -> None:
    with pytest.raises(DurableNonCanonicalValueError) as caught:
        canonical_json({"nested": [REJECTED[name]]})
    assert caught.value.code == ErrorCode.NON_CANONICAL_VALUE
    assert "$.nested[0]" in str(caught.value)


def test_rejected_non_string_key() -> None:
    with pytest.raises(DurableNonCanonicalValueError, match=r"non-string key 1.*str\(\)"):
        canonical_json({1: "x"})


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (123e-20, "1.23e-18"),
        (-0.0, "0"),
        (2**53 + 1, "9007199254740992"),
        (10**21, "1e+21"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (123456.789, "123456.789"),
    ],
)
def test_js_number_formatting(number: float, text: str) -> None:
    assert js_number(number) == text


def test_lone_surrogates_are_escaped_like_javascript() -> None:
    assert canonical_json("a\ud800b") == '"a\\ud800b"'


def test_worker_id_shape() -> None:
    first, second = derive_worker_id(), derive_worker_id()
    assert re.fullmatch(r".+:\d+:[0-9a-f]{8}", first)
    assert first != second
