"""Inference modes (single scale, sliding window, multi-scale + flip), dense CRF, and ``aaf evaluate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aafcore.crf import CRFParams, dense_crf
from aafcore.datasets import build_dataset
from aafcore.evaluate import evaluate_run
from aafcore.inference import (PAPER_SCALES, InferenceConfig, _window_starts, evaluate_model, predict_logits,
                               predict_probs)
from aafcore.metrics import SegmentationMetrics
from aafcore.models import build_model
from aafcore.config import profile_config
from aafcore.train import train

ROOT = Path(__file__).resolve().parent.parent


class PerPixel(nn.Module):
    """A 1x1-conv "segmenter" at output stride 1: no spatial context, so it is flip-equivariant
    and translation-equivariant by construction."""

    def __init__(self, num_classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return self.conv(x)


class Lopsided(nn.Module):
    """A model that is *not* flip-equivariant: its logits depend on the column, and it works at
    output stride 8 (like the real networks)."""

    def __init__(self, num_classes=4):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, num_classes, 5, stride=8, padding=2)

    def forward(self, x):
        y = self.conv(x)
        ramp = torch.linspace(-2, 2, y.shape[-1], device=y.device)
        return y + ramp * torch.arange(y.shape[1], device=y.device).view(1, -1, 1, 1)


def _images(n=2, h=40, w=52, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- inference modes


def test_single_scale_is_softmax_of_the_upsampled_logits():
    model = build_model("pspnet", "narrow", 5).eval()
    x = _images(h=48, w=64)
    probs = predict_probs(model, x)
    assert probs.shape == (2, 5, 48, 64)
    torch.testing.assert_close(probs, predict_logits(model, x).softmax(1))
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 48, 64))


def test_flip_averaging_of_a_flip_equivariant_model_changes_nothing():
    model = PerPixel().eval()
    x = _images()
    single = predict_probs(model, x)
    torch.testing.assert_close(predict_probs(model, x, InferenceConfig(flip=True)), single)
    # and flipping the input flips the output
    torch.testing.assert_close(predict_probs(model, x.flip(-1)), single.flip(-1))


def test_multiscale_flip_inference_is_flip_equivariant_for_any_model():
    """Averaging over flips makes the paper's protocol equivariant even for a lopsided network."""
    model = Lopsided().eval()
    x = _images()
    paper = InferenceConfig.paper()
    assert paper.scales == PAPER_SCALES and paper.flip and paper.mode == "multi-scale+flip"
    p = predict_probs(model, x, paper)
    torch.testing.assert_close(predict_probs(model, x.flip(-1), paper), p.flip(-1), atol=1e-5, rtol=1e-5)
    # the lopsided model alone is not equivariant: the test above would catch a missing flip-back
    single = predict_probs(model, x)
    assert (predict_probs(model, x.flip(-1)) - single.flip(-1)).abs().max() > 0.05


def test_multiscale_flip_is_the_mean_of_every_pass():
    model = Lopsided().eval()
    x = _images(n=1)
    h, w = x.shape[-2:]
    expected = []
    for s in (0.5, 1.5):
        xs = torch.nn.functional.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear",
                                             align_corners=False)
        for flip in (False, True):
            p = predict_logits(model, xs.flip(-1) if flip else xs).softmax(1)
            p = p.flip(-1) if flip else p
            expected.append(torch.nn.functional.interpolate(p, size=(h, w), mode="bilinear", align_corners=False))
    got = predict_probs(model, x, InferenceConfig(scales=(0.5, 1.5), flip=True))
    torch.testing.assert_close(got, torch.stack(expected).mean(0))


@pytest.mark.parametrize("crop, stride", [(16, None), (16, 5), (24, 24), (64, None)])
def test_sliding_window_of_a_context_free_model_equals_the_whole_image(crop, stride):
    """Windows (with padding when the image is smaller than the crop) reassemble the image exactly."""
    model = PerPixel().eval()
    x = _images(h=40, w=52)
    whole = predict_probs(model, x)
    windowed = predict_probs(model, x, InferenceConfig(crop_size=crop, stride=stride))
    torch.testing.assert_close(windowed, whole)


def test_window_starts_cover_the_image_with_the_stride():
    for length, crop, stride in [(100, 30, 20), (31, 30, 20), (30, 30, 20), (10, 30, 20), (257, 64, 42)]:
        starts = _window_starts(length, crop, stride)
        assert starts[0] == 0 and starts[-1] == max(length - crop, 0)
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_inference_config_rejects_bad_values():
    for kwargs in ({"scales": ()}, {"scales": (0.0,)}, {"crop_size": 4}, {"stride": 3},
                   {"crop_size": 16, "stride": 17}):
        with pytest.raises(ValueError):
            InferenceConfig(**kwargs)


# --------------------------------------------------------------------------- dense CRF


