#!/usr/bin/env python3
"""Project tasks, runnable with nothing but Python 3.11:

    python3 dev.py demo    run the example agent on the embedded Temporal server
    python3 dev.py test    lint, type-check and run the whole test suite
    python3 dev.py bench   run the benchmarks
    python3 dev.py faults  run the fault suite, short form (``--long``: the README's figures;
                           ``--only NAME``: one scenario)

Each task creates ``.venv`` on first use and installs the project into it,
reinstalling only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"


def _ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by any python3
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing the project and its development tools", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def _run(*args: str) -> int:
    return subprocess.run([str(PYTHON), *args], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    tasks = {"demo", "test", "bench", "faults"}
    if len(argv) < 1 or argv[0] not in tasks:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    _ensure_venv()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    if task == "demo":
        return _run("-m", "durable_agents.examples.demo", *rest)
    if task == "faults":
        return _run("-m", "bench.faults", *rest)
    if task == "bench":
        for bench in (
            "bench.store_throughput",
            "bench.temporal_overhead",
            "bench.llm_overhead",
            "bench.conversation_history",
        ):
            print(f"$ python -m {bench}", flush=True)
            code = _run("-m", bench, *rest)
            if code:
                return code
        return 0
    for step in (
        ("-m", "ruff", "check", "."),
        ("-m", "ruff", "format", "--check", "."),
        ("-m", "mypy"),
        ("-m", "pytest", *rest),
    ):
        print("$ python " + " ".join(step), flush=True)
        code = _run(*step)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
