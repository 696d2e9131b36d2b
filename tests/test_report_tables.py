"""What the book's notebooks display, computed by ``aafcore.report`` on small hand-made results:
gains with the CRF row, Table 1's cost table, Table 10, Table 11, the ledger as shown, the
performance page's benchmark tables and the tables of one run."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aafcore import report
from test_report import NAMES, _write, results  # noqa: F401  (results: the fixture of 3-seed runs)

GROUPS = {"thin": ["pole", "wire"], "large": ["sky", "ground"]}


def _mean_iou(iou) -> float:
    return 100 * float(np.mean(iou))


def _json(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


# --------------------------------------------------------------------------- the package


def test_the_package_re_exports_every_public_name_of_its_modules():
    for name in ("results", "tables", "cost", "claims", "performance", "run", "figures"):
        module = importlib.import_module(f"aafcore.report.{name}")
        for public in module.__all__:
            assert getattr(report, public) is getattr(module, public), f"{name}.{public}"
            assert public in report.__all__
    assert report.PAPER_TABLES.name == "paper_tables" and (report.PAPER_TABLES / "table2.tsv").is_file()


# --------------------------------------------------------------------------- the paper's tables, results


def test_paper_table_without_bookkeeping_and_its_caption():
    full, shown = report.paper_table(2), report.paper_table(2, bookkeeping=False)
    assert list(shown.columns) == [c for c in full.columns if c not in ("table_id", "dataset", "split", "metric")]
    assert shown["mIoU"].equals(full["mIoU"])
    assert report.paper_caption(2, "IoU %") == "**Table 2** (voc2012, val, IoU %)"
    assert report.paper_caption(5) == "**Table 5** (cityscapes, test)"


def test_describe_results(results):
    df = report.load_results("cpu", "synthetic", results)
    assert report.describe_results(df, "cpu", "synthetic", "res") == "11 runs, 14 evaluations under res/cpu/synthetic/"


def test_load_benchmark_is_none_when_missing(tmp_path):
    assert report.load_benchmark(tmp_path, "evaluate_cpu") is None
    _json(tmp_path / "benchmarks" / "evaluate_cpu.json", {"device": "cpu"})
    assert report.load_benchmark(tmp_path, "evaluate_cpu") == {"device": "cpu"}
    assert report.load_benchmark(tmp_path, "evaluate_cpu.json") == {"device": "cpu"}
    assert report.benchmark_path(tmp_path, "x") == tmp_path / "benchmarks" / "x.json"


def test_prediction_dirs_prefer_the_evaluations_predictions(tmp_path):
    runs = tmp_path / "cpu" / "synthetic"
    (runs / "pspnet-baseline-s0" / "eval" / "val-source" / "predictions").mkdir(parents=True)
    (runs / "pspnet-aaf-s0" / "predictions").mkdir(parents=True)
    dirs = report.prediction_dirs("cpu", "synthetic", tmp_path, methods=("baseline", "aaf"))
    assert list(dirs) == ["PSPNet", "AAF"]
    assert dirs["PSPNet"] == runs / "pspnet-baseline-s0" / "eval" / "val-source" / "predictions"
    assert dirs["AAF"] == runs / "pspnet-aaf-s0" / "predictions"
    assert report.prediction_dirs("cpu", "synthetic", tmp_path, ("aaf",), base="fcn", seed=2) == {
        "AAF": runs / "fcn-aaf-s2" / "predictions"}


# --------------------------------------------------------------------------- method tables, gains


def test_method_table_with_crf_appends_the_crf_rows(results):
    df = report.load_results("cpu", "synthetic", results)
    plain = report.method_table(df, "iou", groups=GROUPS, extra=["pixel_accuracy"])
    with_crf = report.method_table(df, "iou", groups=GROUPS, extra=["pixel_accuracy"], with_crf=True)
    assert list(with_crf["method"]) == [*plain["method"], "CRF"]
    crf = with_crf.iloc[-1]
    assert crf["base"] == "PSPNet" and crf["seeds"] == 3
    assert crf["mean"] == pytest.approx(_mean_iou((0.91, 0.81, 0.2, 0.1)))
    assert crf["sky"] == pytest.approx(91.0) and crf["pixel_accuracy"] == pytest.approx(90.0)
    assert with_crf.index.tolist() == list(range(len(with_crf)))


def test_compare_gains_has_the_crf_row_and_the_difference_of_gains(results):
    df = report.load_results("cpu", "synthetic", results)
    g = report.compare_gains(df, 3).set_index(["base", "method"])
    paper = report.paper_table(3).set_index(["base", "Method"])["mIoU"]
    crf, base = _mean_iou((0.91, 0.81, 0.2, 0.1)), _mean_iou((0.9, 0.8, 0.2, 0.1))
    row = g.loc[("PSPNet", "CRF")]
    assert row["ours"] == pytest.approx(crf)
    assert row["ours gain"] == pytest.approx(crf - base)                 # CRF mean - baseline mean
    assert row["our seeds"] == 3
    assert row["paper gain"] == pytest.approx(paper["PSPNet", "CRF"] - paper["PSPNet", "PSPNet"])
    assert row["difference of gains"] == pytest.approx(row["ours gain"] - row["paper gain"])
    assert g.loc[("PSPNet", "PSPNet"), "ours gain"] == 0.0
    assert math.isnan(g.loc[("FCN", "AAF"), "difference of gains"])      # no FCN run
    assert ("PSPNet", "CRF") not in report.compare_gains(df, 2).set_index(["base", "method"]).index  # not in Table 2


def test_compare_gains_without_crf_evaluations_leaves_the_crf_row_empty(tmp_path):
    _write(tmp_path, "pspnet-baseline-s0")
    g = report.compare_gains(report.load_results("cpu", "synthetic", tmp_path), 3).set_index("method")
    assert math.isnan(g.loc["CRF", "ours"]) and g.loc["CRF", "our seeds"] == 0


def test_gains_table_stacks_the_paper_tables_with_their_labels(results):
    df = report.load_results("cpu", "synthetic", results)
    t = report.gains_table(df, (2, 3))
    assert list(t.columns) == ["base", "method", "paper", "paper gain", "ours", "ours gain", "our seeds",
                               "paper_table", "difference of gains"]
    assert len(t) == len(report.paper_table(2)) + len(report.paper_table(3))
    assert t["paper_table"].iloc[0] == "2 (VOC)" and t["paper_table"].iloc[-1] == "3 (Cityscapes)"
    assert t.index.tolist() == list(range(len(t)))
    test = report.gains_table(df, (4, 5), tag="test-source-ms")
    assert test["ours"].isna().all() and set(test["paper_table"]) == {"4 (VOC)", "5 (Cityscapes)"}


def test_domain_gains_compares_miou_and_pixel_accuracy_gains(results):
    for s, (base_iou, aaf_iou) in enumerate(((0.5, 0.56), (0.52, 0.58), (0.48, 0.53))):
        _write(results, f"pspnet-baseline-s{s}", seed=s, iou=(base_iou,) * 4, tag="val-shifted",
               domain="shifted", pixel_accuracy=0.70 + 0.01 * s)
        _write(results, f"pspnet-aaf-s{s}", method="aaf", seed=s, iou=(aaf_iou,) * 4, tag="val-shifted",
               domain="shifted", pixel_accuracy=0.75 + 0.01 * s)
    g = report.domain_gains(report.load_results("cpu", "synthetic", results))
    assert list(g.index) == ["AAF"]                     # no Affinity run on the shifted domain, the base left out
    paper = report.paper_table(11).set_index("Method")
    aaf = g.loc["AAF"]
    assert aaf["ours mIoU gain"] == pytest.approx(100 * (np.mean([0.56, 0.58, 0.53]) - np.mean([0.5, 0.52, 0.48])))
    assert aaf["ours pixel-acc. gain"] == pytest.approx(5.0)
    assert aaf["paper mIoU gain"] == pytest.approx(paper.loc["AAF", "mIoU"] - paper.loc["PSPNet", "mIoU"])
    assert aaf["paper pixel-acc. gain"] == pytest.approx(paper.loc["AAF", "pix. acc"] - paper.loc["PSPNet", "pix. acc"])


# --------------------------------------------------------------------------- Table 10, Fig. 4


def test_kernel_size_table_has_one_row_per_set_found(results):
    df = report.load_results("cpu", "synthetic", results)
    t = report.kernel_size_table(df, GROUPS)
    assert list(t["method"]) == ["AAF k∈{3}", "AAF k∈{3,5,7}"]       # no {3, 5} run
    assert list(t["seeds"]) == [1, 3]
    assert t["mean"].iloc[0] == pytest.approx(_mean_iou((0.9, 0.8, 0.25, 0.15)))
    assert t["thin"].iloc[0] == pytest.approx(20.0)
    assert report.kernel_size_table(df[df["method"] != "aaf"], GROUPS).empty


def test_kernel_size_summary_per_class_in_width_order(results):
    df = report.load_results("cpu", "synthetic", results)
    info = {"names": NAMES, "groups": GROUPS, "widths": {"sky": 50.0, "ground": 60.0, "pole": 5.0, "wire": 2.0}}
    assert report.class_order(info) == ["wire", "pole", "sky", "ground"]
    frame = report.kernel_sizes_frame(df, info["widths"], GROUPS)
    s = report.kernel_size_summary(frame, info)
    assert list(s.index) == ["wire", "pole", "sky", "ground"]
    assert list(s.columns) == ["group", "typical width (px)", "mean", "std", "count"]
    assert list(s["group"]) == ["thin", "thin", "large", "large"]
    assert s.loc["sky", "mean"] == pytest.approx(5.0) and s.loc["sky", "std"] == pytest.approx(0.02)
    assert s.loc["wire", "mean"] == pytest.approx(3.4) and s.loc["wire", "count"] == 3
    assert s.loc["pole", "typical width (px)"] == 5.0


# --------------------------------------------------------------------------- Table 1


def _benchmarks(root: Path, *, ratio_aaf=1.08, network=6.0, crf=48.0, msf=72.0):
    _json(root / "benchmarks" / "train_step_cpu.json",
          {"results": [{"method": "baseline", "ratio_to_baseline": 1.0},
                       {"method": "aaf", "ratio_to_baseline": ratio_aaf}, {"method": "gan", "ratio_to_baseline": 1.2}]})
    _json(root / "benchmarks" / "evaluate_cpu.json",
          {"device": "cpu", "image_size": [128, 128],
           "median_ms_per_image": {"network_single_scale": network, "network_multiscale_flip": msf, "crf": crf}})


def test_cost_table_reads_the_benchmarks_under_results_root(results, tmp_path_factory, monkeypatch):
    _benchmarks(results)
    elsewhere = tmp_path_factory.mktemp("cwd")
    _benchmarks(elsewhere / "results", ratio_aaf=9.99, crf=1.0)      # a decoy: ./results/benchmarks
    monkeypatch.chdir(elsewhere)
    df = report.load_results("cpu", "synthetic", results)
    t = report.cost_table(df, results)
    assert list(t.index) == ["CRF", "GAN", "AAF"]
    assert t.loc["AAF", "training step"] == "×1.08"
    assert t.loc["GAN", "training step"] == "×1.20"
    assert t.loc["CRF", "training step"] == "×1.00 (unchanged)"
    # the CRF's cost is the runs' own CRF evaluations' (10 ms network, 50 ms CRF per image in the fixture)
    assert t.loc["CRF", "run-time inference"] == "yes: +50.0 ms/image (×5.0 the network)"
    assert t.loc["AAF", "run-time inference"] == "no (the network only)"
    assert t.loc["CRF", "mIoU"] == pytest.approx(_mean_iou((0.91, 0.81, 0.2, 0.1))) and t.loc["CRF", "seeds"] == 3
    assert t.loc["GAN", "seeds"] == 1 and math.isnan(t.loc["GAN", "± std"])


def test_cost_table_without_crf_evaluations_uses_the_benchmark_and_without_files_says_nothing(results):
    df = report.load_results("cpu", "synthetic", results)
    no_crf = df[df["tag"] != "val-source-crf"]
    t = report.cost_table(no_crf, results)
    assert t.loc["AAF", "training step"] == "–" and t.loc["CRF", "run-time inference"] == "yes"
    _benchmarks(results)
    assert report.cost_table(no_crf, results).loc["CRF", "run-time inference"] == "yes: +48.0 ms/image (×8.0 the network)"
    shown = report.table(t)
    assert shown.loc["CRF", "mIoU"] == "–" and shown.loc["CRF", "seeds"] == 0


def test_inference_cost_note_says_which_measurement_each_time_is(results, tmp_path):
    assert "not found" in report.inference_cost_note(tmp_path)
    _benchmarks(tmp_path)
    note = report.inference_cost_note(tmp_path)
    assert "one image at a time, median of its images, the network on 128 × 128 px images on the CPU" in note
    assert "the network takes 6.0 ms per image and the CRF adds 48.0 ms (×8.0)" in note
    assert "costs 12.0 times the network" in note
    assert f"`{tmp_path}/benchmarks/train_step_cpu.json`" in note
    assert f"`{tmp_path}/benchmarks/evaluate_cpu.json`" in note
    assert "These runs' evaluations" not in note                      # no results given
    df = report.load_results("cpu", "synthetic", results)
    both = report.inference_cost_note(tmp_path, df=df)
    assert "the network takes 10.0 ms per image and the CRF adds 50.0 ms (×5.0)" in both    # the runs'
    assert "The two measurements differ because a batch of one image" in both
    assert "`cpu` profile's, not these runs'" not in both
    _json(tmp_path / "benchmarks" / "evaluate_cpu.json",
          {"device": "cpu", "profile": "cpu", "image_size": [128, 128], "timed_images": 100,
           "median_ms_per_image": {"network_single_scale": 6.0, "network_multiscale_flip": 72.0, "crf": 48.0}})
    other = report.inference_cost_note(tmp_path, df=df, profile="study")
    assert "the benchmark's network and images are the `cpu` profile's, not these runs'" in other
    assert "median of 100 images" in other


def test_run_time_table_from_the_runs_own_evaluations(results):
    t = report.run_time_table(report.load_results("cpu", "synthetic", results)).set_index("method")
    assert t.index.tolist() == ["PSPNet", "CRF", "GAN", "AAF"]
    assert t.loc["CRF", "network (ms/image)"] == pytest.approx(10.0) and t.loc["CRF", "CRF (ms/image)"] == pytest.approx(50.0)
    assert t.loc["AAF", "CRF (ms/image)"] == 0 and t.loc["AAF", "seeds"] == 3


# --------------------------------------------------------------------------- the ledger as shown


def test_ledger_table_and_verdict_summary():
    ledger = pd.DataFrame([
        {"id": "C1", "source": "5.1", "claim": "a", "measure": "miou", "A": "x", "B": "y", "d": 0.01, "se": 0.004,
         "verdict": "holds", "n": "3/3", "unit": "pp", "scale": 100.0},
        {"id": "C2", "source": "5.2", "claim": "b", "measure": "miou", "A": "", "B": "", "d": -0.002, "se": np.nan,
         "verdict": "inconclusive", "n": "3/1", "unit": "pp", "scale": 100.0},
        {"id": "C3", "source": "5.3", "claim": "c", "measure": "ks", "A": "", "B": "", "d": np.nan, "se": np.nan,
         "verdict": "holds", "n": "0", "unit": "px", "scale": 1.0}])
    shown = report.ledger_table(ledger)
    assert shown.index.name == "id" and list(shown.index) == ["C1", "C2", "C3"]
    assert list(shown.columns) == ["verdict", "claim", "measure", "d", "se", "unit", "n", "A", "B", "source"]
    assert list(shown["d"]) == ["+1.00", "-0.20", "–"]             # percentage points
    assert list(shown["se"]) == ["0.40", "–", "–"]
    assert ledger["d"].iloc[0] == 0.01                      # the ledger itself is left as it is
    assert report.verdict_summary(ledger) == "**holds**: 2, **inconclusive**: 1"


def test_the_ledger_reads_the_benchmark_that_load_benchmark_finds(results):
    _benchmarks(results, network=6.0, crf=3.0)              # the CRF adds 50%: C20 holds
    df = report.load_results("cpu", "synthetic", results)
    ledger = report.claims_ledger(df, GROUPS, report.load_benchmark(results, "evaluate_cpu")).set_index("id")
    assert ledger.loc["C20", "verdict"] == "holds" and ledger.loc["C20", "d"] == pytest.approx(0.5)
    assert report.claims_ledger(df, GROUPS, None).set_index("id").loc["C20", "verdict"] == "inconclusive"


def test_an_unknown_claim_kind_is_named():
    claim = report.Claim("X1", "-", "text", "sideways")
    with pytest.raises(ValueError, match="sideways"):
        report.claims_ledger(pd.DataFrame(), {}, claims=(claim,))


# --------------------------------------------------------------------------- the performance page

CPU_PROVENANCE = {"git_commit": "0123456789abcdef0123+dirty", "cpu": "AMD EPYC", "date": "2026-01-02",
                  "packages": {"torch": "2.0", "cpu_threads": 2}}


def test_provenance_lines_of_every_kind_of_file():
    assert report.short_commit("0123456789abcdef0123+dirty") == "0123456789ab+dirty"
    assert report.short_commit("0123456789abcdef") == "0123456789ab" and report.short_commit(None) == "unknown"
    assert (report.provenance_line(CPU_PROVENANCE)
            == "AMD EPYC, 2 threads, torch 2.0, commit 0123456789ab+dirty, 2026-01-02")
    row = {"git_commit": "feedfacefeedface", "torch": "2.1", "device": "AMD EPYC (2 threads)",
           "date": "2026-01-03T06:59:10+00:00"}
    assert report.provenance_line(row) == "AMD EPYC (2 threads), torch 2.1, commit feedfacefeed, 2026-01-03"
    run = {"git_commit": "abc", "device": "GPU X", "started": "2026-01-04T13:35:39+0000", "packages": {"torch": "2.2"}}
    assert report.provenance_line(run) == "GPU X, torch 2.2, commit abc, 2026-01-04"
    assert report.provenance_line(run, machine="elsewhere").startswith("elsewhere, torch 2.2")


def test_benchmark_tables_with_their_provenance(tmp_path):
    bench = tmp_path / "benchmarks"
    row_prov = {"git_commit": "feedfacefeedface", "torch": "2.1", "device": "AMD EPYC (2 threads)",
                "date": "2026-01-03T06"}
    _json(bench / "aaf_loss_cpu.json", {"kernel_sizes": [3, 5, 7], "reps": 7, "results": [
        {"device": "cpu", "shape": [8, 21, 42, 42], "edge_pair_fraction": 0.1, "naive_ms": 400.0, "aafcore_ms": 10.0,
         "speedup": 40.0, "naive_peak_mib": 600.0, "aafcore_peak_mib": 40.0, "memory_ratio": 15.0,
         "loss_rel_diff": 0.0, "provenance": row_prov}]})
    frame, note = report.loss_benchmark_table(tmp_path, "cpu")
    assert list(frame.columns) == ["edge pairs %", "naive ms", "aafcore ms", "speed-up ×", "naive peak MiB",
                                   "aafcore peak MiB", "memory ×"]
    assert list(frame.index) == ["8×21×42×42"] and frame.index.name == "N×C×H×W"
    assert frame.loc["8×21×42×42", "speed-up ×"] == 40.0
    assert frame.loc["8×21×42×42", "edge pairs %"] == pytest.approx(10.0)      # a fraction, in percent
    assert note == ("Kernel sizes 3, 5, 7, forward + backward, float32, median of 7; "
                    "*AMD EPYC (2 threads), torch 2.1, commit feedfacefeed, 2026-01-03*")
    shown = report.table(frame, 1)
    assert shown.loc["8×21×42×42", "naive ms"] == "400.0" and shown.loc["8×21×42×42", "memory ×"] == "15.0"

    _json(bench / "train_step_cpu.json", {"base": "pspnet", "backbone": "narrow", "batch_size": 8, "crop_size": 112,
                                          "reps": 40, "device": "cpu", "provenance": CPU_PROVENANCE, "results": [
        {"method": "baseline", "median_ms": 50.0, "images_per_second": 160.0, "ratio_to_baseline": 1.0,
         "quartiles_ms": [1, 2, 3]},
        {"method": "aaf", "median_ms": 55.0, "images_per_second": 145.0, "ratio_to_baseline": 1.1,
         "quartiles_ms": [1, 2, 3]}]})
    frame, note = report.step_benchmark_table(tmp_path, "cpu")
    assert list(frame.index) == ["PSPNet", "AAF"]                              # the paper's row labels
    assert list(frame.columns) == ["median ms", "images / s", "× baseline"]     # no quartiles
    assert frame.loc["AAF", "× baseline"] == 1.1 and frame.loc["PSPNet", "median ms"] == 50.0
    assert note == ("PSPNet (narrow), batch 8, 112 px crops, median of 40 rounds; "
                    "*AMD EPYC, 2 threads, torch 2.0, commit 0123456789ab+dirty, 2026-01-02*")

    _json(bench / "evaluate_cpu.json", {"device": "cpu", "split": "val", "provenance": CPU_PROVENANCE,
                                        "median_ms_per_image": {"network_single_scale": 6.0, "crf": 48.0},
                                        "ratio_to_single_scale_network": {"network_single_scale": 1.0, "crf": 8.0},
                                        "full_single_scale_evaluation": {"images": 200, "wall_seconds": 1.31,
                                                                         "metric_seconds": 0.29}})
    frame, note = report.inference_benchmark_table(tmp_path, "cpu")
    assert list(frame.index) == ["network, single scale", "dense CRF"]
    assert frame.loc["dense CRF", "ms / image"] == 48.0 and frame.loc["dense CRF", "× network"] == 8.0
    assert note.startswith("A single-scale evaluation of the 200 val images with every metric: 1.3 s (metrics 0.3 s). ")


def test_gpu_benchmark_tables_name_the_gpu(tmp_path):
    bench = tmp_path / "benchmarks"
    gpu_prov = {**CPU_PROVENANCE, "cpu": "Xeon", "packages": {"torch": "2.2", "cpu_threads": 16}}
    for name, backbone in (("train_step_cuda", "resnet50"), ("train_step_cuda_voc", "resnet101")):
        _json(bench / f"{name}.json", {"backbone": backbone, "batch_size": 8, "crop_size": 336, "device": "GPU X",
                                       "provenance": gpu_prov, "results": [
            {"method": "baseline", "median_ms": 40.0, "images_per_second": 200.0, "ratio_to_baseline": 1.0}]})
    frame, note = report.gpu_step_table(tmp_path)         # the Cityscapes file is missing: left out
    assert list(frame.index) == [("gpu profile: resnet50, batch 8, 336 px", "PSPNet"),
                                 ("VOC step: resnet101, batch 8, 336 px", "PSPNet")]
    assert list(frame.columns) == ["median ms", "images / s", "× baseline"]
    assert note == "*GPU X, torch 2.2, commit 0123456789ab+dirty, 2026-01-02*"     # the GPU, not the Xeon
    _json(bench / "cuda_check.json", {"device": "GPU X", "losses": [
        {"loss": "affinity", "input_dtype": "float32", "loss_rel_diff": 2.5e-8, "grad_logits_rel_diff": 4.3e-7,
         "ok": True, "shape": [1]},                                    # no size weights: no third difference
        {"loss": "aaf", "input_dtype": "bfloat16", "loss_rel_diff": 1e-8, "grad_logits_rel_diff": 1e-7,
         "grad_weights_rel_diff": 1e-6, "ok": False, "shape": [1]}],
        "trainer_steps": [{"method": "baseline", "ok": True}, {"method": "aaf", "ok": False}], "run": {"ok": True}})
    frame, note = report.cuda_check_table(tmp_path)
    assert list(frame.columns) == ["loss", "gradient (logits)", "gradient (size weights)", "within tolerance"]
    assert list(frame.index) == [("Affinity", "float32"), ("AAF", "bfloat16")]
    assert frame.loc[("Affinity", "float32"), "loss"] == "2.5e-08"
    assert frame.loc[("Affinity", "float32"), "gradient (size weights)"] == "–"        # does not apply: no NaN
    assert frame.loc[("AAF", "bfloat16"), "gradient (size weights)"] == "1.0e-06"
    assert list(frame["within tolerance"]) == ["yes", "no"]
    assert note == ("Relative differences from float64 on the CPU. Trainer steps with autocast + channels_last: "
                    "PSPNet ok, AAF FAILED; a smoke run end to end: ok (GPU X).")


def test_the_loss_benchmark_of_several_label_kinds_is_one_table_with_cross_entropy(tmp_path):
    prov = {"git_commit": "feedfacefeedface", "torch": "2.1", "device": "AMD EPYC (2 threads)", "date": "2026-01-03"}

    def row(shape, aaf, ce):
        return {"device": "cpu", "shape": shape, "edge_pair_fraction": 0.5, "naive_ms": 400.0, "aafcore_ms": aaf,
                "ce_ms": ce, "speedup": 400.0 / aaf, "aafcore_to_ce": aaf / ce, "naive_peak_mib": 600.0,
                "aafcore_peak_mib": 60.0, "memory_ratio": 10.0, "provenance": prov}

    for kind, aaf in (("scenes", 20.0), ("blocks", 25.0)):
        _json(tmp_path / "benchmarks" / f"{report.loss_benchmark_file('cpu', kind)}.json",
              {"kernel_sizes": [3, 5, 7], "reps": 5, "labels": kind,
               "results": [row([8, 21, 42, 42], aaf, 2.0), row([8, 19, 90, 90], 4 * aaf, 5.0)]})
    assert report.loss_benchmark_file("cpu", "scenes") == "aaf_loss_cpu"
    frame, note = report.loss_benchmark_table(tmp_path, "cpu", report.LOSS_LABELS)
    assert frame.index.names == ["labels", "N×C×H×W"] and list(frame.index.get_level_values(0)) == ["scenes"] * 2 + ["blocks"] * 2
    assert {"CE ms", "aafcore / CE"} <= set(frame.columns)
    assert frame.loc[("blocks", "8×19×90×90"), "aafcore / CE"] == pytest.approx(20.0)
    assert note.count("commit feedfacefeed") == 1                 # one provenance for files that share it
    assert "aaf_loss_cpu_noise.json" in note and "Not measured here" in note


def test_a_missing_benchmark_file_gives_an_empty_table_and_says_which(tmp_path):
    for frame, note in (report.loss_benchmark_table(tmp_path, "cuda"), report.step_benchmark_table(tmp_path),
                        report.inference_benchmark_table(tmp_path), report.gpu_step_table(tmp_path),
                        report.cuda_check_table(tmp_path)):
        assert frame.empty and "not found" in note and str(tmp_path / "benchmarks") in note


def _gpu_run(root: Path, method: str, miou: float, commit: str):
    run = root / "gpu" / "synthetic" / f"pspnet-{method}-s0"
    config = {"base": "pspnet", "method": method, "seed": 0, "kernel_sizes": [3, 5, 7]}
    prov = {"git_commit": commit, "device": "GPU X", "started": "2026-01-05T10:00:00+0000",
            "packages": {"torch": "2.2"}, "train_seconds": 600.0, "median_step_seconds": 0.04}
    _json(run / "metrics.json", {"config": config, "class_names": NAMES, "provenance": prov,
                                 "metrics": {"miou": miou, "miou_thin": miou - 0.2, "miou_large": miou + 0.2}})
    for tag, domain, value in (("test-source-ms", "source", miou + 0.1), ("test-shifted-ms", "shifted", miou - 0.05)):
        _json(run / "eval" / tag / "metrics.json", {
            "config": config, "class_names": NAMES, "provenance": {**prov, "training": {"started": prov["started"]}},
            "evaluation": {"split": "test", "domain": domain, "mode": "multi-scale+flip"},
            "metrics": {"miou": value, "instance_miou": value - 0.1, "mean_boundary_recall": 0.4}})


def test_gpu_runs_table_from_the_runs_under_results_root(tmp_path):
    _gpu_run(tmp_path, "baseline", 0.6, "1111111111111111aaaa+dirty")
    _gpu_run(tmp_path, "aaf", 0.62, "1111111111111111aaaa+dirty")
    frame, note = report.gpu_runs_table(tmp_path, "gpu", "synthetic")
    assert list(frame.index) == ["PSPNet", "AAF"]                # the paper's labels and order
    aaf = frame.loc["AAF"]
    assert aaf["val mIoU %"] == pytest.approx(62.0) and aaf["val thin %"] == pytest.approx(42.0)
    assert aaf["val large %"] == pytest.approx(82.0) and aaf["test mIoU %"] == pytest.approx(72.0)
    assert aaf["test instance mIoU %"] == pytest.approx(62.0) and aaf["test boundary recall %"] == pytest.approx(40.0)
    assert aaf["shifted test mIoU %"] == pytest.approx(57.0)
    assert aaf["training min"] == pytest.approx(10.0) and aaf["median step ms"] == pytest.approx(40.0)
    assert note == "*GPU X, torch 2.2, commit 111111111111+dirty, 2026-01-05*"    # as recorded, once
    with pytest.raises(FileNotFoundError):
        report.gpu_runs_table(tmp_path, "cpu", "synthetic")


# --------------------------------------------------------------------------- one run, one evaluation

RESULT = {
    "config_hash": "0f0f", "class_names": ["sky", "pole"],
    "config": {"steps": 100, "batch_size": 8, "crop_size": 112, "lr": 0.01},
    "evaluation": {"images": 20},
    "provenance": {"git_commit": "abc+dirty", "device": "cpu", "started": "2026-01-01T00:00:00", "train_seconds": 125.0,
                   "median_step_seconds": 0.05678, "images_per_second": 140.87, "inference_seconds_per_image": 0.00612,
                   "crf_seconds_per_image": None, "metric_seconds": 0.314},
    "metrics": {"iou": [0.9, 0.2], "miou": 0.55, "pixel_accuracy": 0.8123, "instance_iou": [None, 0.15],
                "instance_miou": 0.15, "boundary_precision": [0.5, 0.3], "boundary_recall": [0.6, 0.2],
                "boundary_f": [0.55, 0.24], "mean_boundary_recall": 0.4, "miou_large": 0.9, "miou_thin": None},
    "aaf": {"effective_kernel_size": [4.5, 3.2]},
}


def test_per_class_frame():
    """The per-class table as the page shows it: percent, two decimals, "–" for a missing value."""
    frame = report.per_class_frame(RESULT)
    assert list(frame.index) == ["sky", "pole"]
    assert list(frame.columns) == ["IoU %", "instance IoU %", "boundary precision %", "boundary recall %",
                                   "boundary F %", "effective kernel size"]
    assert frame.loc["sky", "IoU %"] == "90.00" and frame.loc["pole", "instance IoU %"] == "15.00"
    assert frame.loc["sky", "instance IoU %"] == "–"                  # stuff: no instances, no NaN
    assert frame.loc["pole", "boundary recall %"] == "20.00" and frame.loc["pole", "effective kernel size"] == "3.20"
    assert not frame.isin(["nan", "NaN"]).any().any()
    baseline = {k: v for k, v in RESULT.items() if k != "aaf"}
    baseline["metrics"] = {k: v for k, v in RESULT["metrics"].items() if k != "instance_iou"}
    assert list(report.per_class_frame(baseline).columns) == ["IoU %", "boundary precision %", "boundary recall %",
                                                              "boundary F %"]


def test_per_class_frame_and_summary_with_the_one_cell_boundary_metrics():
    """A result with the boundary metrics at one logit cell gets their columns after the paper's;
    the tolerance (a setting in pixels, not a fraction) is in the column names, not the summary."""
    cell = {**RESULT, "metrics": {**RESULT["metrics"], "boundary_precision_cell": [0.7, 0.5],
                                  "boundary_recall_cell": [0.8, None], "boundary_f_cell": [0.75, 0.0],
                                  "mean_boundary_recall_cell": 0.8, "mean_boundary_recall_cell_large": 0.7,
                                  "boundary_tolerance_px": 8.0}}
    frame = report.per_class_frame(cell)
    assert list(frame.columns) == ["IoU %", "instance IoU %", "boundary precision %", "boundary recall %",
                                   "boundary F %", "boundary precision % (8 px)", "boundary recall % (8 px)",
                                   "boundary F % (8 px)", "effective kernel size"]
    assert frame.loc["sky", "boundary recall % (8 px)"] == "80.00" and frame.loc["pole", "boundary recall % (8 px)"] == "–"
    assert frame.loc["pole", "boundary recall %"] == "20.00"              # the paper's tolerance, unchanged
    summary = report.metrics_summary(cell)
    assert list(summary.index) == ["mIoU", "pixel accuracy", "instance mIoU", "boundary recall",
                                   "boundary recall (8 px)"]
    assert summary.loc["boundary recall (8 px)", "all"] == "80.00"
    assert summary.loc["boundary recall (8 px)", "large"] == "70.00"
    assert report.metrics_sentence(cell) == report.metrics_sentence(RESULT)


def test_run_summary():
    s = report.run_summary(RESULT)["value"]
    assert s["config hash"] == "0f0f" and s["git commit"] == "abc+dirty" and s["device"] == "cpu"
    assert s["training minutes"] == 2.08 and s["median step (ms)"] == 56.8 and s["images / s"] == 140.9
    assert (s["steps"], s["batch"], s["crop"], s["lr"]) == (100, 8, 112, 0.01)
    # a run resumed at its last step timed no step: its timings are n/a, not a crash
    untimed = {**RESULT, "provenance": {**RESULT["provenance"], "median_step_seconds": None,
                                        "images_per_second": None}}
    s = report.run_summary(untimed)["value"]
    assert s["median step (ms)"] == "n/a" and s["images / s"] == "n/a" and s["training minutes"] == 2.08


def test_metrics_sentence_and_summary():
    assert report.metrics_sentence(RESULT) == ("**mIoU 55.00%** (large classes 90.00%), pixel accuracy 81.23%, "
                                               "instance mIoU 15.00%, boundary recall 40.00%.")
    no_groups = {**RESULT, "metrics": {k: v for k, v in RESULT["metrics"].items()
                                       if not k.startswith("miou_") and k != "instance_miou"}}
    assert report.metrics_sentence(no_groups) == "**mIoU 55.00%**, pixel accuracy 81.23%, boundary recall 40.00%."
    # one row per metric, a column for all classes and one per group (miou_<group>), in percent
    summary = report.metrics_summary(RESULT)
    assert list(summary.index) == ["mIoU", "pixel accuracy", "instance mIoU", "boundary recall"]
    assert list(summary.columns) == ["all", "large", "thin"]
    assert summary.loc["mIoU", "all"] == "55.00" and summary.loc["mIoU", "large"] == "90.00"
    assert summary.loc["mIoU", "thin"] == "–"                            # None in the metrics
    assert summary.loc["pixel accuracy", "large"] == "–"                 # no group mean of it
    assert list(report.metrics_summary(no_groups).columns) == ["all"]


def test_evaluation_time_sentence():
    assert report.evaluation_time_sentence(RESULT) == "Network: 6.1 ms per image; all metrics: 0.31 s for 20 images."
    crf = {**RESULT, "provenance": {**RESULT["provenance"], "crf_seconds_per_image": 0.0494}}
    assert report.evaluation_time_sentence(crf) == ("Network: 6.1 ms per image; dense CRF: 49.4 ms per image more; "
                                                    "all metrics: 0.31 s for 20 images.")
