"""Figs. 4 and 5 and the unseen-domain page: the learned kernel-size weights as read from the runs,
the rule that picks Fig. 5's zooms, the thin-class IoU of the images shown, the per-seed domain
gains, the text the pages state, and the figures' legibility at the book's width."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aafcore import report
from aafcore.report import domain
from test_report import NAMES, _write

matplotlib.use("Agg")

INFO = {"names": NAMES, "groups": {"large": ["sky", "ground"], "thin": ["pole", "wire"]},
        "widths": {"sky": 50, "ground": 60, "pole": 3, "wire": 1.5}}


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _aaf_run(root: Path, seed: int, edge, not_edge, kernel_sizes=(3, 5, 7), with_weights=True) -> Path:
    """An AAF run whose metrics.json carries ``edge`` and ``not_edge`` weights ``[C, K]``."""
    ks = "_".join(map(str, kernel_sizes))
    run = f"pspnet-aaf-s{seed}" if tuple(kernel_sizes) == (3, 5, 7) else f"pspnet-aaf-k{ks}-s{seed}"
    _write(root, run, method="aaf", seed=seed, kernel_sizes=kernel_sizes)
    path = root / "cpu" / "synthetic" / run / "metrics.json"
    result = json.loads(path.read_text())
    k = np.asarray(kernel_sizes, float)
    result["aaf"] = {"kernel_sizes": list(kernel_sizes), "effective_kernel_size": list(np.asarray(edge) @ k),
                     "effective_kernel_size_not_edge": list(np.asarray(not_edge) @ k)}
    if with_weights:
        result["aaf"].update(edge_weights=np.asarray(edge).tolist(), not_edge_weights=np.asarray(not_edge).tolist())
    path.write_text(json.dumps(result))
    return path


@pytest.fixture
def aaf_results(tmp_path) -> Path:
    """Two AAF seeds with random softmax weights (ground's edge weight almost all on k = 3, the
    thin classes' too: a large class below the thin mean), a {3, 5} run and a baseline."""
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        edge = _softmax(rng.normal(size=(4, 3)))
        edge[1] = [0.9, 0.06, 0.04]                       # ground: 3.28
        edge[2], edge[3] = [0.5, 0.3, 0.2], [0.6, 0.2, 0.2]   # pole 4.4, wire 4.2
        edge[0] = [0.1, 0.2, 0.7]                         # sky: 6.2
        _aaf_run(tmp_path, seed, edge, _softmax(0.1 * rng.normal(size=(4, 3))))
    _aaf_run(tmp_path, 0, _softmax(rng.normal(size=(4, 2))), _softmax(rng.normal(size=(4, 2))), (3, 5))
    _write(tmp_path, "pspnet-baseline-s0")
    return tmp_path


# --------------------------------------------------------------------------- Fig. 4


def test_kernel_weights_sum_to_one_per_class_and_term_and_give_the_stored_sizes(aaf_results):
    df = report.load_results("cpu", "synthetic", aaf_results)
    weights = report.kernel_weights_frame(df)
    assert set(weights["seed"]) == {0, 1} and set(weights["k"]) == {3, 5, 7}     # the {3, 5} run is left out
    assert len(weights) == 2 * 4 * 2 * 3                                        # seeds x classes x terms x sizes
    sums = weights.groupby(["seed", "class", "term"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-12)
    sizes = report.effective_sizes(weights).set_index(["seed", "class", "term"])["size"]
    for seed in (0, 1):
        aaf = json.loads((aaf_results / "cpu" / "synthetic" / f"pspnet-aaf-s{seed}" / "metrics.json").read_text())["aaf"]
        for name, edge, not_edge in zip(NAMES, aaf["effective_kernel_size"], aaf["effective_kernel_size_not_edge"]):
            assert sizes[(seed, name, "edge")] == pytest.approx(edge)
            assert sizes[(seed, name, "non-edge")] == pytest.approx(not_edge)
    assert report.kernel_weights_frame(df, kernel_sizes="3,5")["k"].max() == 5


def test_runs_without_stored_weights_are_skipped(tmp_path):
    _aaf_run(tmp_path, 0, np.full((4, 3), 1 / 3), np.full((4, 3), 1 / 3), with_weights=False)
    weights = report.kernel_weights_frame(report.load_results("cpu", "synthetic", tmp_path))
    assert weights.empty and list(weights.columns) == ["seed", "class", "term", "k", "weight"]
    with pytest.raises(FileNotFoundError, match="no AAF run"):
        report.plot_kernel_weights(weights, INFO)


def test_kernel_weight_table_orders_classes_by_width_and_averages_seeds(aaf_results):
    weights = report.kernel_weights_frame(report.load_results("cpu", "synthetic", aaf_results))
    t = report.kernel_weight_table(weights, INFO)
    assert list(t.index) == ["wire", "pole", "sky", "ground"]                   # thinnest first
    assert t.loc["ground", ("edge term", "w(k=3)")] == pytest.approx(0.9)
    assert t.loc["ground", ("edge term", "size")] == pytest.approx(0.9 * 3 + 0.06 * 5 + 0.04 * 7)
    assert t.loc["ground", ("edge term", "± std")] == pytest.approx(0.0, abs=1e-12)  # the same in both seeds
    mean = weights[(weights["class"] == "sky") & (weights["term"] == "non-edge") & (weights["k"] == 7)]["weight"].mean()
    assert t.loc["sky", ("non-edge term", "w(k=7)")] == pytest.approx(mean)
    assert (t[("", "seeds")] == 2).all() and t.loc["pole", ("", "group")] == "thin"


def test_kernel_findings_state_the_seeds_and_flag_a_large_class_with_a_small_size(aaf_results):
    weights = report.kernel_weights_frame(report.load_results("cpu", "synthetic", aaf_results))
    text = report.kernel_findings(weights, INFO)
    assert "2 seeds (0, 1)" in text
    assert "*ground* (large, about 60 px wide) gets 3.28 px, below the thin classes' mean of 4.30 px" in text
    assert "The smallest effective size goes to *ground*" in text and "the largest to *sky* (6.20 px" in text
    assert "Our *person*" not in text                                           # no class shared with the paper
    # without the anomaly (ground's weights moved to k = 7), no anomaly is claimed
    calm = weights.copy()
    ground = (calm["class"] == "ground") & (calm["term"] == "edge")
    calm.loc[ground, "weight"] = calm.loc[ground, "k"].map({3: 0.0, 5: 0.0, 7: 1.0})
    assert "anomaly" not in report.kernel_findings(calm, INFO)
    assert "One seed only" in report.kernel_findings(weights[weights["seed"] == 0], INFO)
    assert "nothing to report" in report.kernel_findings(weights.iloc[0:0], INFO)


# --------------------------------------------------------------------------- Fig. 5


def test_thin_window_finds_the_window_with_most_thin_pixels():
    label = np.zeros((40, 50), np.uint8)
    label[5, 3:8] = 2                # 5 thin pixels top-left
    label[20:30, 31] = 3             # a 10-px vertical wire ...
    label[25, 35:38] = 2             # ... and 3 pole pixels beside it
    label[0:40, 0] = 1               # a large class: not counted
    row, col = report.thin_window(label, [2, 3], 8)
    window = label[row:row + 8, col:col + 8]
    assert np.isin(window, [2, 3]).sum() == 8 + 3
    assert (row, col) == (20, 30)    # the first of the tied windows in raster order
    with pytest.raises(ValueError, match="size must be in 1..40"):
        report.thin_window(label, [2], 41)


def test_thin_window_matches_brute_force_on_random_labels():
    rng = np.random.default_rng(1)
    for _ in range(5):
        label = rng.integers(0, 5, size=(23, 19))
        size = int(rng.integers(1, 19))
        counts = np.array([[np.isin(label[r:r + size, c:c + size], [3, 4]).sum() for c in range(19 - size + 1)]
                           for r in range(23 - size + 1)])
        row, col = report.thin_window(label, [3, 4], size)
        assert counts[row, col] == counts.max()
        assert (row, col) == np.unravel_index(np.argmax(counts), counts.shape)


class _Data:
    """A dataset as the figures read it: ids, load_raw, palette and class names."""

    def __init__(self, labels: dict[str, np.ndarray]):
        self.ids = list(labels)
        self._labels = labels
        self.class_names = NAMES
        self.palette = np.array([[70, 130, 180], [128, 64, 128], [153, 153, 153], [220, 20, 60]], np.uint8)

    def load_raw(self, index: int):
        label = self._labels[self.ids[index]]
        return np.zeros((*label.shape, 3), np.uint8), label, np.zeros_like(label)


def _png(folder: Path, ident: str, label: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette([0] * 768)
    im.save(folder / f"{ident}.png")


def _two_images():
    a = np.zeros((32, 32), np.uint8)
    a[4:28, 10] = 2                                   # 24 thin pixels
    b = np.zeros((32, 32), np.uint8)
    b[4:28, 10:12] = 2                                # 48
    b[2, 2:6] = 3                                     # + 4
    c = np.ones((32, 32), np.uint8)                   # no thin pixel
    return {"a": a, "b": b, "c": c}


def test_thin_rich_ids_rank_images_by_their_thin_pixels():
    data = _Data(_two_images())
    assert report.thin_rich_ids(data, ["a", "b", "c"], [2, 3], 2) == ["b", "a"]
    assert report.thin_rich_ids(data, ["c", "a"], [2, 3], 5) == ["a", "c"]


def test_thin_iou_of_the_images_shown(tmp_path):
    labels = _two_images()
    data = _Data(labels)
    half = labels["b"].copy()
    half[16:28, 10:12] = 0                            # half the pole missed, the wire kept
    for ident, label in labels.items():
        _png(tmp_path / "perfect", ident, label)
        _png(tmp_path / "nothing", ident, np.zeros_like(label))
        _png(tmp_path / "half", ident, half if ident == "b" else label)
    dirs = {"perfect": tmp_path / "perfect", "nothing": tmp_path / "nothing", "half": tmp_path / "half"}
    iou = report.thin_iou_table(data, dirs, ["a", "b"], [2, 3])
    assert iou["perfect"] == pytest.approx(100.0) and iou["nothing"] == pytest.approx(0.0)
    assert iou["half"] == pytest.approx(100 * ((24 + 24) / (24 + 48) + 1.0) / 2)
    assert report.saved_ids(dirs) == ["a", "b", "c"]
    assert report.saved_ids({**dirs, "missing": tmp_path / "none"}) == []


def test_evaluation_prediction_dirs_point_at_the_evaluations_folder(tmp_path):
    runs = tmp_path / "cpu" / "synthetic"
    (runs / "pspnet-baseline-s0" / "eval" / "val-source" / "predictions").mkdir(parents=True)
    (runs / "pspnet-aaf-s0" / "predictions").mkdir(parents=True)
    dirs = report.evaluation_prediction_dirs("cpu", "synthetic", tmp_path, "val-shifted", methods=("baseline", "aaf"))
    assert dirs == {"PSPNet": runs / "pspnet-baseline-s0" / "eval" / "val-shifted" / "predictions",
                    "AAF": runs / "pspnet-aaf-s0" / "eval" / "val-shifted" / "predictions"}
    assert report.evaluation_prediction_dirs("cpu", "synthetic", tmp_path, methods=("aaf",)) == {
        "AAF": runs / "pspnet-aaf-s0" / "predictions"}


def _texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]


def test_figures_are_legible_at_the_books_width(aaf_results, tmp_path):
    """Every visible text is at least 11 pt on a figure at most BOOK_WIDTH wide (>= 15 px in the
    book's 770-px column); Fig. 5 has a full and a zoomed row per image and a class legend."""
    import matplotlib.pyplot as plt

    weights = report.kernel_weights_frame(report.load_results("cpu", "synthetic", aaf_results))
    fig4 = report.plot_kernel_weights(weights, INFO)
    labels = _two_images()
    for ident, label in labels.items():
        _png(tmp_path / "p", ident, label)
    fig5 = report.plot_comparison(_Data(labels), {"PSPNet": tmp_path / "p", "AAF": tmp_path / "p"}, ["b", "a"],
                                  [2, 3], crop=8, title="source")
    fig5.canvas.draw()
    for fig in (fig4, fig5):
        assert fig.get_figwidth() <= report.BOOK_WIDTH
        small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < 11]
        assert not small, small
    assert len(fig5.axes) == 2 * 2 * 4
    legend = fig5.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == NAMES
    assert [ax.get_title() for ax in fig5.axes[:4]] == ["image", "ground truth", "PSPNet", "AAF"]
    plt.close("all")


# --------------------------------------------------------------------------- the unseen domain


@pytest.fixture
def domain_results(tmp_path) -> Path:
    """Baseline and AAF, seeds 0-2, on the source and the shifted domain; AAF's seed 2 lacks a
    shifted evaluation."""
    for seed, d in enumerate((0.0, 0.02, -0.01)):
        _write(tmp_path, f"pspnet-baseline-s{seed}", seed=seed, iou=(0.9, 0.8, 0.2 + d, 0.1))
        _write(tmp_path, f"pspnet-baseline-s{seed}", seed=seed, iou=(0.7, 0.6, 0.1 + d, 0.05), tag="val-shifted",
               domain="shifted", pixel_accuracy=0.7)
        _write(tmp_path, f"pspnet-aaf-s{seed}", method="aaf", seed=seed, iou=(0.9, 0.8, 0.3 + d, 0.1))
        if seed < 2:
            _write(tmp_path, f"pspnet-aaf-s{seed}", method="aaf", seed=seed, iou=(0.7, 0.6, 0.1 + 2 * d, 0.25),
                   tag="val-shifted", domain="shifted", pixel_accuracy=0.75)
    return tmp_path


def test_domain_gains_are_paired_by_seed_on_both_domains(domain_results):
    df = report.load_results("cpu", "synthetic", domain_results)
    gains = domain.domain_gain_frame(df).set_index(["method", "metric"])
    assert list(gains.index) == [("AAF", "miou"), ("AAF", "pixel_accuracy")]
    miou = gains.loc[("AAF", "miou")]
    assert miou["seeds"] == (0, 1)                                  # seed 2 has no shifted evaluation
    np.testing.assert_allclose(miou["source"], [100 * 0.1 / 4] * 2)
    np.testing.assert_allclose(miou["shifted"], [100 * 0.2 / 4, 100 * (0.2 + 0.02) / 4])
    assert miou["shifted > source"] == 2
    assert miou["paper gain (GTA5)"] == pytest.approx(36.52 - 35.06)
    assert gains.loc[("AAF", "pixel_accuracy"), "shifted mean"] == pytest.approx(5.0)
    text = domain.domain_findings(df, domain.domain_gain_frame(df))
    assert "**AAF** (n = 2, seeds 0, 1)" in text and "+5.25 ± 0.35 points on the shifted domain" in text
    assert "in 2 of 2 seeds" in text and "descriptions, not tests" in text
    assert "36.3 on the shifted one" in text                       # PSPNet's shifted mIoU over its 3 seeds
    limits = domain.domain_limitations(domain.domain_gain_frame(df), 200)
    assert "2 seeds per method" in limits and "200 shifted val images" in limits


def test_domain_findings_without_shifted_runs():
    df = pd.DataFrame({"tag": ["val-source"], "base": ["pspnet"], "method": ["baseline"], "seed": [0],
                       "kernel_sizes": [""], "miou": [0.5]})
    gains = domain.domain_gain_frame(df)
    assert gains.empty and "nothing to report" in domain.domain_findings(df, gains)
