"""The book's tables and claims ledger, on small hand-made result trees (the tutorial's helpers:
test_tutorial.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aafcore import report

NAMES = ["sky", "ground", "pole", "wire"]
GROUPS = {"large": [0, 1], "thin": [2, 3]}


def _write(root: Path, run: str, *, base="pspnet", method="baseline", seed=0, kernel_sizes=(3, 5, 7),
           iou=(0.9, 0.8, 0.2, 0.1), tag=None, split="val", domain="source", crf=False, ks=None, pixel_accuracy=0.9):
    """One metrics.json: the run's own (tag None) or an evaluation's (``eval/<tag>``)."""
    iou = list(iou)
    metrics = {"iou": iou, "miou": float(np.mean(iou)), "pixel_accuracy": pixel_accuracy,
               "instance_iou": [None, None, iou[2] - 0.05, iou[3] - 0.05],
               "instance_miou": float(np.mean([iou[2] - 0.05, iou[3] - 0.05])),
               "boundary_recall": [v / 2 for v in iou], "mean_boundary_recall": float(np.mean(iou)) / 2,
               "boundary_precision": [0.5] * 4, "mean_boundary_precision": 0.5,
               "boundary_f": [0.4] * 4, "mean_boundary_f": 0.4}
    result = {"config": {"base": base, "method": method, "seed": seed, "kernel_sizes": list(kernel_sizes)},
              "config_hash": f"h-{run}", "class_names": NAMES, "class_groups": GROUPS,
              "evaluation": {"split": split, "domain": domain, "mode": "single-scale",
                             "inference": {"scales": [1.0], "flip": False, "crf": {"bi_w": 1} if crf else None}},
              "provenance": {"inference_seconds_per_image": 0.01, "crf_seconds_per_image": 0.05 if crf else None,
                             "data": {"spec": {"image_size": 128, "thin_width": 2.5}}},
              "metrics": metrics}
    if method == "aaf":
        result["aaf"] = {"effective_kernel_size": list(ks or [5.0, 4.5, 3.2, 3.4])}
    path = root / "cpu" / "synthetic" / run / ("metrics.json" if tag is None else f"eval/{tag}/metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


@pytest.fixture
def results(tmp_path) -> Path:
    """3 seeds of baseline / affinity / AAF with known mIoU, one GAN, CRF evaluations."""
    # baseline thin IoUs 0.20, 0.22, 0.18; AAF +0.10 on thin, +0.01 on large; affinity +0.001 (noise)
    for s, d in enumerate((0.0, 0.02, -0.02)):
        _write(tmp_path, f"pspnet-baseline-s{s}", seed=s, iou=(0.9, 0.8, 0.2 + d, 0.1 + d))
        _write(tmp_path, f"pspnet-baseline-s{s}", seed=s, iou=(0.91, 0.81, 0.2 + d, 0.1 + d), tag="val-source-crf",
               crf=True)
        _write(tmp_path, f"pspnet-aaf-s{s}", method="aaf", seed=s, iou=(0.91, 0.81, 0.3 + d, 0.2 + d),
               ks=[5.0 + d, 4.5, 3.2 + d, 3.4])
        _write(tmp_path, f"pspnet-affinity-s{s}", method="affinity", seed=s,
               iou=(0.9, 0.8, 0.2 - d + 0.001, 0.1 - d + 0.001))
    _write(tmp_path, "pspnet-gan-s0", method="gan", iou=(0.9, 0.8, 0.25, 0.15))
    _write(tmp_path, "pspnet-aaf-k3-s0", method="aaf", kernel_sizes=(3,), iou=(0.9, 0.8, 0.25, 0.15))
    return tmp_path


def test_load_results_rows_and_crf_method(results):
    df = report.load_results("cpu", "synthetic", results)
    assert len(df) == 3 * 4 + 2
    crf = df[df["tag"] == "val-source-crf"]
    assert set(crf["method"]) == {"crf"} and len(crf) == 3
    assert set(df[df["run"] == "pspnet-aaf-k3-s0"]["kernel_sizes"]) == {"3"}
    assert df.loc[df["run"] == "pspnet-baseline-s1", "iou/pole"].iloc[0] == pytest.approx(0.22)


def test_an_evaluation_of_val_source_takes_precedence_over_the_runs_own_metrics(results):
    _write(results, "pspnet-gan-s0", method="gan", iou=(0.5, 0.5, 0.5, 0.5), tag="val-source")
    df = report.load_results("cpu", "synthetic", results)
    gan = df[(df["method"] == "gan") & (df["tag"] == "val-source")]
    assert len(gan) == 1 and gan["miou"].iloc[0] == pytest.approx(0.5)


def test_method_table_means_std_and_groups(results):
    df = report.load_results("cpu", "synthetic", results)
    t = report.method_table(df, "iou", groups={"thin": ["pole", "wire"], "large": ["sky", "ground"]})
    assert list(t["method"]) == ["PSPNet", "GAN", "Affinity", "AAF"]      # the paper's row order
    base = t[t["method"] == "PSPNet"].iloc[0]
    assert base["pole"] == pytest.approx(20.0) and base["seeds"] == 3
    means = [np.mean((0.9, 0.8, 0.2 + d, 0.1 + d)) * 100 for d in (0.0, 0.02, -0.02)]
    assert base["mean"] == pytest.approx(np.mean(means))
    assert base["± std"] == pytest.approx(np.std(means, ddof=1))
    assert base["thin"] == pytest.approx(15.0) and base["large"] == pytest.approx(85.0)
    assert math.isnan(t[t["method"] == "GAN"]["± std"].iloc[0])
    k3 = report.method_table(df, "iou", methods=["aaf"], kernel_sizes="3")
    assert len(k3) == 1 and k3["seeds"].iloc[0] == 1 and k3["pole"].iloc[0] == pytest.approx(25.0)


def test_method_table_of_the_one_cell_boundary_metrics(results):
    """Results written before the one-cell metrics existed: every other table still renders, a
    one-cell table says what is missing; with the columns it is the table of those columns."""
    df = report.load_results("cpu", "synthetic", results)
    assert not any(c.endswith("_cell") or "_cell/" in c for c in df.columns)
    assert len(report.method_table(df, "boundary_recall")) == 4
    with pytest.raises(ValueError, match="no 'boundary_recall_cell' in these results"):
        report.method_table(df, "boundary_recall_cell")
    cell = df.assign(**{c.replace("boundary_recall", "boundary_recall_cell", 1): 2 * df[c] / 3
                        for c in df.columns if c.startswith(("boundary_recall/", "mean_boundary_recall"))})
    paper, one_cell = report.method_table(cell, "boundary_recall"), report.method_table(cell, "boundary_recall_cell")
    assert list(one_cell.columns) == list(paper.columns)
    np.testing.assert_allclose(one_cell[NAMES + ["mean"]].to_numpy(), 2 * paper[NAMES + ["mean"]].to_numpy() / 3)


def test_table_formats_floats_and_shows_missing_values_as_a_dash(results):
    df = report.load_results("cpu", "synthetic", results)
    shown = report.table(report.method_table(df, "instance_iou", groups={"thin": ["pole", "wire"]}), 3)
    gan = shown.loc[("PSPNet", "GAN")]                          # base and method are the index
    assert gan["± std"] == "–" and gan["sky"] == "–"            # one seed; stuff without instances (an en dash)
    assert gan["pole"] == "20.000" and gan["seeds"] == 1
    assert shown.columns[:3].tolist() == ["inst. mIoU", "± std", "seeds"] and shown.columns[3] == "thin"
    pixel = report.table(report.method_table(df, "iou", extra=["pixel_accuracy"]))
    assert "pixel acc." in pixel.columns and "pixel_accuracy" not in pixel.columns and pixel.columns[0] == "mIoU"
    summary, classes = (report.table(report.method_table(df, "iou", extra=["pixel_accuracy"]), part=p)
                        for p in ("summary", "classes"))
    assert summary.columns.tolist() == ["mIoU", "± std", "seeds", "pixel acc."]
    assert classes.columns.tolist() == ["mIoU", *NAMES] and classes.index.equals(summary.index)
    recall = report.method_table(df, "boundary_recall")                 # percent, like every table
    assert recall["mean"].iloc[0] == pytest.approx(100 * np.mean([0.9, 0.8, 0.2, 0.1]) / 2)


def test_paper_view_keeps_the_printed_values_and_fits_the_page():
    t8 = report.paper_view(8)                                   # per class: transposed, in percent, same digits
    assert t8.index[0] == "aero" and t8.loc["mean", ("PSPNet", "AAF")] == "60.6"
    assert report.paper_view(8, percent=False).loc["mean", ("PSPNet", "AAF")] == ".606"   # as printed
    assert report.paper_table(8).query("Method == 'AAF'")["mean"].iloc[0] == pytest.approx(0.606)
    t2 = report.paper_view(2)
    assert [b for b, _ in t2.columns] == ["FCN"] * 3 + ["PSPNet"] * 5       # the bases grouped
    t10 = report.paper_view(10)
    assert [k for _, k in t10.columns] == ["{3}", "{3, 5}", "{3, 5, 7}"]    # from the check marks
    t1 = report.paper_view(1)                                   # few columns: rows as printed
    assert t1.index.name == "method" and t1.loc["Our AAF", "Performance"] == "79.24"


def test_compare_gains_against_the_paper(results):
    df = report.load_results("cpu", "synthetic", results)
    g = report.compare_gains(df, 2).set_index(["base", "method"])
    paper = report.paper_table(2)
    p = paper[paper["base"] == "PSPNet"].set_index("Method")["mIoU"]
    assert g.loc[("PSPNet", "AAF"), "paper gain"] == pytest.approx(p["AAF"] - p["PSPNet"])
    ours = report.method_table(df, "iou").set_index("method")["mean"]
    assert g.loc[("PSPNet", "AAF"), "ours gain"] == pytest.approx(ours["AAF"] - ours["PSPNet"])
    assert math.isnan(g.loc[("FCN", "AAF"), "ours"])            # no FCN run: no number invented


def test_paper_tables_are_complete_and_numeric():
    for n in range(2, 12):
        t = report.paper_table(n)
        assert {"table_id", "dataset", "split", "metric", "base"} <= set(t.columns)
        assert (t["table_id"] == f"table{n}").all()
        mean = [c for c in t.columns if c in ("mIoU", "mean")]
        assert mean and pd.api.types.is_numeric_dtype(t[mean[0]])
    columns = list(report.paper_table(2).columns)
    assert columns[0] == "table_id" and "table" in columns and "table.1" not in columns  # VOC's class
    assert {"k = 3", "k = 5", "k = 7"} <= set(report.paper_table(10).columns)   # "$k = 3$" in the file
    with pytest.raises(ValueError, match="table 12"):
        report.paper_table(12)


@pytest.mark.parametrize("a, b, expected", [
    ([0.5, 0.51, 0.49], [0.4, 0.41, 0.39], "holds"),                # d = 0.1, se ~ 0.008
    ([0.4, 0.41, 0.39], [0.5, 0.51, 0.49], "does not hold"),        # opposite direction
    ([0.40, 0.45, 0.35], [0.39, 0.44, 0.34], "inconclusive"),        # d = 0.01 < 2 se
    ([0.5], [0.4], "inconclusive"),                                  # one seed: no verdict
    ([0.40, 0.40, 0.40], [0.40, 0.40, 0.40], "does not hold"),       # d = 0
])
def test_verdict_rules(a, b, expected):
    v, d, se = report.verdict(np.array(a), np.array(b))
    assert v == expected
    assert d == pytest.approx(np.mean(a) - np.mean(b))


def test_claims_ledger_verdicts_on_known_results(results):
    df = report.load_results("cpu", "synthetic", results)
    groups = {"thin": ["pole", "wire"], "large": ["sky", "ground"]}
    bench = {"median_ms_per_image": {"network_single_scale": 6.0, "crf": 50.0}}
    ledger = report.claims_ledger(df, groups, bench).set_index("id")
    assert ledger.loc["C2", "verdict"] == "holds"             # AAF +0.055 mIoU, se ~ 0.01
    assert ledger.loc["C1", "verdict"] == "inconclusive"      # affinity +0.001 with spread 0.02
    assert ledger.loc["C6", "verdict"] == "inconclusive"      # GAN has one seed
    assert ledger.loc["C8", "verdict"] == "holds"             # gain thin 0.10 vs large 0.01
    assert ledger.loc["C14", "verdict"] == "holds"            # thin sizes 3.2-3.4 < large 4.5-5.0
    assert ledger.loc["C19", "verdict"] == "holds"            # AAF 0.555 vs CRF 0.505
    assert ledger.loc["C20", "verdict"] == "holds"
    assert ledger.loc["C4", "verdict"] == "inconclusive"      # no FCN runs
    assert set(ledger["verdict"]) <= {"holds", "does not hold", "inconclusive"}


def test_claim_every_class_fails_when_one_class_gets_worse(results):
    df = report.load_results("cpu", "synthetic", results)
    groups = {"thin": ["pole", "wire"], "large": ["sky", "ground"]}
    ledger = report.claims_ledger(df, groups).set_index("id")
    # boundary recall = iou / 2: AAF is better on every class -> holds
    assert ledger.loc["C13", "verdict"] == "holds"
    for s in range(3):   # make AAF worse on "sky" in every seed
        _write(results, f"pspnet-aaf-s{s}", method="aaf", seed=s, iou=(0.5, 0.81, 0.3, 0.2))
    ledger = report.claims_ledger(report.load_results("cpu", "synthetic", results), groups).set_index("id")
    assert ledger.loc["C13", "verdict"] == "does not hold"


def test_load_results_rejects_a_missing_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        report.load_results("cpu", "synthetic", tmp_path)


def test_benchmark_and_boundary_notes_describe_the_results_they_read(results):
    df = report.load_results("cpu", "synthetic", results)
    info = report.class_info("cpu", "synthetic", results)
    assert info["benchmark"] == "v1" and info["image_size"] == 128
    note = report.benchmark_note(info, "cpu", "synthetic", results)
    assert note.startswith("**Benchmark v1, the `cpu` profile**") and "128 px images" in note
    assert "2 large (sky, ground), 2 thin (pole, wire)" in note and "appendix" in note
    sentence = report.boundary_note(df, info)
    assert "1.36 px on our 128 px images" in sentence and "0.17 of a logit cell" in sentence
    assert "much lower" in sentence and "one logit cell" not in sentence   # no one-cell metrics here
    cell = df.assign(mean_boundary_recall_cell=0.5, boundary_tolerance_px=8.0)
    assert "within one logit cell (8 px)" in report.boundary_note(cell, info)
    info_v2 = {**info, "benchmark": "v2", "image_size": 384}
    assert report.benchmark_note(info_v2, "study").startswith("**Benchmark v2, the study**")
    assert "much lower" not in report.boundary_note(df, info_v2)            # 4.07 px: half a cell


def test_training_cost_table_reads_each_runs_own_record(tmp_path):
    def run(name, method, step, seconds, resumed=0, **cfg):
        path = tmp_path / "study" / "synthetic" / name / "metrics.json"
        path.parent.mkdir(parents=True)
        config = {"base": "pspnet", "method": method, "kernel_sizes": [3, 5, 7], **cfg}
        path.write_text(json.dumps({"config": config, "overrides": cfg.pop("overrides", {}),
                                    "provenance": {"median_step_seconds": step, "train_seconds": seconds,
                                                   "resumed_from_step": resumed}}))
    run("pspnet-baseline-s0", "baseline", 1.0, 600)
    run("pspnet-baseline-s1", "baseline", None, 3, resumed=1500)       # resumed after its last step: no timing
    run("pspnet-aaf-s0", "aaf", 1.2, 720)
    run("pspnet-aaf-s1", "aaf", 1.4, 300, resumed=900)                 # its step time counts, its minutes do not
    run("pspnet-aaf-k3-s0", "aaf", 9.0, 9000, kernel_sizes=[3])        # Table 10's run, not the default AAF
    run("pspnet-aaf-channel-s0", "aaf", 9.0, 9000, weight_by="channel")
    run("pspnet-baseline-s100-cx", "baseline", 9.0, 9000, overrides={"lr": 0.1})   # a tuning run
    t = report.training_cost_table("study", "synthetic", tmp_path).set_index("method")
    assert t.index.tolist() == ["PSPNet", "AAF"]
    assert t.loc["PSPNet", "median step (s)"] == 1.0 and t.loc["PSPNet", "runs timed"] == 1
    assert t.loc["AAF", "median step (s)"] == pytest.approx(1.3) and t.loc["AAF", "× baseline"] == pytest.approx(1.3)
    assert t.loc["AAF", "training (min)"] == pytest.approx(12.0) and t.loc["AAF", "runs in one go"] == 1
    assert report.training_cost_table("study", "synthetic", tmp_path / "none").empty
