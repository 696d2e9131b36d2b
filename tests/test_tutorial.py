"""The tutorial's helpers (aafcore.tutorial): pair counts, the pair loss, the toy trainings and
what AAF's adversary does in them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aafcore.losses import AdaptiveAffinityFieldLoss
from aafcore.tutorial import (CLASSES, METHODS, TUTORIAL_THREADS, pair_loss, pair_masks, seed_study, size_terms,
                              summary_rows, thin_structure_experiment, toy_labels, train_toy)

BG, BAR, DISK = (CLASSES.index(c) for c in ("background", "bar", "disk"))


@pytest.fixture(scope="module")
def aaf_run():
    """A short AAF run at the tutorial's thread count (the weights' path is thread-count dependent)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TUTORIAL_THREADS)
    try:
        yield train_toy("CE + AAF", steps=30, seed=0)
    finally:
        torch.set_num_threads(threads)


def test_pair_masks_by_hand():
    labels = np.array([[0, 0, 0],
                       [0, 1, 0],
                       [0, 0, 0]])
    edge, same = pair_masks(labels, 3)
    # only the centre has all 8 corners and their mirrors inside: its 8 pairs are all edges
    assert edge[1, 1] == 8 and same[1, 1] == 0
    # an edge pixel like (0, 1) has pairs only along the row (the mirror of a vertical offset falls
    # outside): offsets (0, -1) and (0, +1), both to label-0 pixels
    assert edge[0, 1] == 0 and same[0, 1] == 2
    assert edge.sum() + same.sum() == 8 + 4 * 2      # the centre, and the 4 edge-middle pixels
    assert toy_labels(32)[10, 8] == 1 and (toy_labels(32) == 2).sum() > 0


def test_pair_loss_kl_and_margin():
    assert pair_loss(0.9, 0.9, is_edge=False) == pytest.approx(0.0)
    kl = 0.1 * math.log(0.1 / 0.9) + 0.9 * math.log(0.9 / 0.1)
    assert pair_loss(0.9, 0.1, is_edge=False) == pytest.approx(kl)
    assert pair_loss(0.9, 0.1, is_edge=True, margin=3.0) == pytest.approx(max(0.0, 3.0 - kl))
    assert pair_loss(0.9, 0.0, is_edge=True, margin=1.0) == 0.0      # beyond the margin: no force
    # what the tutorial's text says: from a centre at 0.9 the KL is at most log(1/0.1), so m = 3 never
    # reaches zero and m = 1.5 does
    q = np.linspace(0, 1, 201)
    assert max(pair_loss(0.9, v, False) for v in q) == pytest.approx(math.log(10), abs=1e-3)
    assert min(pair_loss(0.9, v, True, 3.0) for v in q) > 0.6
    assert min(pair_loss(0.9, v, True, 1.5) for v in q) == 0.0


@pytest.mark.parametrize("weight_by", ["label", "channel"])
def test_size_terms_are_the_coefficients_of_the_weights_and_give_the_adversarys_gradient(weight_by):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 12, 12, generator=gen)
    labels = torch.randint(0, 3, (2, 12, 12), generator=gen)
    labels[0, :2] = 255                                         # ignored pixels too
    aaf = AdaptiveAffinityFieldLoss(3, kernel_sizes=(3, 5, 7), margin=2.0, lambda_edge=0.7, weight_by=weight_by)
    with torch.no_grad():
        aaf.edge_logits.copy_(torch.randn(3, 3, generator=gen))
        aaf.not_edge_logits.copy_(torch.randn(3, 3, generator=gen))
    terms = size_terms(aaf, logits, labels)
    assert terms["edge"].shape == terms["not_edge"].shape == (3, 3)
    w_e, w_n = (w.detach().double().numpy() for w in aaf.weights())
    loss = aaf(logits, labels)
    # L_AAF = sum_ck w^e_ck A^e_ck + w^n_ck A^n_ck
    assert loss.item() == pytest.approx((w_e * terms["edge"]).sum() + (w_n * terms["not_edge"]).sum(), rel=1e-5)
    loss.backward()
    # d L / d logit_ck = w_ck (A_ck - sum_j w_cj A_cj): what train_toy records as the adversary's signal
    for grad, w, a in ((aaf.edge_logits.grad, w_e, terms["edge"]), (aaf.not_edge_logits.grad, w_n, terms["not_edge"])):
        expected = w * (a - (w * a).sum(1, keepdims=True))
        np.testing.assert_allclose(grad.double().numpy(), expected, rtol=1e-4, atol=1e-7)


