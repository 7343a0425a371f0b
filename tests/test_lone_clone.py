"""A user clones this repository alone: nothing in it may read outside its own tree."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from tests.support.sources import parse

ROOT = Path(__file__).resolve().parents[1]


def _tracked_python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / line for line in listed.stdout.splitlines() if (ROOT / line).exists()]


def _escapes(path: Path) -> list[str]:
    """``Path(__file__)...parents[k]`` reaching above the repository's root."""
    depth = len(path.relative_to(ROOT).parts) - 1  # parents[depth - 1] is the root's child
    found = []
    for node in ast.walk(parse(path)):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
            and node.slice.value > depth
        ):
            found.append(f"line {node.lineno}: parents[{node.slice.value}]")
    return found


def test_no_module_reads_outside_the_repository() -> None:
    files = _tracked_python_files()
    assert len(files) > 50
    escapes = {str(p.relative_to(ROOT)): e for p in files if (e := _escapes(p))}
    assert escapes == {}, "these paths leave the repository; keep a copy inside it instead"


def test_the_golden_vectors_live_in_the_tests() -> None:
    assert (ROOT / "tests" / "golden" / "canonical_json.json").is_file()
