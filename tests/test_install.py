"""What the wheel installs: two names, ``durable`` and ``durable_agents``, and a working command.

The repository keeps the design's top-level layout (``adapters/``, ``workflows/``,
``cli/``...); ``durable_agents/`` links them, and the wheel holds them under it, so
that an installed project does not claim names such as ``agents``, ``cli`` or
``worker`` in a user's environment. The wheel is built from this checkout and
unpacked into a virtual environment of its own, which takes the dependencies
from the test environment but not this checkout, and the ``durable`` command
is run there as a process.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
import site
import subprocess
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest
from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder

from durable_agents.examples.refund import RefundRequest
from tests.support.sources import parse

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("activities", "adapters", "agents", "cli", "examples", "worker", "workflows")
"""The design's top-level folders and ``worker.py``, installed under ``durable_agents``."""

pytestmark = pytest.mark.slow


def _build_wheel(source: Path, out: Path) -> Path:
    (built,) = WheelBuilder(str(source)).build(directory=str(out), versions=["standard"])
    return Path(built)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as installers build it: from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    (sdist,) = SdistBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.issym():  # durable_agents/worker.py; a folder is held itself
                target = posixpath.join(posixpath.dirname(member.name), member.linkname)
                linked = archive.getmember(posixpath.normpath(target))
                assert linked.isfile(), f"{member.name} links to a folder"
        archive.extractall(out, filter="data")
    unpacked = out / Path(sdist).name.removesuffix(".tar.gz")
    return _build_wheel(unpacked, out)


def _files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def test_a_wheel_from_the_checkout_holds_what_one_from_the_sdist_does(
    wheel: Path, tmp_path: Path
) -> None:
    assert _files(_build_wheel(ROOT, tmp_path)) == _files(wheel)


def test_the_wheel_installs_two_names_and_the_command_under_them(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read("durable_agents-0.1.0.dist-info/entry_points.txt").decode()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"durable", "durable_agents"}
    for linked in LINKED:
        inside = "durable_agents/worker.py" if linked == "worker" else f"durable_agents/{linked}/"
        assert any(name.startswith(inside) for name in names), f"{inside} is not in the wheel"
    assert "durable_agents/adapters/http/static/index.html" in names  # the web view's files
    assert "durable = durable_agents.cli:main" in entry_points


def test_every_link_points_at_the_top_level_folder_it_names() -> None:
    for linked in LINKED:
        name = f"{linked}.py" if linked == "worker" else linked
        link = ROOT / "durable_agents" / name
        assert link.is_symlink(), f"durable_agents/{name} must link to ../{name}"
        assert link.resolve() == (ROOT / name).resolve()


def _sources() -> list[tuple[str, Path]]:
    """The tracked Python files, each once: not through the links in ``durable_agents``."""
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    paths = [(line, ROOT / line) for line in listed.stdout.splitlines()]
    return [(line, path) for line, path in paths if path.exists() and not path.is_symlink()]


def test_no_module_imports_a_linked_folder_by_its_bare_name() -> None:
    """A bare ``import adapters`` works in a checkout but not once installed, and in a
    checkout it would load a second copy of every module (and register every step twice)."""
    bare = []
    for line, path in _sources():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            bare += [f"{line}:{node.lineno}: {m}" for m in modules if m.split(".")[0] in LINKED]
    assert bare == [], "import these as durable_agents.<name>"


def test_no_string_names_a_module_of_a_linked_folder_by_its_bare_name() -> None:
    """Module names in strings (``DURABLE_AGENT_MODULES``, ``python -m``, plugin
    arguments, logger names) are imported too, so they follow the same rule; a line
    saying ``bare on purpose`` tests the refusal of such a name."""
    module = re.compile(r"(activities|adapters|agents|examples|workflows)(\.[a-z_]+)+")
    bare = []
    for line, path in _sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        bare += [
            f"{line}:{node.lineno}: {node.value}"
            for node in ast.walk(parse(path))
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(module.fullmatch(word) for word in re.split(r"[\s,]+", node.value))
            and "bare on purpose" not in lines[node.lineno - 1]
        ]
    assert bare == [], "name these modules durable_agents.<name>"


def test_the_installed_command_runs_an_agent_with_no_checkout_on_the_path(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(purelib)
    # The dependencies come from the test environment; its editable install of this
    # checkout does not: only what the wheel holds is importable as the project.
    dependencies = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_", "PYTHON"))},
        "DURABLE_DATA": str(data),
        "DURABLE_AGENT_MODULES": "durable_agents.examples.refund",
    }
    script = (
        "import sys; from durable_agents.cli import main; "
        "sys.argv[0] = 'durable'; sys.exit(main())"
    )  # what the installed console script does

    def durable(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-I", "-c", script, *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    where = subprocess.run(
        [python, "-I", "-c", "import durable_agents.adapters as a, durable as d; "
         "print(a.__file__); print(d.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(line.startswith(str(purelib)) for line in where.stdout.split()), where.stdout
    bare = subprocess.run(
        [python, "-I", "-c", "import adapters"], cwd=tmp_path, env=env, capture_output=True
    )
    assert bare.returncode != 0, "the wheel must not install a top-level 'adapters'"

    # A local run executes in the command that starts it, up to the reviewer's decision.
    request = RefundRequest(order_id="A-1001", amount_cents=1200, reason="arrived broken")
    runner = subprocess.Popen(
        [python, "-I", "-c", script, "run", "refund_review", "--input",
         request.model_dump_json(), "--run-id", "r-1", "--local"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "r-1" not in (listed := durable("approvals", "--local")).stdout:
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
        approved = durable("approve", "r-1", "--by", "ana", "--local")
        assert approved.returncode == 0, approved.stderr
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, err
    assert "refunded" in out, out
    status = durable("status", "r-1", "--local")
    assert "completed" in status.stdout, status.stdout

    env["DURABLE_AGENT_MODULES"] = "examples.refund"  # bare on purpose: the name before
    renamed = durable("run", "refund_review", "--input", request.model_dump_json(), "--local")
    assert renamed.returncode != 0
    assert "name it 'durable_agents.examples.refund'" in renamed.stderr
