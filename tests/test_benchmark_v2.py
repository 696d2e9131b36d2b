"""Benchmark v2 (the ``study`` profile) and aafcore.datasets.geometry_stats: the spec, its meta and
splits, determinism, the designed widths in logit cells as measured on generated images, the
edge-pair shares, exact statistics on hand-made label maps, and v1 left as it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aafcore.datasets import (GENERATOR_VERSION, STUDY_GENERATOR_VERSION, SYNTHETIC_PROFILES, StudySpec,
                              SyntheticSpec, build_dataset, class_groups, generate_synthetic, render_synthetic,
                              study_class_table, synthetic_class_table, synthetic_meta)
from aafcore.datasets.geometry_stats import (benchmark_statistics, downsample_nearest, edge_pair_counts,
                                             edge_pair_shares, logit_size, width_counts, width_quantiles)
from aafcore.losses import downsample_labels
from aafcore.pairs import pair_tables
from checks import tree_hashes

STUDY = SYNTHETIC_PROFILES["study"]
SMALL = dataclasses.replace(STUDY, train=8, tuning=2, val=2, test=1, val_shifted=1, test_shifted=1)
NAMES = [c["name"] for c in study_class_table()]
LARGE, MID, THIN = ("sky", "ground", "building"), ("animal",), ("pole", "fence", "wheel", "person")




@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("study") / "small", SMALL)


@pytest.fixture(scope="module")
def stats(small_root):
    return benchmark_statistics(small_root, "train")


# --------------------------------------------------------------------------- v1 unchanged


def test_v1_profiles_are_unchanged():
    """meta.json, class table and three rendered images of every v1 profile, as the code before v2 gave them."""
    meta_sha = {"smoke": "b657315256b29ba1", "cpu": "bc60d0372d69604b", "gpu": "07af60d11328b64c"}
    render_sha = {"smoke": "caf3c681e594e080", "cpu": "bd8785e41c94c58f", "gpu": "50accb9e6abdf9e8"}
    for name in meta_sha:
        spec = SYNTHETIC_PROFILES[name]
        assert type(spec) is SyntheticSpec
        text = json.dumps(synthetic_meta(spec), indent=2, sort_keys=True) + "\n"  # as generate_synthetic writes it
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == meta_sha[name], name
        h = hashlib.sha256()
        for split, domain, i in (("train", "source", 0), ("val", "shifted", 1), ("test", "source", 2)):
            for arr in render_synthetic(spec, split, domain, i):
                h.update(arr.tobytes())
        assert h.hexdigest()[:16] == render_sha[name], name
    table = json.dumps(synthetic_class_table(), sort_keys=True).encode()
    assert hashlib.sha256(table).hexdigest()[:16] == "1b5936be43102cd4"
    assert GENERATOR_VERSION == "aafcore-synthetic-2"
    with pytest.raises(ValueError):  # v1 has no tuning split
        render_synthetic(SYNTHETIC_PROFILES["smoke"], "tuning", "source", 0)


# --------------------------------------------------------------------------- spec, meta, splits


def test_study_spec_and_meta():
    assert isinstance(STUDY, StudySpec)
    assert STUDY.image_size % 8 == 0 and STUDY.image_size >= 320  # 256 px crops; >= 40 x 40 logits at eval
    assert logit_size(256) == 32
    assert list(STUDY.splits()) == ["train", "tuning", "val", "val_shifted", "test", "test_shifted"]
    assert STUDY.tuning < STUDY.val <= STUDY.train and STUDY.val_shifted == STUDY.val
    meta = synthetic_meta(STUDY)
    assert meta["generator"] == STUDY_GENERATOR_VERSION != GENERATOR_VERSION
    assert meta["spec"] == dataclasses.asdict(STUDY) and meta["benchmark"] == "v2" and meta["stride"] == 8
    assert meta["splits"]["tuning"] == STUDY.tuning and "tuning" in meta["domains"]["source"]
    assert meta["domains"]["shifted"] == ["val_shifted", "test_shifted"]
    assert meta["class_names"] == NAMES and len(NAMES) == 8
    groups = {c["name"]: c["group"] for c in meta["classes"]}
    assert [n for n in NAMES if groups[n] == "large"] == list(LARGE)
    assert [n for n in NAMES if groups[n] == "mid"] == list(MID)
    assert [n for n in NAMES if groups[n] == "thin"] == list(THIN)
    for c in meta["classes"]:
        lo, hi = c["width_cells"]
        assert {"large": lo >= 10, "mid": 2 <= lo and hi <= 7, "thin": lo == 0.5 and 2 <= hi <= 3}[c["group"]], c
    for bad in ({"image_size": 100}, {"image_size": 32}, {"tuning": -1}, {"train": 1.5}, {"jpeg_quality": 0}):
        with pytest.raises(ValueError):
            dataclasses.replace(STUDY, **bad)


def test_generate_small_study(tmp_path, small_root):
    meta = json.loads((small_root / "meta.json").read_text())
    assert meta == json.loads(json.dumps(synthetic_meta(SMALL)))
    lists = sorted(p.stem for p in (small_root / "ImageSets" / "Segmentation").iterdir())
    assert lists == sorted(["train", "tuning", "val", "val_shifted", "test", "test_shifted"])
    # deterministic: the same bytes again, with two workers (another order of generation)
    again = generate_synthetic(tmp_path / "again", SMALL, workers=2)
    assert tree_hashes(again) == tree_hashes(small_root)
    _, label, instance = render_synthetic(SMALL, "tuning", "source", 1)
    assert np.array_equal(np.array(Image.open(small_root / "SegmentationClass" / "tuning_00001.png")), label)
    assert np.array_equal(np.array(Image.open(small_root / "SegmentationObject" / "tuning_00001.png")), instance)
    # tuning is its own set of scenes; another seed gives other scenes
    assert not np.array_equal(render_synthetic(SMALL, "train", "source", 1)[1], label)
    other = dataclasses.replace(SMALL, seed=1)
    assert not np.array_equal(render_synthetic(other, "tuning", "source", 1)[1], label)
    assert generate_synthetic(small_root, SMALL) == small_root  # complete: returns at once


def test_study_reads_as_a_dataset_with_instances(small_root):
    ds = build_dataset("synthetic", small_root, "tuning")
    assert len(ds) == SMALL.tuning and ds.num_classes == 8
    item = ds[0]
    assert item["image"].shape == (3, STUDY.image_size, STUDY.image_size)
    label, instance = item["label"], item["instance"]
    assert ((label >= 2) == (instance > 0)).all()  # things have instance ids, sky and ground none
    assert len(torch.unique(instance)) > 3
    assert class_groups(ds) == {"large": [0, 1, 2], "mid": [3], "thin": [4, 5, 6, 7]}
    shifted = build_dataset("synthetic", small_root, "val", domain="shifted")
    assert len(shifted) == SMALL.val_shifted


# --------------------------------------------------------------------------- statistics of the benchmark


def test_widths_in_logit_cells_fall_in_the_designed_ranges(stats):
    w = {r["class"]: r for r in stats["widths"]}
    assert stats["images"] == SMALL.train and all(w[n]["ridge_points"] > 1000 for n in NAMES)
    for n in THIN:  # thin: about 0.5 to 3 cells
        assert w[n]["q25"] >= 0.4 and 0.5 <= w[n]["q50"] <= 1.5 and w[n]["q95"] <= 3.5, w[n]
        assert w[n]["ge_3"] < 0.02
    assert max(w[n]["q95"] for n in THIN) >= 2.5  # the thick poles
    # mid-size: 2-6.5 cells
    assert w["animal"]["q50"] >= 1.5, w["animal"]
    assert w["animal"]["q50"] <= 4.5, w["animal"]
    assert w["animal"]["q95"] <= 7, w["animal"]
    assert w["animal"]["ge_3"] >= 0.2, w["animal"]
    for n in LARGE:  # large: 10+ cells for a decent fraction (the ridge also runs between objects)
        assert w[n]["q95"] >= 10 and w[n]["ge_10"] >= 0.05 and w[n]["q50"] >= 2, w[n]
    assert min(w[n]["q50"] for n in LARGE) > w["animal"]["q50"] * 0.8 > max(w[n]["q50"] for n in THIN)


def test_edge_pair_share_is_larger_for_thin_classes_and_grows_with_k(stats):
    share = {(r["class"], r["k"]): r["share"] for r in stats["edge_pairs"]}
    for k in (3, 5, 7):
        assert min(share[n, k] for n in THIN) > share["animal", k] > max(share[n, k] for n in LARGE)
    for n in NAMES:
        assert share[n, 3] < share[n, 5] < share[n, 7], n
    assert all(share[n, 3] > 0.4 for n in THIN) and all(share[n, 7] < 0.35 for n in LARGE)


# --------------------------------------------------------------------------- geometry_stats, exactly


@pytest.mark.parametrize("width", [3, 4, 5, 8, 24])
def test_a_bar_has_its_width_on_its_whole_ridge(width):
    label = np.zeros((64, 80), np.uint8)
    label[10:50, 20:20 + width] = 1  # a vertical bar, 40 px long
    rec = width_quantiles([label], 2, ["bg", "bar"])[1]
    cells = width / 8
    assert rec["q05"] == rec["q50"] == rec["q95"] == rec["mean"] == pytest.approx(cells)
    assert rec["ridge_points"] == 2 * (2 * 40 - 2 * width + 2)  # two half-pixel samples across, ends excluded
    assert rec["ge_3"] == (1.0 if width >= 24 else 0.0)
    horizontal = width_quantiles([label.T.copy()], 2)[1]
    assert horizontal["q50"] == pytest.approx(cells) and horizontal["ridge_points"] == rec["ridge_points"]


def test_widths_border_ignore_and_absent_classes():
    label = np.full((40, 40), 255, np.uint8)
    label[:, :12] = 2  # 12 px wide along the left border: the border is an edge
    label[20:30, 20:30] = 0  # a 10 px square: width 10 at its centre only
    recs = width_quantiles([label], 4, stride=8)
    assert recs[2]["q50"] == pytest.approx(12 / 8) and recs[2]["q05"] == pytest.approx(12 / 8)
    assert recs[0]["q95"] == pytest.approx(10 / 8) and recs[0]["ridge_points"] == 4
    assert recs[1]["ridge_points"] == 0 and np.isnan(recs[1]["q50"])  # absent
    assert len(width_counts(label, 4)) == 4 and width_counts(label, 4)[3].size == 0
    disc = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 31.5) ** 2 + (xx - 31.5) ** 2 <= 20 ** 2] = 1  # diameter 40 px = 5 cells
    assert width_quantiles([disc], 2)[1]["q95"] == pytest.approx(5.0, abs=0.2)  # a digitised circle: within 1.6 px


def test_edge_pair_counts_by_hand():
    small = np.zeros((10, 10), np.uint8)
    small[:, 5:] = 1  # two halves
    pairs, edges = edge_pair_counts(small, 2, (3, 5))
    # k = 3: class 0 centres see 8 * 5 * 2 + 10 * 4 * 2 + 8 * 4 * 4 = 288 pairs; edges: the column
    # next to the boundary, offsets (0, 1) (10 rows) and (+-1, 1) (8 rows each) = 26
    assert pairs.tolist() == [[288, 288], [192, 192]] and edges.tolist() == [[26, 26], [44, 44]]
    ignored = small.copy()
    ignored[0, 0] = 255  # drops the pairs with this cell as centre, neighbour or opposite neighbour
    assert edge_pair_counts(ignored, 2, (3,))[0][0, 0] < 288
    recs = edge_pair_shares([np.kron(small, np.ones((8, 8), np.uint8))], 2, ["a", "b"], kernel_sizes=(3, 5))
    assert [(r["class"], r["k"], r["pairs"], r["edge_pairs"]) for r in recs] == [
        ("a", 3, 288, 26), ("a", 5, 192, 44), ("b", 3, 288, 26), ("b", 5, 192, 44)]
    assert recs[0]["share"] == pytest.approx(26 / 288)
    with pytest.raises(ValueError):
        edge_pair_counts(small, 2, (4,))


def test_edge_pairs_match_the_affinity_loss_pairs():
    """Same pairs as aafcore.pairs (centre, i + o and i - o inside and not ignored)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 23, 31)).astype(np.uint8)
    labels[0, 3:9, 5:12] = 255
    labels[1, :, 0] = 255
    t = torch.from_numpy(labels).long()
    valid = t != 255
    for k in (3, 5, 7):
        _, y_j, pair_valid = pair_tables(t, valid, ((k - 1) // 2,))
        y_i = t[:, None].expand_as(y_j)
        counts = [edge_pair_counts(lab, 4, (k,)) for lab in labels]
        for c in range(4):
            centred = pair_valid & (y_i == c)
            assert sum(p[0, c] for p, _ in counts) == int(centred.sum())
            assert sum(e[0, c] for _, e in counts) == int((centred & (y_j != c)).sum())


@pytest.mark.parametrize("shape", [(384, 384), (256, 256), (100, 77), (321, 321)])
def test_downsampling_is_the_training_rule(shape):
    label = np.random.default_rng(1).integers(0, 9, shape).astype(np.uint8)
    size = (logit_size(shape[0]), logit_size(shape[1]))
    want = downsample_labels(torch.from_numpy(label)[None].long(), size)[0].numpy()
    assert np.array_equal(downsample_nearest(label), want)
