"""The study's setup page helpers (aafcore.report.study) on hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aafcore.report import study


def _stats(tmp_path: Path) -> Path:
    path = study.benchmark_statistics_path(tmp_path)
    path.parent.mkdir(parents=True)
    widths = [{"index": i, "class": c, "ridge_points": 10, "mean": m, "q50": m, "ge_3": g}
              for i, (c, m, g) in enumerate([("sky", 20.0, 0.9), ("pole", 1.0, 0.0)])]
    edges = [{"index": i, "class": c, "k": k, "pairs": 100, "edge_pairs": e, "share": e / 100}
             for i, c, k, e in [(0, "sky", 3, 2), (0, "sky", 7, 4), (1, "pole", 3, 50), (1, "pole", 7, 40)]]
    path.write_text(json.dumps({"widths": widths, "edge_pairs": edges}))
    return path


def test_width_and_edge_share_tables_keep_the_class_order_and_groups(tmp_path):
    path = _stats(tmp_path)
    groups = {"large": ["sky"], "thin": ["pole"]}
    widths = study.width_table(path, groups)
    assert widths.index.tolist() == ["sky", "pole"] and widths.at["pole", "group"] == "thin"
    assert widths.at["sky", "q50"] == 20.0
    shares = study.edge_share_table(path, groups)
    assert shares.columns.tolist() == ["group", "k=3", "k=7", "k=7 / k=3"]
    assert shares.at["sky", "k=7"] == pytest.approx(4.0) and shares.at["sky", "k=7 / k=3"] == pytest.approx(2.0)
    assert shares.at["pole", "k=7 / k=3"] == pytest.approx(0.8)
    with pytest.raises(FileNotFoundError, match="benchmark_stats.py"):
        study.width_table(tmp_path / "missing.json")


def test_tuning_curves_read_every_finished_tuning_run(tmp_path):
    root = tmp_path / "study" / "synthetic"
    for name, lr, steps in [("pspnet-baseline-s100-ca", 0.03, 100), ("pspnet-baseline-s100-cb", 0.1, 100),
                            ("pspnet-baseline-s0", 0.03, 100)]:            # a study run, not a tuning run
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(json.dumps({"config": {"lr": lr, "steps": steps}}))
        (root / name / "monitor_log.jsonl").write_text("".join(json.dumps({"step": s, "miou": s / 1000}) + "\n"
                                                               for s in (50, 100)))
    (root / "pspnet-baseline-s100-cc").mkdir()                               # unfinished: no metrics.json
    curves = study.tuning_curves(tmp_path, (100,))
    assert sorted(curves.run.unique()) == ["pspnet-baseline-s100-ca", "pspnet-baseline-s100-cb"]
    assert curves[curves.step == 100].miou.tolist() == [10.0, 10.0]
    fig = study.plot_tuning_curves(curves, 100, 0.03, [100])
    assert [len(ax.lines) for ax in fig.axes] == [2, 1]


def test_the_crf_grid_table_is_bi_w_by_bi_xy_std(tmp_path):
    cells = [{"bi_w": w, "bi_xy_std": s, "miou": w + s} for w in (1.0, 3.0) for s in (7.5, 15.0)]
    path = tmp_path / "crf-grid.json"
    path.write_text(json.dumps({"grid": {"bi_w": [1.0, 3.0], "bi_xy_std": [7.5, 15.0]}, "cells": cells,
                                "chosen": {"bi_w": 3.0, "bi_xy_std": 15.0}}))
    table, grid = study.crf_grid_table(path)
    assert table.loc[3.0, 15.0] == 18.0 and table.shape == (2, 2) and grid["chosen"]["bi_w"] == 3.0


def test_geometry_predicts_a_size_from_the_edge_shares_and_fig4_sits_beside_it(tmp_path):
    import pandas as pd

    path = _stats(tmp_path)
    predicted = study.geometry_kernel_sizes(path)
    assert predicted["sky"] == pytest.approx((3 * 0.02 + 7 * 0.04) / 0.06)       # more edges at k=7: larger
    assert predicted["pole"] == pytest.approx((3 * 0.5 + 7 * 0.4) / 0.9)
    row = {"method": "aaf", "base": "pspnet", "kernel_sizes": "3,5,7", "tag": "val-source"}
    df = pd.DataFrame([{**row, "weight_by": "label", "effective_kernel_size/sky": 4.0, "effective_kernel_size/pole": 3.0},
                       {**row, "weight_by": "label", "effective_kernel_size/sky": 5.0, "effective_kernel_size/pole": 3.5},
                       {**row, "weight_by": "channel", "effective_kernel_size/sky": 9.0,       # control (c): not Fig. 4
                        "effective_kernel_size/pole": 9.0}])
    table = study.kernel_size_comparison(df, path, {"large": ["sky"], "thin": ["pole"]})
    assert table.index.tolist() == ["pole", "sky"]                                # thinnest first
    assert table.at["sky", "learned_mean"] == 4.5 and table.at["sky", "n"] == 2
    assert table.at["pole", "group"] == "thin" and table.at["pole", "predicted"] == pytest.approx(predicted["pole"])
    shown = study.kernel_size_comparison_table(table)                           # as the page shows it
    assert list(shown.columns) == ["group", "median width (cells)", "edge pairs k=7 / k=3", "predicted size (px)",
                                   "learned size (px)", "± std", "seeds"]
    assert shown.at["sky", "learned size (px)"] == "4.50" and shown.at["sky", "± std"] == "0.71"
    assert shown.at["sky", "seeds"] == 2 and shown.index.tolist() == ["pole", "sky"]
    one = study.kernel_size_comparison_table(study.kernel_size_comparison(df.iloc[[0]], path, {"large": ["sky"]}))
    assert one.at["sky", "± std"] == "–"                                         # one seed: no spread, no NaN


def test_progress_and_group_means_follow_the_protocols_run_groups():
    import pandas as pd

    from aafcore.report import load_protocol

    protocol = load_protocol()
    df = pd.DataFrame([{"run": "pspnet-baseline-s0", "tag": "val-source", "miou": 0.40},
                       {"run": "pspnet-baseline-s1", "tag": "val-source", "miou": 0.42},
                       {"run": "pspnet-aaf-channel-s3", "tag": "val-source", "miou": 0.5}])
    progress = study.study_progress(df, protocol).set_index("group")
    assert progress.at["pspnet-baseline", "trained"] == 2 and progress.at["pspnet-baseline", "missing"] == "2, 3, 4, 5, 6, 7, 8, 9"
    assert progress.at["pspnet-aaf-channel", "trained"] == 1 and progress.at["pspnet-aaf", "trained"] == 0
    assert progress["seeds"].sum() == 80
    means = study.group_means(df, protocol)
    assert means.at["pspnet-baseline", "mean"] == pytest.approx(41.0) and means.at["pspnet-baseline", "n"] == 2
    assert means.at["pspnet-aaf", "n"] == 0


def test_paper_tables_take_the_authors_weighting_not_control_c():
    """select_rows keeps AAF runs weighting by label (the authors' code); the study's control (c),
    weight_by="channel" with the same kernel sizes, is left out unless asked for."""
    import pandas as pd

    from aafcore.report import select_rows

    df = pd.DataFrame([{"tag": "val-source", "base": "pspnet", "method": "aaf", "kernel_sizes": "3,5,7",
                        "weight_by": w, "run": f"r-{w}"} for w in ("label", "channel")]
                      + [{"tag": "val-source", "base": "pspnet", "method": "baseline", "kernel_sizes": "",
                          "weight_by": "", "run": "b"}])
    assert select_rows(df, "val-source")["run"].tolist() == ["r-label", "b"]
    assert select_rows(df, "val-source", weight_by="channel")["run"].tolist() == ["r-channel", "b"]


def test_the_training_commit_of_a_run_and_of_its_evaluations(tmp_path):
    """load_results: a run's own metrics.json gives its own commit as the training's; an evaluation
    gives the one recorded under provenance.training (not the commit it was evaluated at)."""
    from aafcore.report import load_results

    run = tmp_path / "study" / "synthetic" / "pspnet-baseline-s0"
    (run / "eval" / "val-shifted").mkdir(parents=True)
    cfg = {"base": "pspnet", "method": "baseline", "seed": 0, "kernel_sizes": [3, 5, 7]}
    (run / "metrics.json").write_text(json.dumps({"config": cfg, "provenance": {"git_commit": "a" * 40},
                                                  "metrics": {"miou": 0.4}, "config_hash": "h"}))
    (run / "eval" / "val-shifted" / "metrics.json").write_text(json.dumps(
        {"config": cfg, "config_hash": "h", "evaluation": {"split": "val", "domain": "shifted"},
         "provenance": {"git_commit": "b" * 40, "training": {"git_commit": "a" * 40}}, "metrics": {"miou": 0.3}}))
    df = load_results("study", "synthetic", tmp_path).set_index("tag")
    assert df.at["val-source", "training_git_commit"] == "a" * 40
    assert df.at["val-shifted", "training_git_commit"] == "a" * 40 and df.at["val-shifted", "git_commit"] == "b" * 40


def _readme_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "protocol" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_results_block_is_written_from_the_committed_study_results():
    """Every number of the README's results block comes from results/study: after new runs land,
    `python protocol/readme_results.py` rewrites it, and this test fails until it has."""
    block = study.readme_block((ROOT / "README.md").read_text())
    assert block == _readme_script().summary(ROOT / "results"), "run: python protocol/readme_results.py"


def test_the_readme_block_of_an_empty_study_and_its_markers(tmp_path):
    text = _readme_script().summary(tmp_path)
    assert text.startswith(study.README_START) and text.endswith(study.README_END)
    assert "(0 of its 80 trainings landed" in text and "| AAF | – | – |" in text and "Verdicts" not in text
    with pytest.raises(ValueError, match="no results block"):
        study.readme_block("# a README without the markers\n")


def test_the_compute_budget_projects_the_landed_runs_to_the_whole_protocol(tmp_path):
    from aafcore.report import load_protocol

    protocol = load_protocol()
    root = tmp_path / "study" / "synthetic"
    for name, step, tags in (("pspnet-baseline-s0", 0.8, {"val-source": 30.0, "test-source-ms": 300.0}),
                             ("pspnet-aaf-s0", 1.0, {"val-source": 40.0}), ("pspnet-aaf-s1", None, {})):
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(json.dumps({"provenance": {"median_step_seconds": step}}))
        for tag, seconds in tags.items():
            (root / name / "eval" / tag).mkdir(parents=True)
            (root / name / "eval" / tag / "metrics.json").write_text(json.dumps({"provenance": {"evaluation_seconds": seconds}}))
    (root / "pspnet-baseline-s100-cx").mkdir()   # a tuning run is not a study run
    (root / "pspnet-baseline-s100-cx" / "metrics.json").write_text(json.dumps({"provenance": {"median_step_seconds": 9.0}}))
    gpu = {"device": "GPU X", "backbone": "resnet50", "batch_size": 16, "crop_size": 224,
           "results": [{"method": "baseline", "median_ms": 40.0}, {"method": "aaf", "median_ms": 48.0}]}
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "train_step_cuda.json").write_text(json.dumps(gpu))
    b = study.compute_budget(protocol, tmp_path)
    steps = protocol.training["length_rule"]["chosen_steps"]
    assert (b["planned"], b["landed"], b["timed"]) == (80, 3, 2) and b["step_s"] == pytest.approx(0.9)
    assert b["run_min"] == pytest.approx(steps * 0.9 / 60) and b["train_machine_h"] == pytest.approx(80 * steps * 0.9 / 60 / 2 / 60)
    assert b["eval_s"] == {"val-source": pytest.approx(35.0), "test-source-ms": pytest.approx(300.0)}
    n = b["planned_evals"]
    assert n["val-source"] == 80 and b["eval_machine_h"] == pytest.approx((35 * n["val-source"] + 300 * n["test-source-ms"]) / 3600)
    assert "val-shifted" in b["untimed"] and b["gpu_run_min"] == pytest.approx(steps * 0.048 / 60)
    text = study.budget_text(b)
    assert f"{b['run_min']:.0f} minutes a run" in text and "GPU X" in text and "val-shifted" in text
    assert study.budget_text(study.compute_budget(protocol, tmp_path / "none")).startswith("No study training")
