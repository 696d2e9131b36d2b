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
            nb = json.loads(job.output.read_text())
            assert nb["metadata"]["aafcore"]["parameters"] == job.parameters
            # the book's treatment: the parameters cell shows the values, papermill's cell is gone
            params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
            assert len(params) == 1 and f"x = {i}" in "".join(params[0]["source"]).split("\n")
            assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


@pytest.mark.slow
def test_jobs_run_side_by_side_each_in_a_slot(template, tmp_path):
    jobs = _jobs(template, tmp_path, 4, failing=2)
    seen = []
    start = time.perf_counter()
    failures = run_stage(jobs, Launcher(jobs=2), lambda job, failure, seconds: seen.append((job.name, failure, seconds)))
    elapsed = time.perf_counter() - start
    assert sorted(name for name, _, _ in seen) == [f"job {i}" for i in range(4)]
    # each job reports its own wall time: together more than the stage took, as two ran at once
    assert all(0 < seconds < elapsed for _, _, seconds in seen) and sum(s for _, _, s in seen) > elapsed
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
                         lambda job, failure, seconds: None)
    _check(failures, jobs, failing=1)
    assert list((tmp_path / ".submitit").glob("*_log.out")) and time.time() - start < 300


@pytest.mark.slow
def test_aaf_reproduce_with_two_jobs(smoke_data, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["reproduce", "--profile", "smoke", "--results", str(results), "--data-root", str(smoke_data),
            "--only", "pspnet-baseline-s0,pspnet-baseline-s1", "--jobs", "2", "--no-reports", "--no-book"]
    assert main(args) == 0
    out = capsys.readouterr().out
    runs = results / "smoke" / "synthetic"
    assert not (runs / "pspnet-baseline-s2").exists()
    for seed in (0, 1):
        assert json.loads((runs / f"pspnet-baseline-s{seed}" / "metrics.json").read_text())["config"]["seed"] == seed
    assert (runs / "pspnet-baseline-s0" / "eval" / "val-source-crf" / "metrics.json").is_file()
    assert "results_pixel" not in out and out.count(": done in") == len(list(runs.rglob("*.ipynb")))
    assert main(args) == 0 and "running" not in capsys.readouterr().out   # all finished: skipped


# --------------------------------------------------------------------------- executed copies for the book

_PARAMETERS = ('profile = "smoke"          # smoke (seconds), cpu (2 cores, ~2 min) — or gpu\n'
               'seed = 0\n'
               'overrides = {"steps": 10,\n'
               '             "lr": 0.1}    # other fields\n'
               'data_root = None           # None: generate it')
_INJECTED = '# Parameters\nprofile = "cpu"\nseed = 3\noverrides = {}\nextra = [1, 2]\n'


def _executed_copy(old_tags: bool = False):
    """A notebook as papermill leaves it: the template's parameters cell, then its injected cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"),
                nbformat.v4.new_code_cell(_PARAMETERS, metadata={"tags": ["parameters"] + (["remove-cell"] if old_tags else [])}),
                nbformat.v4.new_code_cell(_INJECTED, metadata={"tags": ["injected-parameters"] + (["hide-input"] if old_tags else [])}),
                nbformat.v4.new_code_cell("print(profile, seed)")]
    nb.metadata["aafcore"] = {"template": "notebooks/page.ipynb", "template_sha256": "0", "parameters": {}}
    return nb


@pytest.mark.parametrize("old_tags", [False, True])
def test_the_parameters_cell_shows_the_values_the_copy_ran_with(old_tags):
    from aafcore.launch import clean_executed_copy

    nb = _executed_copy(old_tags)
    assert clean_executed_copy(nb, Path("page.ipynb"))
    assert len(nb.cells) == 3 and not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    cell = nb.cells[1]
    assert cell.metadata["tags"] == ["parameters"]   # shown: no remove-cell / hide-input
    lines = cell.source.split("\n")
    assert lines[0] == "# set for this copy: profile, seed, overrides, extra"
    # values substituted, each comment kept in its column (the one after a multi-line value too)
    assert lines[1] == 'profile = "cpu"            # smoke (seconds), cpu (2 cores, ~2 min) — or gpu'
    assert lines[2] == "seed = 3"
    assert lines[3] == "overrides = {}             # other fields"
    assert lines[4] == "data_root = None           # None: generate it"
    assert lines[5] == "extra = [1, 2]"            # injected but not a template parameter: appended
    namespace: dict = {}
    exec(cell.source, namespace)
    assert (namespace["profile"], namespace["seed"], namespace["overrides"], namespace["data_root"],
            namespace["extra"]) == ("cpu", 3, {}, None, [1, 2])
    again = nbformat.from_dict(json.loads(json.dumps(nb)))
    assert not clean_executed_copy(again, Path("page.ipynb")) and again == nb   # idempotent


def test_a_copy_run_without_parameters_shows_the_template_defaults():
    from aafcore.launch import fold_parameter_cells

    nb = _executed_copy(old_tags=True)
    del nb.cells[2]
    assert fold_parameter_cells(nb) and nb.cells[1].source == _PARAMETERS
    assert nb.cells[1].metadata["tags"] == ["parameters"] and not fold_parameter_cells(nb)


def test_papermill_paths_become_relative_and_widgets_go():
    from aafcore.launch import ROOT, clean_copies, clean_executed_copy

    nb = _executed_copy()
    nb.metadata["papermill"] = {"input_path": "/elsewhere/checkout/notebooks/page.ipynb",
                                "output_path": str(ROOT / "book" / "page.running.ipynb"), "cwd": str(ROOT),
                                "parameters": {"profile": "cpu"}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"a": {}}}}
    widget = "application/vnd.jupyter.widget-view+json"
    nb.cells[3].outputs = [
        nbformat.v4.new_output("display_data", {widget: {"model_id": "a"}, "text/plain": "  0%|  | 0/8"}),
        nbformat.v4.new_output("display_data", {widget: {"model_id": "b"}, "text/html": "<b>kept</b>"}),
        nbformat.v4.new_output("stream", name="stdout", text="cpu 3\n")]
    assert clean_executed_copy(nb, ROOT / "book" / "page.ipynb")
    pm = nb.metadata["papermill"]
    assert (pm["input_path"], pm["output_path"], pm["cwd"]) == ("notebooks/page.ipynb", "book/page.ipynb", ".")
    assert pm["parameters"] == {"profile": "cpu"} and "widgets" not in nb.metadata
    outs = nb.cells[2].outputs   # the injected cell is gone
    assert [o.output_type for o in outs] == ["display_data", "stream"] and outs[0].data == {"text/html": "<b>kept</b>"}
    assert "/elsewhere" not in json.dumps(nb) and str(ROOT) not in json.dumps(nb)
    assert not clean_executed_copy(nb, ROOT / "book" / "page.ipynb")


def test_clean_copies_rewrites_executed_copies_and_leaves_templates(tmp_path):
    from aafcore.launch import clean_copies

    copy, template = tmp_path / "copy.ipynb", tmp_path / "template.ipynb"
    nbformat.write(_executed_copy(), copy)
    plain = _executed_copy()
    del plain.metadata["aafcore"]
    nbformat.write(plain, template)
    before = template.read_text()
    assert clean_copies([copy, template]) == [copy]
    assert len(nbformat.read(copy, as_version=4).cells) == 3 and template.read_text() == before
    assert clean_copies([copy]) == []
