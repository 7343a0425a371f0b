"""The fault suite's own checks: what counts as a lost run, a step run twice, a recovery."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench import faults
from bench._faults_ledger import Entry, Kill, Ledger, check, read_ledger
from bench._faults_local import ScenarioFailed, in_time, no_exits
from bench._faults_procs import Processes


def _ledger(*lines: tuple[str, str, int, int, float]) -> Ledger:
    return Ledger([Entry(*line) for line in sorted(lines, key=lambda line: line[4])])


def _step(
    run: str, step: int, pid: int, start: float, done: float | None = None
) -> list[tuple[str, str, int, int, float]]:
    lines = [("start", run, step, pid, start)]
    if done is not None:
        lines.append(("done", run, step, pid, done))
    return lines


def test_a_clean_ledger_holds_every_invariant() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0, 1.5), *_step("r", 1, 1, 2.0, 2.5))
    report = check(ledger, ["r"], 2)
    assert report.problems == []
    assert (report.runs, report.steps, report.attempts, report.duplicates) == (1, 2, 2, [])


def test_a_step_missing_from_the_ledger_is_a_lost_run() -> None:
    report = check(_ledger(*_step("r", 0, 1, 1.0, 1.5)), ["r", "s"], 1)
    assert report.problems == ["run s step 0 never started: the run lost a step"]


def test_a_step_whose_last_attempt_never_finished_is_reported() -> None:
    report = check(_ledger(*_step("r", 0, 1, 1.0)), ["r"], 1)
    assert report.problems == ["run r step 0: its last attempt (process 1) never finished"]


def test_a_step_run_again_after_its_process_was_killed_mid_step_is_allowed() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0), *_step("r", 0, 2, 5.0, 5.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0)])
    assert report.problems == []
    assert report.duplicates == [("r", 0, False)]
    assert report.recoveries == [3.0]  # from the kill to the run's next line


def test_a_step_that_finished_but_was_not_recorded_before_the_kill_is_counted_apart() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0, 1.5), *_step("r", 0, 2, 5.0, 5.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0)])
    assert report.problems == []
    assert report.duplicates == [("r", 0, True)]
    assert report.unrecorded == [0.5]  # it ended 0.5 s before the kill


def test_a_step_run_twice_by_a_process_never_killed_breaks_the_invariant() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0, 1.5), *_step("r", 0, 2, 5.0, 5.5))
    report = check(ledger, ["r"], 1)
    assert len(report.problems) == 1
    assert "was not in flight at a kill (never killed)" in report.problems[0]


def test_a_step_started_before_its_attempt_was_killed_is_two_attempts_at_once() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0), *_step("r", 0, 2, 1.5, 2.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0)])
    assert len(report.problems) == 1
    assert "two attempts at once" in report.problems[0]


def test_a_kill_before_the_attempt_started_does_not_explain_a_rerun() -> None:
    ledger = _ledger(*_step("r", 0, 1, 3.0, 3.5), *_step("r", 0, 2, 5.0, 5.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0, dead_at=2.1)])
    assert "dead at 2.100, before it" in report.problems[0]


def test_an_attempt_started_as_the_signal_was_on_its_way_was_in_flight() -> None:
    # The time is taken before the signal; a loaded machine may run the process a little
    # longer. Until it was reaped, what it started was in flight.
    ledger = _ledger(*_step("r", 0, 1, 2.05), *_step("r", 0, 2, 5.0, 5.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0, dead_at=2.1)])
    assert report.problems == []
    assert report.recoveries == [3.0]


def test_a_server_outage_explains_a_rerun_of_any_attempt_in_flight() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0, 1.5), *_step("r", 0, 1, 5.0, 5.5))
    assert check(ledger, ["r"], 1, outages=[(2.0, 4.0)]).problems == []
    # Started while the server was stopping: its outcome may be lost too.
    assert check(ledger, ["r"], 1, outages=[(0.5, 4.0)]).problems == []
    assert check(ledger, ["r"], 1, outages=[(6.0, 8.0)]).problems != []
    assert check(ledger, ["r"], 1, outages=[(0.1, 0.5)]).problems != []


def test_a_kill_of_a_process_holding_nothing_is_counted_idle() -> None:
    ledger = _ledger(*_step("r", 0, 1, 1.0, 1.5))
    report = check(ledger, ["r"], 1, [Kill(pid=1, at=2.0), Kill(pid=3, at=2.5)])
    assert (report.recoveries, report.idle_kills) == ([], 2)  # r had finished


def test_a_torn_ledger_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.txt"
    path.write_text("start r 0 1 1.0\ndone r 0")
    with pytest.raises(ValueError, match=r"ledger.txt:2: not a ledger line"):
        read_ledger(path)


def test_a_process_that_exits_by_itself_fails_the_scenario_with_its_log(tmp_path: Path) -> None:
    with Processes(tmp_path) as processes:
        process = processes.start(
            "worker", [sys.executable, "-c", "print('cannot start'); raise SystemExit(3)"], {}
        )
        process.wait(timeout=30)
        with pytest.raises(ScenarioFailed, match=r"(?s)worker-1 exited by itself with 3.*cannot"):
            no_exits(processes)


def test_a_scenario_over_its_time_fails_saying_what_was_left() -> None:
    with pytest.raises(ScenarioFailed, match=r"timed out after 1 s: 3 runs still active"):
        in_time(time.monotonic() - 2, 1.0, "3 runs still active")


def test_processes_left_running_are_killed_on_leaving(tmp_path: Path) -> None:
    with Processes(tmp_path) as processes:
        process = processes.start(
            "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}
        )
    assert process.poll() is not None


async def test_the_suite_exits_1_naming_a_failed_scenario(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def broken(sizes: faults.Sizes, work: Path, say: faults.Say) -> None:
        say("ran")
        raise ScenarioFailed("run x step 0 never started: the run lost a step")

    async def fine(sizes: faults.Sizes, work: Path, say: faults.Say) -> None:
        say("ran")

    async def unable(sizes: faults.Sizes, work: Path, say: faults.Say) -> None:
        raise RuntimeError("no usable PostgreSQL binaries: install the Debian package")

    scenarios = {"broken": broken, "unable": unable, "fine": fine}
    monkeypatch.setattr(faults, "SCENARIOS", scenarios)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # failed scenarios keep their logs
    assert await faults.main(["--only", "broken", "unable", "fine"]) == 1
    out = capsys.readouterr().out
    assert "FAILED after" in out
    assert "run x step 0 never started" in out
    assert "FAILED, the scenario could not run" in out
    assert "RuntimeError: no usable PostgreSQL binaries" in out
    assert "fault suite: 2 of 3 scenarios failed: broken, unable" in out
    assert await faults.main(["--only", "fine"]) == 0