def test_the_adversary_moves_the_weights_towards_the_sizes_its_signal_favours(aaf_run):
    r = aaf_run
    assert r["kernel_sizes"] == (3, 5, 7)
    w = r["edge_weights"]
    assert w.shape == (31, 3, 3) and r["not_edge_weights"].shape == (31, 3, 3)
    assert r["edge_signal"].shape == (30, 3, 3)
    np.testing.assert_allclose(w[0], 1 / 3)                     # the uniform start
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)       # a softmax over sizes per class
    # ascent: for every class the size with the largest mean signal has gained weight most, and the one
    # with the smallest has lost most (the weights of a minimiser would go the other way)
    signal = r["edge_signal"].mean(0)
    change = w[-1] - w[0]
    assert (change.argmax(1) == signal.argmax(1)).all() and (change.argmin(1) == signal.argmin(1)).all()
    # in this toy: at the start every edge pair costs about the margin and the disk's edge pairs grow
    # with the field while the thin bar's do not, so the disk's weight goes to 7 and the background's to 3
    assert change[DISK, 2] > 1e-3 and change[BG, 0] > 1e-3
    eff = r["effective_size"]
    assert eff[-1, DISK] > 5 > eff[-1, BG]


def test_effective_size_is_the_weighted_mean_size_within_the_sizes(aaf_run):
    for weights, eff in ((aaf_run["edge_weights"], aaf_run["effective_size"]),
                         (aaf_run["not_edge_weights"], aaf_run["effective_size_not_edge"])):
        assert eff.shape == (31, 3)
        np.testing.assert_allclose(eff, weights @ np.array([3.0, 5.0, 7.0]), rtol=1e-6)
        assert ((eff >= 3) & (eff <= 7)).all()
        np.testing.assert_allclose(eff[0], 5.0)


def test_toy_runs_are_reproducible_per_seed_and_share_their_start():
    a = thin_structure_experiment(steps=3, size=16)
    b = thin_structure_experiment(steps=3, size=16)
    assert tuple(a) == METHODS
    for name in a:
        assert a[name]["iou"] == b[name]["iou"]
        assert np.array_equal(a[name]["prediction"], b[name]["prediction"])
        assert np.array_equal(a[name]["labels"], a["CE"]["labels"])   # the same test images
    np.testing.assert_array_equal(a["CE + AAF"]["edge_weights"], b["CE + AAF"]["edge_weights"])
    other = train_toy("CE + AAF", steps=3, seed=1, size=16)
    assert not np.array_equal(other["edge_weights"], a["CE + AAF"]["edge_weights"])
    assert "edge_weights" not in a["CE"] and "edge_weights" not in a["CE + affinity"]


def test_summary_rows_one_per_seed_and_method():
    runs = seed_study((0, 1), steps=2, size=16, methods=("CE", "CE + AAF"))
    rows = summary_rows(runs)
    assert [(r["seed"], r["method"]) for r in rows] == [(0, "CE"), (0, "CE + AAF"), (1, "CE"), (1, "CE + AAF")]
    for r, (seed, method) in zip(rows, [(0, "CE"), (0, "CE + AAF"), (1, "CE"), (1, "CE + AAF")]):
        ious = [r[f"IoU {c}"] for c in CLASSES]
        assert r["mIoU"] == pytest.approx(np.nanmean(ious))
        assert r["bar boundary F"] == runs[seed][method]["bar_boundary_f"]


@pytest.mark.slow
def test_seed_study_in_worker_processes_gives_the_same_results():
    threads = torch.get_num_threads()
    torch.set_num_threads(TUTORIAL_THREADS)
    try:
        serial = seed_study((0, 1), steps=4, size=16)
        parallel = seed_study((0, 1), steps=4, size=16, workers=2)
    finally:
        torch.set_num_threads(threads)
    for seed in serial:
        assert list(parallel[seed]) == list(METHODS)
        for method in METHODS:
            assert parallel[seed][method]["iou"] == serial[seed][method]["iou"]
            assert np.array_equal(parallel[seed][method]["prediction"], serial[seed][method]["prediction"])
        np.testing.assert_array_equal(parallel[seed]["CE + AAF"]["edge_weights"],
                                      serial[seed]["CE + AAF"]["edge_weights"])


def test_train_toy_rejects_bad_input_in_one_line():
    with pytest.raises(ValueError, match="method must be one of"):
        train_toy("CE + CRF", steps=1)
    with pytest.raises(ValueError, match="weight must be > 0"):
        train_toy("CE + AAF", steps=1, weight=0.0)
