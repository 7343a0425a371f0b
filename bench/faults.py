"""The fault suite: fault scenarios on real processes, each bounded in time, printing its figures.

    python -m bench.faults [--long] [--only NAME ...]

Scenarios (each fails the suite, with what broke, when an invariant does not hold):

- ``kill-sqlite``, ``kill-file``, ``kill-postgres``: local workers (real processes)
  finish runs of ledger steps while a random one is killed with SIGKILL every 2 s and
  replaced. Every run completes, none is lost, and a step runs twice only if it was
  in flight at a kill. Prints those steps and the recovery time after each kill.
- ``kill-temporal``: the same with ``worker.py`` processes on a Temporal dev server;
  a completed activity never runs again.
- ``server-restart``: the Temporal dev server, on a database file, is stopped with
  SIGTERM and restarted mid-run, then killed with SIGKILL and restarted; every run
  completes and the worker carries on by itself, with no restart.
- ``race-sqlite``, ``race-postgres``: four processes call ``run_durable`` on the same
  20 run ids at once; every step runs exactly once.
- ``regressions``: the tests of earlier defects (a divergence the agent catches,
  oversized results, a scan starved by live leases, a step blocking the event loop).

The default, short form is sized for CI (a few minutes on two cores); ``--long``
runs the sizes the figures in the README come from: three workers, 40 runs of
10 steps, a kill every 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ._faults_local import KillPlan, RacePlan, ScenarioFailed, kill_local, postgres, race_local
from ._faults_procs import ROOT
from ._faults_temporal import RestartPlan, kill_temporal, server_restart

Say = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    kill: KillPlan
    temporal: KillPlan
    restart: RestartPlan
    race: RacePlan
    timeout: float
    """Seconds each scenario may take before it fails."""


SHORT = Sizes(
    kill=KillPlan(workers=3, runs=12, steps=10, nap=0.5, every=2.0, max_kills=5, lease=3.0),
    temporal=KillPlan(workers=3, runs=12, steps=6, nap=0.4, every=2.0, max_kills=3, lease=3.0),
    restart=RestartPlan(runs=8, steps=8, nap=0.5, down=2.0),
    race=RacePlan(racers=4, runs=20, steps=5, nap=0.1),
    timeout=120.0,
)
LONG = Sizes(
    kill=KillPlan(workers=3, runs=40, steps=10, nap=0.5, every=2.0, max_kills=40, lease=3.0),
    temporal=KillPlan(workers=3, runs=40, steps=10, nap=0.5, every=2.0, max_kills=20, lease=3.0),
    restart=RestartPlan(runs=40, steps=20, nap=0.5, down=15.0),
    race=RacePlan(racers=4, runs=20, steps=10, nap=0.05),
    timeout=600.0,
)

REGRESSIONS = (
    "tests/conformance/test_boundaries.py::test_a_caught_divergence_still_fails_the_run",
    "tests/conformance/test_boundaries.py::test_a_caught_input_mismatch_still_fails_the_run",
    "tests/conformance/test_boundaries.py::test_a_step_result_over_the_limit_fails_once",
    "tests/conformance/test_boundaries.py::test_a_run_result_over_the_limit_fails_the_run",
    "tests/adapters/test_worker.py::test_worker_finds_an_expired_lease_behind_a_thousand_live_ones",
    "tests/adapters/test_worker.py::test_runs_of_agents_hosted_elsewhere_do_not_hide_one_hosted_here",
    "tests/adapters/test_lease_keeper.py::"
    "test_a_step_blocking_the_event_loop_runs_once_while_another_process_waits",
    "tests/temporal/test_heartbeats.py::test_a_step_keeps_its_heartbeat_while_it_blocks_the_event_loop",
)
"""The tests of the defects found before this suite, kept in it as regressions."""


async def _kill(kind: str, sizes: Sizes, work: Path, say: Say) -> None:
    if kind == "postgres":
        with postgres() as dsn:
            await kill_local(kind, dsn, sizes.kill, work, say, timeout=sizes.timeout)
        return
    location = work / ("store.db" if kind == "sqlite" else "store")
    await kill_local(kind, str(location), sizes.kill, work, say, timeout=sizes.timeout)


async def _race(kind: str, sizes: Sizes, work: Path, say: Say) -> None:
    if kind == "postgres":
        with postgres() as dsn:
            await race_local(kind, dsn, sizes.race, work, say, timeout=sizes.timeout)
        return
    await race_local(kind, str(work / "store.db"), sizes.race, work, say, timeout=sizes.timeout)


async def _regressions(sizes: Sizes, work: Path, say: Say) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *REGRESSIONS,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace").strip().splitlines()
    say(text[-1] if text else "pytest printed nothing")
    if process.returncode != 0:
        raise ScenarioFailed("regression tests failed:\n" + "\n".join(text[-40:]))


Scenario = Callable[[Sizes, Path, Say], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "kill-sqlite": lambda s, w, say: _kill("sqlite", s, w, say),
    "kill-file": lambda s, w, say: _kill("file", s, w, say),
    "kill-postgres": lambda s, w, say: _kill("postgres", s, w, say),
    "kill-temporal": lambda s, w, say: kill_temporal(s.temporal, w, say, timeout=s.timeout),
    "server-restart": lambda s, w, say: server_restart(s.restart, w, say, timeout=s.timeout),
    "race-sqlite": lambda s, w, say: _race("sqlite", s, w, say),
    "race-postgres": lambda s, w, say: _race("postgres", s, w, say),
    "regressions": _regressions,
}


async def run_one(name: str, sizes: Sizes) -> bool:
    """Run scenario ``name`` within its time bound; True when every invariant held."""
    work = Path(tempfile.mkdtemp(prefix=f"durable-faults-{name}-"))

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        # The scenario checks its own bound; this one also catches a step that hangs.
        await asyncio.wait_for(SCENARIOS[name](sizes, work, say), sizes.timeout + 60)
    except ScenarioFailed as exc:
        print(f"  FAILED after {time.monotonic() - started:.1f} s: {exc}", flush=True)
        print(f"  the scenario's logs and ledger are kept in {work}", flush=True)
        return False
    except TimeoutError:
        print(f"  FAILED: over {sizes.timeout + 60:g} s; logs in {work}", flush=True)
        return False
    except Exception:  # a scenario that could not run (no server binary...) fails alone
        print(f"  FAILED, the scenario could not run; logs in {work}:", flush=True)
        traceback.print_exc(file=sys.stdout)
        return False
    print(f"  ok in {time.monotonic() - started:.1f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return True


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="the issue's sizes (figures)")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SCENARIOS), help="run only these scenarios"
    )
    args = parser.parse_args(argv)
    sizes = LONG if args.long else SHORT
    names = args.only or list(SCENARIOS)
    failed = [name for name in names if not await run_one(name, sizes)]
    if failed:
        print(f"fault suite: {len(failed)} of {len(names)} scenarios failed: {', '.join(failed)}")
        return 1
    print(f"fault suite: all {len(names)} scenarios held")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
