"""Issue 14's launcher: the reproduction's jobs one at a time, side by side, or through submitit.

The stage tests run a tiny notebook (it records when it ran and with which environment) instead
of a training, so that they test the orchestration: every job runs once, N at a time, each in a
slot of its own, and a failing job is reported with its cell while the others go on.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from aafcore.cli import main
from aafcore.launch import Job, Launcher, run_stage

_CELLS = [
    ("x = 0\nout = ''\nfail = False", ["parameters"]),
    ("import json, os, time\nstart = time.time()\ntime.sleep(2)\n"
     "assert not fail, 'this job was told to fail'\n"
     "json.dump({'x': x, 'start': start, 'end': time.time(), 'threads': os.environ.get('OMP_NUM_THREADS'),\n"
     "           'pid': os.getpid()}, open(out, 'w'))", []),
]


@pytest.fixture
def template(tmp_path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in _CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "job.ipynb"
    nbformat.write(nb, path)
    return path


def _jobs(template: Path, tmp_path: Path, n: int, failing: int | None = None) -> list[Job]:
    return [Job("train", f"job {i}", template, tmp_path / f"out{i}" / "job.ipynb",
                {"x": i, "out": str(tmp_path / f"record{i}.json"), "fail": i == failing}) for i in range(n)]


def test_a_job_travels_as_json():
    job = Job("evaluate", "evaluate x", Path("/a/t.ipynb"), Path("/b/o.ipynb"), {"split": "test", "crf": True},
              Path("/b/metrics.json"), ("evaluation_hash", "abc"))
    assert Job.from_json(job.to_json()) == job
    with pytest.raises(ValueError, match="--jobs"):
        Launcher(jobs=0)
    with pytest.raises(ValueError, match="unknown executor"):
        Launcher(executor="kubernetes")


def _check(failures: list, jobs: list[Job], failing: int | None) -> None:
    for i, (job, failure) in enumerate(zip(jobs, failures)):
        if i == failing:
            assert failure.startswith(f"job {i}: notebook ") and "this job was told to fail" in failure, failure
            assert not job.output.exists() and job.output.with_name("job.failed.ipynb").exists()
        else:
            assert failure is None and job.output.exists()
            meta = json.loads(job.output.read_text())["metadata"]["aafcore"]
            assert meta["parameters"] == job.parameters


@pytest.mark.slow
def test_jobs_run_side_by_side_each_in_a_slot(template, tmp_path):
    jobs = _jobs(template, tmp_path, 4, failing=2)
    seen = []
    failures = run_stage(jobs, Launcher(jobs=2), lambda job, failure: seen.append((job.name, failure)))
    assert sorted(name for name, _ in seen) == [f"job {i}" for i in range(4)]
    _check(failures, jobs, failing=2)
    records = [json.loads((tmp_path / f"record{i}.json").read_text()) for i in (0, 1, 3)]
    assert {r["threads"] for r in records} == {str(max(1, (os.cpu_count() or 1) // 2))}
    spans = sorted((r["start"], r["end"]) for r in records)
    overlapping = any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert overlapping, spans           # two jobs ran at the same time
    assert len({r["pid"] for r in records}) == 3


@pytest.mark.slow
def test_jobs_run_through_submitit(template, tmp_path):
    jobs = _jobs(template, tmp_path, 3, failing=1)
    start = time.time()
    failures = run_stage(jobs, Launcher(jobs=3, executor="submitit-local", folder=tmp_path / ".submitit"),
                         lambda job, failure: None)
    _check(failures, jobs, failing=1)
    assert list((tmp_path / ".submitit").glob("*_log.out")) and time.time() - start < 300


@pytest.mark.slow
def test_aaf_reproduce_with_two_jobs(smoke_data, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["reproduce", "--profile", "smoke", "--results", str(results), "--data-root", str(smoke_data),
            "--only", "pspnet-baseline-s", "--jobs", "2", "--no-reports", "--no-book"]
    assert main(args) == 0
    out = capsys.readouterr().out
    runs = results / "smoke" / "synthetic"
    for seed in (0, 1, 2):
        assert json.loads((runs / f"pspnet-baseline-s{seed}" / "metrics.json").read_text())["config"]["seed"] == seed
    assert (runs / "pspnet-baseline-s0" / "eval" / "val-source-crf" / "metrics.json").is_file()
    assert "results_pixel" not in out and out.count(": done in") == len(list(runs.rglob("*.ipynb")))
    assert main(args) == 0 and "running" not in capsys.readouterr().out   # all finished: skipped