def _edge_toy():
    """A sharp vertical edge at column 32 and a prediction blurred and shifted to column 36."""
    h = w = 64
    image = np.zeros((h, w, 3), np.uint8)
    image[:, 32:] = 200
    cols = np.arange(w)[None, :].repeat(h, 0)
    p1 = 1 / (1 + np.exp(-(cols - 36) / 4.0))
    return image, np.stack([1 - p1, p1]).astype(np.float32), cols >= 32


def test_crf_sharpens_a_blurred_prediction_towards_the_image_edge():
    image, probs, truth = _edge_toy()
    q = dense_crf(image, probs, CRFParams())
    assert q.shape == probs.shape and np.allclose(q.sum(0), 1, atol=1e-4)
    before = ((probs.argmax(0) == 1) == truth).mean()
    after = ((q.argmax(0) == 1) == truth).mean()
    assert after > before + 0.03

    def entropy(p):
        return float(-(p * np.log(p + 1e-9)).sum(0).mean())

    assert entropy(q) < 0.7 * entropy(probs)
    # the edge moved towards column 32 in every row
    first_fg = (q.argmax(0) == 1).argmax(1)
    assert (first_fg < 36).all() and (first_fg >= 32).all()


def test_crf_rejects_mismatched_inputs():
    image, probs, _ = _edge_toy()
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(image.astype(np.float32), probs)
    with pytest.raises(ValueError, match="match"):
        dense_crf(image[:32], probs)


# --------------------------------------------------------------------------- evaluate_model / runs


class Constant(nn.Module):
    def __init__(self, num_classes, cls):
        super().__init__()
        self.num_classes, self.cls = num_classes, cls

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.num_classes, (x.shape[2] + 7) // 8, (x.shape[3] + 7) // 8)
        out[:, self.cls] = 1.0
        return out


def test_evaluate_model_streams_every_image_into_the_metrics(smoke_data, tmp_path):
    ds = build_dataset("synthetic", smoke_data, split="val")
    ev = evaluate_model(Constant(ds.num_classes, 1), ds, batch_size=3, predictions_dir=tmp_path / "pred",
                        prediction_images=2)
    ref = SegmentationMetrics(ds.num_classes)
    for i in range(len(ds)):
        item = ds[i]
        ref.update(torch.ones_like(item["label"]), item["label"], item["instance"])
    expected = ref.compute()
    for key, value in expected.items():
        np.testing.assert_allclose(ev[key], value, equal_nan=True)
    assert ev["images"] == len(ds) and ev["seconds_per_image"] > 0 and ev["crf_seconds_per_image"] is None
    saved = sorted(tmp_path.joinpath("pred").glob("*.png"))
    assert [p.stem for p in saved] == sorted(ds.ids[:2])
    im = Image.open(saved[0])
    assert im.mode == "P" and set(np.unique(np.asarray(im)).tolist()) == {1}


def _run(smoke_data, tmp_path, method="baseline") -> Path:
    out = tmp_path / f"pspnet-{method}-s0"
    train(profile_config("smoke", method=method), out, data_root=smoke_data, progress=False)
    return out


def test_train_and_evaluate_share_the_code_and_write_every_metric(smoke_data, tmp_path):
    run = _run(smoke_data, tmp_path, "aaf")
    trained = json.loads((run / "metrics.json").read_text())
    keys = {"iou", "miou", "pixel_accuracy", "instance_iou", "instance_miou", "boundary_precision",
            "boundary_recall", "boundary_f", "mean_boundary_precision", "mean_boundary_recall",
            "mean_boundary_f", "miou_thin", "miou_large", "instance_miou_thin", "mean_boundary_recall_thin"}
    assert keys <= set(trained["metrics"])
    assert len(list((run / "predictions").glob("*.png"))) == 8
    again = evaluate_run(run, "val", "source", progress=False)
    assert again["metrics"] == trained["metrics"]          # same code, same numbers
    assert again["aaf"] == trained["aaf"] and again["config_hash"] == trained["config_hash"]
    path = run / "eval" / "val-source" / "metrics.json"
    assert json.loads(path.read_text()) == again
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    # a second call is skipped
    mtime = path.stat().st_mtime_ns
    assert evaluate_run(run, "val", "source", progress=False) == again and path.stat().st_mtime_ns == mtime


