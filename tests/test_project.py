"""The project itself: dependencies declared twice agree, the console script, the benchmark."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [r for r in extra if not r.startswith("aafcore")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip
    assert sorted(r for r in pip if r != "-e .") == sorted(declared)
    assert "torch==2.14.1" in declared and "torchvision==0.29.1" in declared
    assert "jupyter-book>=1,<2" in declared


def _aaf():
    exe = Path(sys.executable).parent / "aaf"
    return str(exe) if exe.exists() else shutil.which("aaf")


@pytest.mark.slow
def test_console_script():
    exe = _aaf()
    assert exe, "the aaf console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "info" in out.stdout
    info = subprocess.run([exe, "info"], capture_output=True, text=True)
    assert info.returncode == 0 and "torch: 2." in info.stdout
    bad = subprocess.run([exe, "frobnicate"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "frobnicate" in bad.stderr


@pytest.mark.slow
def test_benchmark_runs_and_compares(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "aaf_loss.py"), "--device", "cpu",
                          "--shapes", "2,4,12,12", "--reps", "1", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import json
    row = json.loads(out.read_text())["results"][0]
    assert row["shape"] == [2, 4, 12, 12] and row["loss_rel_diff"] < 1e-4
    assert row["naive_ms"] > 0 and row["aafcore_ms"] > 0 and row["naive_peak_mib"] > 0
    assert row["provenance"]["torch"]


@pytest.mark.slow
def test_cuda_check_script_runs_its_checks_on_the_cpu(tmp_path):
    """benchmarks/cuda_check.py (run on GPU machines) keeps working: here it compares the CPU
    float32 path with float64 and runs every method's trainer steps and a smoke run."""
    import json

    out = tmp_path / "check.json"
    env = {**__import__("os").environ, "AAF_DATA": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cuda_check.py"), "--device", "cpu",
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["ok"] and {r["loss"] for r in report["losses"]} == {"affinity", "aaf"}
    assert all(r["loss_rel_diff"] < 1e-4 and r["grad_logits_rel_diff"] < 1e-4 for r in report["losses"])
    assert [r["method"] for r in report["trainer_steps"]] == ["baseline", "affinity", "aaf", "emb", "gan",
                                                              "aaf_frozen", "aaf_min"]
    assert all(r["parameters_changed"] for r in report["trainer_steps"])


def test_licence_and_citation_match_the_package():
    """LICENSE, CITATION.cff and the book's BibTeX say the same licence and version as pyproject."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and str(cff["version"]) == project["version"]
    assert cff["preferred-citation"]["year"] == 2018 and len(cff["preferred-citation"]["authors"]) == 4
    intro = "".join(c.source for c in nbformat.read(ROOT / "notebooks" / "intro.ipynb", as_version=4).cells)
    assert f"version = {{{project['version']}}}" in intro and "@inproceedings{ke2018adaptive" in intro
