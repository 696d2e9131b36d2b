"""Batch reproduction (``aaf reproduce``): the plan, executing notebooks, skipping, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from aafcore.reproduce import (EVALUATIONS, REPORTS, RUNS, SMOKE_TUTORIAL, STUDY_PAGES, STUDY_REPORTS, book_notebooks,
                               nbval_notebooks, plan)

ROOT = Path(__file__).resolve().parent.parent


def test_plan_covers_every_table(smoke_data, tmp_path):
    jobs = plan("smoke", results_root=tmp_path, data_root=smoke_data)
    kinds = [j.kind for j in jobs]
    n_runs = sum(len(r.seeds) for r in RUNS)
    assert n_runs == 16 and kinds.count("train") == n_runs
    assert kinds == sorted(kinds, key=["train", "evaluate", "report"].index)   # runs, evaluations, reports
    names = {j.name for j in jobs}
    for seed in (0, 1, 2):
        for method in ("baseline", "affinity", "aaf"):
            assert f"train pspnet-{method}-s{seed}" in names
            assert f"evaluate pspnet-{method}-s{seed} test-source-ms" in names     # Tables 4-5
            assert f"evaluate pspnet-{method}-s{seed} val-shifted" in names        # Table 11
        assert f"evaluate pspnet-baseline-s{seed} val-source-crf" in names        # CRF row
    assert {"train pspnet-aaf-k3-s0", "train pspnet-aaf-k3_5-s0", "train fcn-aaf-s0"} <= names   # Table 10, FCN
    # the study's pages are the book's (they read results/study), not a smoke reproduction's
    assert [j.name for j in jobs if j.kind == "report"] == [r for r in REPORTS if r not in STUDY_REPORTS]
    book = [j for j in plan("cpu") if j.kind == "report"]
    assert [j.name for j in book] == list(REPORTS) + [f"study/{p}" for p in STUDY_PAGES]
    assert all(j.parameters["profile"] == "study" and j.output.parent.name == "study" for j in book[len(REPORTS):])
    assert len([j for j in jobs if j.kind == "evaluate"]) == 25
    # results notebooks of a non-cpu profile never overwrite the book's
    assert all(tmp_path in j.output.parents for j in jobs)
    only = plan("smoke", results_root=tmp_path, data_root=smoke_data, only="pspnet-gan-s0")
    assert [j.name for j in only if j.kind != "report"] == ["train pspnet-gan-s0", "evaluate pspnet-gan-s0 test-source-ms",
                                                            "evaluate pspnet-gan-s0 val-shifted"]


def test_every_committed_run_and_evaluation_is_finished_under_the_current_code(monkeypatch):
    """`make reproduce` on a fresh clone skips every training and evaluation: each committed result
    records the config / evaluation hash the current code computes, and each executed notebook
    copy comes from the current template with the planned parameters."""
    monkeypatch.chdir(ROOT)   # `make reproduce` plans with results_root "results", relative to the root
    jobs = [j for j in plan("cpu") if j.kind != "report"]
    assert len(jobs) == 41
    assert [j.name for j in jobs if not j.finished()] == []


def _reproduce(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "aafcore.cli", "reproduce", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_reproduce_runs_skips_and_reports_a_failing_cell(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    results = tmp_path / "results"
    args = ["--profile", "smoke", "--results", str(results), "--data-root", str(data),
            "--only", "pspnet-baseline-s0", "--no-book"]
    first = _reproduce(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[1/13] train pspnet-baseline-s0" in first.stdout and "[13/13] tutorial" in first.stdout
    run = results / "smoke" / "synthetic" / "pspnet-baseline-s0"
    executed = nbformat.read(run / "train.ipynb", as_version=4)
    assert executed.metadata["aafcore"]["parameters"]["method"] == "baseline"
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    # the book shows the template's parameters cell with the values the copy ran with folded in
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert ["parameters"] in tags and not any("injected-parameters" in t for t in tags)
    params = next(c.source for c in executed.cells if "parameters" in c.metadata.get("tags", []))
    assert 'method = "baseline"' in params and "# baseline | affinity" in params
    assert (run / "eval" / "val-source-crf" / "evaluate.ipynb").is_file()
    assert (run / "eval" / "test-source-ms" / "metrics.json").is_file()
    reports = results / "smoke" / "synthetic" / "reports"
    assert sorted(p.stem for p in reports.glob("*.ipynb")) == sorted(set(REPORTS) - set(STUDY_REPORTS))
    # the smoke profile's tutorial: the smaller toy experiment, whose numbers the page shows
    tutorial = nbformat.read(reports / "tutorial.ipynb", as_version=4)
    assert tutorial.metadata["aafcore"]["parameters"] == SMOKE_TUTORIAL
    assert "seeds = (0, 1), steps = 12" in "".join(o.get("text", "") for c in tutorial.cells for o in c.get("outputs", []))

    second = _reproduce(*args)
    assert second.returncode == 0 and second.stdout.count("finished, skipped") == 13, second.stdout

    # a corrupt training image: the rerun of that run fails in the training cell, is named, the
    # command exits 1, and everything that was there stays
    metrics_before = (run / "eval" / "val-shifted" / "metrics.json").read_text()
    (run / "metrics.json").unlink()
    (run / "checkpoint.pt").unlink()   # else the rerun continues from the final checkpoint: no training step
    label = sorted((data / "SegmentationClass").glob("train_*.png"))[0]
    label.write_bytes(label.read_bytes()[:40])
    third = _reproduce(*args)
    assert third.returncode == 1
    assert "train pspnet-baseline-s0: notebook notebooks/train.ipynb failed in cell" in third.stderr
    assert label.name in third.stderr
    assert (run / "train.ipynb").is_file() and (run / "train.failed.ipynb").is_file()
    assert (run / "eval" / "val-shifted" / "metrics.json").read_text() == metrics_before
    assert "[13/13] tutorial: finished, skipped" in third.stdout


def test_nbval_covers_the_training_notebook_and_the_book():
    listed = nbval_notebooks()
    assert listed[:2] == [ROOT / "notebooks" / "train.ipynb", ROOT / "notebooks" / "evaluate.ipynb"]
    assert set(book_notebooks()) <= set(listed)
    for template in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(template, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), template.name
    train = nbformat.read(ROOT / "notebooks" / "train.ipynb", as_version=4)
    params = next(c for c in train.cells if "parameters" in c.metadata.get("tags", []))
    assert 'profile = "smoke"' in params.source


@pytest.mark.slow
def test_reproduce_rejects_bad_input_in_one_line(tmp_path):
    for args, needle in ((["--profile", "huge"], "huge"), (["--data-root", str(tmp_path / "nope")], "nope")):
        r = _reproduce(*args, "--results", str(tmp_path / "r"), "--no-book")
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aaf: error:") and needle in lines[0]


def test_the_study_pages_go_stale_when_a_study_result_lands(tmp_path):
    """The pages that read results/study carry a digest of its results: a new or changed metrics.json
    changes it, and a copy executed on other results is not finished (`make reproduce` re-runs it)."""
    from aafcore.reproduce import results_digest

    tree = tmp_path / "study" / "synthetic"
    (tree / "pspnet-baseline-s0").mkdir(parents=True)
    (tree / "pspnet-baseline-s0" / "metrics.json").write_text('{"miou": 0.4}')
    before = results_digest(tree)
    (tree / "pspnet-baseline-s0" / "train_log.jsonl").write_text("{}\n")     # not a result: same digest
    assert results_digest(tree) == before
    (tree / "pspnet-aaf-s0" / "eval" / "val-source").mkdir(parents=True)
    (tree / "pspnet-aaf-s0" / "eval" / "val-source" / "metrics.json").write_text('{"miou": 0.5}')
    landed = results_digest(tree)
    (tree / "pspnet-baseline-s0" / "metrics.json").write_text('{"miou": 0.41}')
    assert len({before, landed, results_digest(tree)}) == 3

    book = {j.name: j for j in plan("cpu") if j.kind == "report"}
    assert book["study/results_pixel"].inputs == book["intro"].inputs == results_digest(ROOT / "results" / "study" / "synthetic")
    assert book["results_pixel"].inputs is None                      # the v1 pages read results/cpu
    job = book["intro"]
    copy = tmp_path / "intro.ipynb"
    meta = {"template_sha256": hashlib.sha256(job.template.read_bytes()).hexdigest()[:16],
            "parameters": job.parameters, "inputs": job.inputs}
    copy.write_text(json.dumps({"metadata": {"aafcore": meta}, "cells": []}))
    stale = dataclasses.replace(job, output=copy)
    assert stale.finished()
    assert not dataclasses.replace(stale, inputs="0" * 16).finished()


def test_every_book_page_is_up_to_date_with_its_template_and_the_committed_results(monkeypatch):
    """Every executed page of the book comes from its current template, with the planned parameters,
    and the study's pages from the committed study results: no page shows numbers older than results/."""
    monkeypatch.chdir(ROOT)
    assert [j.name for j in plan("cpu") if j.kind == "report" and not j.finished()] == []