def _aaf(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "aafcore.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_aaf_evaluate_multiscale_crf_on_the_shifted_test_split(smoke_data, tmp_path):
    run = _run(smoke_data, tmp_path)
    r = _aaf("evaluate", str(run), "--split", "test", "--domain", "shifted", "--multiscale", "--crf",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "mIoU" in r.stdout and "CRF" in r.stdout
    result = json.loads((run / "eval" / "test-shifted-ms-crf" / "metrics.json").read_text())
    ev = result["evaluation"]
    assert (ev["split"], ev["domain"], ev["mode"]) == ("test", "shifted", "multi-scale+flip+crf")
    assert ev["inference"]["scales"] == list(PAPER_SCALES) and ev["inference"]["crf"]["bi_xy_std"] == 40
    assert result["provenance"]["crf_seconds_per_image"] > 0
    assert result["provenance"]["inference_seconds_per_image"] > 0
    test_set = build_dataset("synthetic", smoke_data, split="test", domain="shifted")
    assert ev["images"] == len(test_set)
    assert 0 <= result["metrics"]["pixel_accuracy"] <= 1
    preds = sorted((run / "eval" / "test-shifted-ms-crf" / "predictions").glob("*.png"))
    assert [p.stem for p in preds] == sorted(test_set.ids[: len(preds)]) and preds


def _cli_error(capsys, *args) -> str:
    """Run ``aaf *args`` in this process; it must fail with exit 2 and one ``aaf: error:`` line."""
    from aafcore.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:           # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("aaf: error:"), (code, err)
    return err[0]


def test_aaf_evaluate_rejects_bad_runs_in_one_line(smoke_data, tmp_path, capsys):
    assert "nowhere" in _cli_error(capsys, "evaluate", str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "metrics.json" in _cli_error(capsys, "evaluate", str(empty))
    run = _run(smoke_data, tmp_path)
    assert "dev" in _cli_error(capsys, "evaluate", str(run), "--split", "dev")
    assert "crop_size" in _cli_error(capsys, "evaluate", str(run), "--window", "4", "--no-progress")
    (run / "checkpoint.pt").unlink()
    assert "checkpoint.pt" in _cli_error(capsys, "evaluate", str(run), "--no-progress")
    assert not (run / "eval").exists()


def test_aaf_evaluate_rejects_an_unfinished_run(smoke_data, tmp_path, capsys):
    cfg = profile_config("smoke")
    run = tmp_path / "unfinished"
    train(cfg, run, data_root=smoke_data, progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    state["step"] = cfg.steps // 2
    torch.save(state, run / "checkpoint.pt")
    assert "not finished" in _cli_error(capsys, "evaluate", str(run), "--no-progress")


def test_crf_options_are_none_the_papers_or_named_parameters():
    from aafcore.crf import crf_params

    assert crf_params(False) is None and crf_params(None) is None
    assert crf_params(True) == CRFParams()
    tuned = crf_params({"bi_w": 3, "bi_xy_std": 15.0})
    assert (tuned.bi_w, tuned.bi_xy_std, tuned.bi_rgb_std, tuned.pos_xy_std) == (3.0, 15.0, 3.0, 1.0)
    with pytest.raises(ValueError, match="unknown CRF parameter 'sxy'"):
        crf_params({"sxy": 3})
    with pytest.raises(ValueError, match="bi_w must be a positive number"):
        crf_params({"bi_w": 0})
    with pytest.raises(ValueError, match="crf must be true, false or a mapping"):
        crf_params("yes")


def test_aaf_evaluate_rejects_malformed_crf_parameters_in_one_line(capsys, tmp_path):
    assert "KEY=NUMBER" in _cli_error(capsys, "evaluate", str(tmp_path), "--crf-params", "bi_w")
    assert "unknown CRF parameter 'w'" in _cli_error(capsys, "evaluate", str(tmp_path), "--crf-params", "w=3")


@pytest.mark.slow
def test_crf_grid_scores_every_cell_as_an_evaluation_would(smoke_data, tmp_path):
    """The grid's numbers are those of aaf evaluate with the same CRF (same code path for the
    probabilities and the labels), and the tie rule prefers the cell nearest the base."""
    from aafcore.evaluate import crf_grid

    run = _run(smoke_data, tmp_path)
    grid = {"bi_w": [1.0, 4.0], "bi_xy_std": [5.0, 40.0]}
    out = crf_grid(run, grid, CRFParams(bi_xy_std=5.0), split="val", out=tmp_path / "grid.json")
    assert json.loads((tmp_path / "grid.json").read_text())["chosen"] == out["chosen"]
    assert [(c["bi_w"], c["bi_xy_std"]) for c in out["cells"]] == [(1, 5), (1, 40), (4, 5), (4, 40)]
    plain = evaluate_run(run, "val", "source", progress=False, out_dir=tmp_path / "plain")
    assert out["no_crf_miou"] == pytest.approx(100 * plain["metrics"]["miou"])
    cell = out["cells"][3]
    crf = CRFParams(bi_w=cell["bi_w"], bi_xy_std=cell["bi_xy_std"])
    direct = evaluate_run(run, "val", "source", inference=InferenceConfig(crf=crf), progress=False,
                          out_dir=tmp_path / "crf")
    assert cell["miou"] == pytest.approx(100 * direct["metrics"]["miou"])
    best = max(c["miou"] for c in out["cells"])
    assert out["chosen_miou"] == best
    tied = [c for c in out["cells"] if c["miou"] == best]
    if (1.0, 5.0) in [(c["bi_w"], c["bi_xy_std"]) for c in tied]:
        assert out["chosen"] == {"bi_w": 1.0, "bi_xy_std": 5.0}
    with pytest.raises(ValueError, match="the grid must map CRF parameters"):
        crf_grid(run, {"sxy": [1.0]})
