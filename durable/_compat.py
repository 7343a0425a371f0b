"""Checking runs in flight against the code installed now (``durable check-compat``).

A run that waits for days replays its agent's code from the start when it
resumes. A check replays each active run's recorded positions against the
agents as they are now, executing no step, and reports every run whose code
would take a different path than the one it recorded. Each substrate finds the
divergences its own way (the local store's records, Temporal's ``Replayer`` on
fetched histories); both report them as a ``CompatReport``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompatReport", "Divergence", "ReplayEnded"]


class ReplayEnded(BaseException):
    """Raised in a replay-only check where the run's records end: the code got that far
    unchanged. A ``BaseException``, so an agent's ``except Exception`` does not keep it."""


class Divergence(BaseModel):
    """A run the code installed now would not replay, and where."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    agent: str
    position: int | None = None
    """The first position where the code now differs from the records; ``None`` when
    the substrate cannot tell (then ``error`` says what it found)."""
    recorded: str | None = None
    """What the run recorded there (``step 'fetch the page'``); ``None``: nothing known."""
    now: str | None = None
    """What the code installed now does there; ``None``: nothing known."""
    error: str
    """The error a worker would fail the run with."""


class CompatReport(BaseModel):
    """What a check found: the active runs it replayed and those that diverge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checked: list[str] = Field(default_factory=list)
    """Run ids replayed, in the order checked."""
    diverging: list[Divergence] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    """Runs not replayed, by id, with the reason (an agent not installed here)."""

    @property
    def compatible(self) -> bool:
        return not self.diverging
