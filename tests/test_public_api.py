"""Each package's ``__all__`` is sorted, complete and importable."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PACKAGES = [
    "durable",
    "durable_agents.adapters.local",
    "durable_agents.adapters.temporal",
    "durable_agents.adapters.llm",
    "durable_agents.adapters.http",
    "durable_agents.adapters.settings",
]


@pytest.mark.parametrize("module_name", PACKAGES)
def test_all_is_sorted_and_importable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    # isort style, as ruff enforces: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("module_name", PACKAGES)
def test_all_lists_every_public_name(module_name: str) -> None:
    module = importlib.import_module(module_name)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert public <= set(module.__all__)


def test_durable_exports_every_public_error() -> None:
    import durable
    from durable import _errors

    assert set(_errors.__all__) <= set(durable.__all__)


def test_durable_imports_only_stdlib_and_pydantic() -> None:
    code = (
        "import sys, durable; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('temporalio', 'httpx', 'psycopg', 'durable_agents', 'adapters', 'opentelemetry')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
