"""State a test shares with its agents, also inside the workflow sandbox.

Each Temporal run imports its agent's module again inside the workflow sandbox,
so a dict at module level of an agent module is one object in the test and
another in the run. Agent modules of the tests that a test steers (knobs) or
reads (observations) take that state from here instead, imported under
``workflow.unsafe.imports_passed_through()``: the sandbox then hands every copy
of the module this module itself, and with it the same objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["shared"]

T = TypeVar("T")

_STATE: dict[tuple[str, str], Any] = {}


def shared(module: str, name: str, make: Callable[[], T]) -> T:
    """The object ``name`` of ``module`` (pass ``__name__``), made once by ``make``."""
    key = (module, name)
    if key not in _STATE:
        _STATE[key] = make()
    return cast(T, _STATE[key])
