"""The shape of the house: layered imports without cycles (import-linter, the contracts in
pyproject.toml), modules and functions of readable size, nothing importing the command line."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aafcore"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Functions allowed to be longer, and why ("path:name": reason); none today.
LONG_FUNCTIONS: dict[str, str] = {}


def _lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache", str(ROOT / "pyproject.toml")], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


def test_the_import_contracts_hold():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.slow
def test_the_import_contracts_catch_an_upward_import_and_a_cycle(tmp_path):
    """The check can fail: a copy of the package with a foundation module importing the trainer
    (upward, and a cycle through it) breaks both contracts."""
    shutil.copytree(PACKAGE, tmp_path / "aafcore", ignore=shutil.ignore_patterns("__pycache__"))
    metrics = tmp_path / "aafcore" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nfrom aafcore import train as _train  # noqa: E402\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = _lint_imports(tmp_path, env)
    assert run.returncode != 0
    assert "aafcore.metrics -> aafcore.train" in run.stdout, run.stdout[-3000:]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_modules_are_short():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                key = f"{path.relative_to(ROOT)}:{node.name}"
                if lines > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                    long[key] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them or say why in LONG_FUNCTIONS): {long}"


def test_nothing_imports_the_command_line():
    for path in _modules():
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "aafcore.cli" or n.startswith("aafcore.cli.") for n in names), path
