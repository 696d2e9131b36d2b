"""Independent checks of ``aafcore.metrics`` (pixel IoU, instance-wise IoU, boundary P/R/F).

Everything here is derived from the metric definitions, not from the implementation:

* hand-computed cases, each with its arithmetic spelled out in comments;
* small brute-force references written in plain numpy / pure Python: a double loop over pixels
  for boundary pixels, a dense distance matrix plus Kuhn's augmenting-path algorithm for the
  maximum-cardinality one-to-one matching, ``np.add.at`` for confusion matrices;
* the official Cityscapes pixel-level evaluation (``cityscapesscripts``) for per-class IoU / mIoU.

Conventions (definitions under test): values are fractions; ``iou_c = TP/(TP+FP+FN)`` from the
dataset-wide confusion matrix with ignored ground-truth pixels skipped; boundary pixels are pixels
with a differently-valued 4-neighbour inside the image (ignored ground-truth pixels never are);
per image and class, predicted and ground-truth boundary pixels are matched one-to-one when their
Euclidean distance is ``<= boundary_tolerance * sqrt(H^2 + W^2)``; recall / precision / F are
dataset sums; any 0/0 is NaN; F is 0 when P or R is 0 (even if the other is NaN: a class that
is missed entirely counts as F = 0) and NaN only when both are NaN.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from aafcore.metrics import SegmentationMetrics, boundary_mask, group_means, match_count

NAN = float("nan")
PER_CLASS_KEYS = ("iou", "instance_iou", "boundary_precision", "boundary_recall", "boundary_f")
SCALAR_KEYS = ("miou", "pixel_accuracy", "instance_miou",
               "mean_boundary_precision", "mean_boundary_recall", "mean_boundary_f")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def _is_nan(x) -> bool:
    return isinstance(x, (float, np.floating)) and math.isnan(x)


def assert_values(actual, expected, tol=1e-12, what=""):
    """Element-wise comparison of (lists of) floats; NaN must be matched by NaN."""
    actual = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    expected = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    assert actual.shape == expected.shape, (what, actual, expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if math.isnan(e):
            assert math.isnan(a), f"{what}[{i}]: expected NaN, got {a}"
        else:
            assert not math.isnan(a) and abs(a - e) <= tol, f"{what}[{i}]: expected {e!r}, got {a!r}"


def assert_results_equal(r1, r2, tol=1e-12):
    for key in PER_CLASS_KEYS + SCALAR_KEYS:
        assert_values(r1[key], r2[key], tol, key)


def evaluate(samples, num_classes, ignore_index=255, tol=0.0075):
    """Feed ``[(pred, gt, instances or None), ...]`` to a fresh SegmentationMetrics."""
    m = SegmentationMetrics(num_classes, ignore_index=ignore_index, boundary_tolerance=tol)
    for pred, gt, inst in samples:
        m.update(pred, gt, inst)
    return m.compute()


def a(rows):
    """Label map from a list of rows."""
    return np.array(rows, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# brute-force references (written from the definitions)
# ----------------------------------------------------------------------------------------------

def ref_boundary(label, ignore_index=None):
    """Double loop: a pixel is a boundary pixel iff one of its in-image 4-neighbours differs;
    pixels whose own value is ``ignore_index`` are never boundary pixels."""
    h, w = label.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            v = label[y, x]
            if ignore_index is not None and v == ignore_index:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and label[yy, xx] != v:
                    out[y, x] = True
                    break
    return out


def ref_match_count(a_yx, b_yx, radius):
    """Maximum-cardinality bipartite matching (Kuhn's augmenting paths) on the dense adjacency
    'Euclidean distance <= radius'."""
    a_yx = np.asarray(a_yx, dtype=np.float64).reshape(-1, 2)
    b_yx = np.asarray(b_yx, dtype=np.float64).reshape(-1, 2)
    if len(a_yx) == 0 or len(b_yx) == 0:
        return 0
    diff = a_yx[:, None, :] - b_yx[None, :, :]
    adjacency = np.hypot(diff[..., 0], diff[..., 1]) <= radius
    neighbours = [np.flatnonzero(row).tolist() for row in adjacency]
    partner_of_b = [-1] * len(b_yx)

    def augment(i, seen):
        for j in neighbours[i]:
            if not seen[j]:
                seen[j] = True
                if partner_of_b[j] == -1 or augment(partner_of_b[j], seen):
                    partner_of_b[j] = i
                    return True
        return False

    return sum(augment(i, [False] * len(b_yx)) for i in range(len(a_yx)))


def ref_confusion(pred, gt, num_classes, ignore_index):
    keep = gt != ignore_index
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (gt[keep], pred[keep]), 1)
    return cm


def ref_iou(cm):
    out = []
    for c in range(len(cm)):
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        out.append(tp / (tp + fp + fn) if tp + fp + fn else NAN)
    return out


def ref_instance_counts(gt, inst, num_classes, ignore_index):
    counts = [0] * num_classes
    for ident in np.unique(inst):
        if ident == 0:
            continue
        values = gt[(inst == ident) & (gt != ignore_index)]
        if values.size == 0:
            continue
        per_class = np.bincount(values, minlength=num_classes)
        counts[int(np.argmax(per_class))] += 1      # argmax: first maximum = smaller class id
    return counts


def ref_nanmean(values):
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else NAN


def ref_boundary_counts(pred, gt, num_classes, ignore_index, radius):
    """Per class ``(matched, n_pred, n_gt)`` for one image."""
    bp, bg = ref_boundary(pred), ref_boundary(gt, ignore_index)
    out = []
    for c in range(num_classes):
        p_yx, g_yx = np.argwhere(bp & (pred == c)), np.argwhere(bg & (gt == c))
        out.append((ref_match_count(p_yx, g_yx, radius), len(p_yx), len(g_yx)))
    return out


def ref_prf(matched, n_pred, n_gt):
    precision = matched / n_pred if n_pred else NAN
    recall = matched / n_gt if n_gt else NAN
    if math.isnan(precision) and math.isnan(recall):
        f = NAN
    elif precision == 0 or recall == 0:     # the other side is then 0 or NaN
        f = 0.0
    else:
        f = 2 * precision * recall / (precision + recall)
    return precision, recall, f


def ref_metrics(samples, num_classes, ignore_index=255, tol=0.0075):
    """All metrics of ``compute()`` from the definitions."""
    cm_total = np.zeros((num_classes, num_classes), dtype=np.int64)
    inst_weighted, inst_total = [0.0] * num_classes, [0] * num_classes
    matched, n_pred, n_gt = [0] * num_classes, [0] * num_classes, [0] * num_classes
    for pred, gt, inst in samples:
        pred, gt = np.asarray(pred, dtype=np.int64), np.asarray(gt, dtype=np.int64)
        cm = ref_confusion(pred, gt, num_classes, ignore_index)
        cm_total += cm
        if inst is not None:
            u = ref_iou(cm)
            for c, n in enumerate(ref_instance_counts(gt, np.asarray(inst), num_classes, ignore_index)):
                if n:
                    inst_weighted[c] += n * u[c]
                    inst_total[c] += n
        h, w = gt.shape
        radius = tol * math.sqrt(h * h + w * w)
        for c, (m, p, g) in enumerate(ref_boundary_counts(pred, gt, num_classes, ignore_index, radius)):
            matched[c] += m
            n_pred[c] += p
            n_gt[c] += g
    iou = ref_iou(cm_total)
    inst_iou = [inst_weighted[c] / inst_total[c] if inst_total[c] else NAN for c in range(num_classes)]
    prf = [ref_prf(matched[c], n_pred[c], n_gt[c]) for c in range(num_classes)]
    precision, recall, f = ([x[k] for x in prf] for k in range(3))
    return {
        "iou": iou, "miou": ref_nanmean(iou),
        "pixel_accuracy": np.trace(cm_total) / cm_total.sum(),
        "instance_iou": inst_iou, "instance_miou": ref_nanmean(inst_iou),
        "boundary_precision": precision, "boundary_recall": recall, "boundary_f": f,
        "mean_boundary_precision": ref_nanmean(precision),
        "mean_boundary_recall": ref_nanmean(recall),
        "mean_boundary_f": ref_nanmean(f),
    }


# ----------------------------------------------------------------------------------------------
# random inputs
# ----------------------------------------------------------------------------------------------

def blocky(rng, h, w, c, block):
    """Piecewise-constant map: coarse random grid upsampled by ``block`` (nearest)."""
    coarse = rng.integers(0, c, size=(-(-h // block), -(-w // block)))
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:h, :w].astype(np.int64)


def random_pair(rng, h, w, c, ignore_frac=0.05):
    """(pred, gt): blocky (sometimes pure-noise) ground truth with some ignored pixels, and a
    prediction that is either a perturbed copy of it or an unrelated map."""
    if rng.random() < 0.2:
        gt = rng.integers(0, c, size=(h, w))                      # pure noise
    else:
        gt = blocky(rng, h, w, c, int(rng.integers(2, 6)))
        noise = rng.random((h, w)) < 0.1
        gt = np.where(noise, rng.integers(0, c, size=(h, w)), gt)
    if rng.random() < 0.6:
        pred = np.roll(gt, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        noise = rng.random((h, w)) < 0.15
        pred = np.where(noise, rng.integers(0, c, size=(h, w)), pred)
    else:
        pred = blocky(rng, h, w, c, int(rng.integers(1, 5)))
    gt = np.where(rng.random((h, w)) < ignore_frac, 255, gt)
    return pred.astype(np.int64), gt.astype(np.int64)


def random_instances(rng, gt):
    """Instance ids over blocks, 0 (stuff) on about a third of them, large ids included."""
    h, w = gt.shape
    ids = blocky(rng, h, w, 6, int(rng.integers(2, 5)))
    return np.where(ids < 2, 0, ids * 1000 + 1)


def _far_from_sqrt_of_integers(radius):
    """True when ``radius`` is not (numerically) the distance of two integer pixels, so that
    floating point cannot decide whether a pair is within the tolerance."""
    r2 = radius * radius
    return radius == 0 or abs(r2 - round(r2)) > 1e-6


# ----------------------------------------------------------------------------------------------
# 1. a thin object that the prediction misses
# ----------------------------------------------------------------------------------------------

def test_missed_thin_bar_hand_computed():
    # 8 x 10 image, 3 classes.  Class 1: a 1-pixel-wide vertical bar in column 2 over the full
    # height (8 px).  Class 2: a 3x3 block rows 2..4, cols 6..8 (9 px).  Class 0: the rest (63 px).
    # The prediction misses the bar (predicts 0 there) and gets the block exactly.
    gt = np.zeros((8, 10), dtype=np.int64)
    gt[:, 2] = 1
    gt[2:5, 6:9] = 2
    pred = np.zeros_like(gt)
    pred[2:5, 6:9] = 2
    r = evaluate([(pred, gt, None)], 3)

    # Pixel IoU.  class 0: TP = 63, FP = 8 (the bar), FN = 0 -> 63/71.
    # class 1: TP = 0, FN = 8 -> 0.   class 2: 9/9 = 1.
    assert_values(r["iou"], [63 / 71, 0.0, 1.0], what="iou")
    assert r["miou"] == pytest.approx((63 / 71 + 0 + 1) / 3, abs=1e-12)
    assert r["pixel_accuracy"] == pytest.approx(72 / 80, abs=1e-12)      # 63 + 9 correct of 80

    # Boundaries.  Radius = 0.0075 * sqrt(64 + 100) = 0.096 < 1, but the counts below do not
    # depend on the radius, since every predicted boundary pixel lies exactly on a GT one.
    #  GT class 0: columns 1 and 3 next to the bar (2 x 8 = 16) + the 4-neighbour ring of the
    #    block (3 above, 3 below, 3 left, 3 right = 12)                                -> 28
    #  GT class 1: the whole bar (8).  GT class 2: the 8 outer pixels of the block (centre not).
    #  Pred class 0: only the ring around the block (12); pred class 1: none; pred class 2: 8.
    #  Matched: class 0: 12, class 1: 0, class 2: 8.
    # class 0: R = 12/28 = 3/7, P = 12/12 = 1, F = 2 * 3/7 / (3/7 + 1) = (6/7) / (10/7) = 0.6
    # class 1: R = 0/8 = 0, P = 0/0 = NaN, F = 0 (missed entirely).   class 2: P = R = F = 1.
    assert_values(r["boundary_recall"], [3 / 7, 0.0, 1.0], what="boundary_recall")
    assert_values(r["boundary_precision"], [1.0, NAN, 1.0], what="boundary_precision")
    assert_values(r["boundary_f"], [0.6, 0.0, 1.0], what="boundary_f")
    assert r["mean_boundary_recall"] == pytest.approx((3 / 7 + 0 + 1) / 3, abs=1e-12)   # 10/21
    assert r["mean_boundary_precision"] == pytest.approx(1.0, abs=1e-12)
    # the missed bar counts in the mean F (it would be 0.8 if it dropped out)
    assert r["mean_boundary_f"] == pytest.approx((0.6 + 0 + 1) / 3, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# 2. a shifted square
# ----------------------------------------------------------------------------------------------

def _square(shift):
    """20 x 20 map, class 1 on a 6x6 square rows 6..11, cols 6+shift..11+shift, else class 0."""
    m = np.zeros((20, 20), dtype=np.int64)
    m[6:12, 6 + shift:12 + shift] = 1
    return m


# Boundary counts of one square (it does not touch the image border):
#   class 1: its perimeter, 4 * 6 - 4 = 20 pixels;
#   class 0: the 4-neighbour ring outside it, 4 * 6 = 24 pixels (diagonal corners excluded).
# With tolerance 0.045 the radius is 0.045 * sqrt(400 + 400) = 1.273: 1 < radius < sqrt(2) < 3,
# so a pair matches iff it is the same pixel or 4-adjacent.
TOL_BETWEEN_1_AND_SQRT2 = 0.045


def test_square_shift_radius_between_1_and_3():
    radius = TOL_BETWEEN_1_AND_SQRT2 * math.hypot(20, 20)
    assert radius > 1 and radius < math.sqrt(2)   # so 1 < radius < sqrt(2) < 3
    gt = _square(0)

    # One-pixel shift to the right: the predicted boundary is the GT boundary translated by one
    # column, and the translation is a one-to-one pairing at distance 1 <= radius, so every
    # boundary pixel is matched: P = R = F = 1 for both classes.
    r = evaluate([(_square(1), gt, None)], 2, tol=TOL_BETWEEN_1_AND_SQRT2)
    assert_values(r["boundary_recall"], [1.0, 1.0], what="recall, 1-px shift")
    assert_values(r["boundary_precision"], [1.0, 1.0], what="precision, 1-px shift")
    assert_values(r["boundary_f"], [1.0, 1.0], what="F, 1-px shift")
    # IoU: overlap 6 x 5 = 30, union 36 + 36 - 30 = 42 -> class 1: 30/42 = 5/7;
    # class 0: TP = 400 - 42 = 358, union = 364 + 364 - 358 = 370 -> 358/370 = 179/185.
    assert_values(r["iou"], [179 / 185, 5 / 7], what="iou, 1-px shift")
    assert r["pixel_accuracy"] == pytest.approx(388 / 400, abs=1e-12)    # 12 wrong pixels

    # Three-pixel shift (prediction cols 9..14).  Only pairs at distance 0 or 1 are allowed.
    # Class 1, upper half (the lower half is its mirror image):
    #   pred (6,9)  ~ GT (6,8) (6,9) (6,10)      pred (6,10) ~ GT (6,9) (6,10) (6,11)
    #   pred (6,11) ~ GT (6,10) (6,11) (7,11)    pred (6,12) ~ GT (6,11)
    #   pred (7,9)  ~ GT (6,9)                   pred (6,13), (6,14), (8,9), right column: none
    #   -> 5 predicted and 5 GT pixels with edges; a perfect matching exists:
    #      (6,12)-(6,11), (7,9)-(6,9), (6,11)-(7,11), (6,10)-(6,10), (6,9)-(6,8)   -> 5
    #   total 10 of 20: P = R = F = 1/2.
    # Class 0 (rings), upper half:
    #   pred (5,9) ~ GT (5,8) (5,9) (5,10)       pred (5,10) ~ GT (5,9) (5,10) (5,11)
    #   pred (5,11) ~ GT (5,10) (5,11)           pred (5,12) ~ GT (5,11) (6,12)
    #   pred (6,8) ~ GT (5,8)                    pred (5,13), (5,14), (7..10, 8), col 15: none
    #   -> perfect matching of 5: (6,8)-(5,8), (5,9)-(5,9), (5,10)-(5,10), (5,11)-(5,11),
    #      (5,12)-(6,12);  total 10 of 24: P = R = F = 5/12.
    r = evaluate([(_square(3), gt, None)], 2, tol=TOL_BETWEEN_1_AND_SQRT2)
    assert_values(r["boundary_recall"], [5 / 12, 1 / 2], what="recall, 3-px shift")
    assert_values(r["boundary_precision"], [5 / 12, 1 / 2], what="precision, 3-px shift")
    assert_values(r["boundary_f"], [5 / 12, 1 / 2], what="F, 3-px shift")
    # IoU: overlap 6 x 3 = 18, union 54 -> class 1: 1/3; class 0: TP = 400 - 54 = 346,
    # union = 364 + 364 - 346 = 382 -> 346/382 = 173/191.
    assert_values(r["iou"], [173 / 191, 1 / 3], what="iou, 3-px shift")
    assert r["miou"] == pytest.approx((173 / 191 + 1 / 3) / 2, abs=1e-12)
    assert r["pixel_accuracy"] == pytest.approx(364 / 400, abs=1e-12)    # 36 wrong pixels


def test_square_shift_other_radii():
    gt = _square(0)
    # Default tolerance: radius = 0.0075 * 28.28 = 0.21 < 1: only identical pixels match.
    # One-pixel shift: class 1 perimeters share the top and bottom rows' cols 7..11 (5 + 5);
    # the left/right columns (GT cols 6, 11; pred cols 7, 12) never coincide  -> 10 of 20.
    # Class 0 rings share (5, 7..11) and (12, 7..11) -> 10 of 24 (GT side cols 5, 12 vs pred 6, 13).
    r = evaluate([(_square(1), gt, None)], 2)
    assert_values(r["boundary_recall"], [5 / 12, 1 / 2], what="recall, radius 0.21")
    assert_values(r["boundary_precision"], [5 / 12, 1 / 2], what="precision, radius 0.21")
    # Tolerance 0.12: radius = 3.39 >= 3, so the translation by 3 columns pairs everything: 1.
    assert 3 < 0.12 * math.hypot(20, 20) < math.sqrt(12)
    r = evaluate([(_square(3), gt, None)], 2, tol=0.12)
    assert_values(r["boundary_recall"], [1.0, 1.0], what="recall, radius 3.39")
    assert_values(r["boundary_precision"], [1.0, 1.0], what="precision, radius 3.39")


# ----------------------------------------------------------------------------------------------
# 3. ignore regions
# ----------------------------------------------------------------------------------------------

I = 255
IGNORE_GT = a([[0, 0, 0, 1, 1, 1],
               [0, 0, 0, 1, 1, 1],
               [I, I, I, 1, 1, 1],
               [I, I, I, 1, 1, 1]])


def test_ignored_pixels_change_neither_iou_nor_accuracy():
    base = a([[0, 0, 0, 1, 1, 1],
              [0, 0, 0, 1, 1, 1],
              [0, 0, 0, 1, 1, 1],
              [0, 0, 0, 1, 1, 0]])          # one error at (3, 5): GT 1, predicted 0
    # Non-ignored pixels: 6 of class 0 and 12 of class 1 = 18.
    # class 0: TP 6, FP 1, FN 0 -> 6/7;  class 1: TP 11, FN 1 -> 11/12;  accuracy 17/18.
    rng = np.random.default_rng(3)
    fills = [np.zeros((2, 3), np.int64), np.ones((2, 3), np.int64), rng.integers(0, 2, (2, 3))]
    for fill in fills:
        pred = base.copy()
        pred[2:, :3] = fill                 # whatever is predicted on ignored pixels
        r = evaluate([(pred, IGNORE_GT, None)], 2)
        assert_values(r["iou"], [6 / 7, 11 / 12], what="iou")
        assert r["miou"] == pytest.approx((6 / 7 + 11 / 12) / 2, abs=1e-12)
        assert r["pixel_accuracy"] == pytest.approx(17 / 18, abs=1e-12)


def test_ignore_pixels_are_never_gt_boundaries_but_their_class_neighbours_are():
    # Ignored pixels are never boundary pixels, although (2,2) and (3,2) touch class 1.
    # (1,0), (1,1): class 0 above ignore -> boundary; (1,2): next to 1 and ignore; (0,2): next
    # to 1; (2,3), (3,3): class 1 next to ignore; (0,3), (1,3): class 1 next to 0.
    expected = a([[0, 0, 1, 1, 0, 0],
                  [1, 1, 1, 1, 0, 0],
                  [0, 0, 0, 1, 0, 0],
                  [0, 0, 0, 1, 0, 0]]).astype(bool)
    np.testing.assert_array_equal(np.asarray(boundary_mask(IGNORE_GT, ignore_index=255)), expected)

    # Effect on the boundary metrics: the prediction fills the ignored block with class 0.
    pred = a([[0, 0, 0, 1, 1, 1]] * 4)
    # Pred boundaries: class 0 column 2 (4 px, two of them on ignored GT pixels, which still
    # count: prediction boundaries do not look at the GT); class 1 column 3 (4 px).
    # GT boundaries: class 0 {(0,2), (1,0), (1,1), (1,2)}; class 1 column 3.
    # Radius = 0.0075 * sqrt(16 + 36) = 0.054: exact matches only.
    # class 0: matched (0,2), (1,2) = 2 -> R = 2/4, P = 2/4;  class 1: 4 of 4 -> 1.
    r = evaluate([(pred, IGNORE_GT, None)], 2)
    assert_values(r["boundary_recall"], [0.5, 1.0], what="boundary_recall")
    assert_values(r["boundary_precision"], [0.5, 1.0], what="boundary_precision")
    assert_values(r["boundary_f"], [0.5, 1.0], what="boundary_f")
    # Pixel metrics: everything non-ignored is right.
    assert_values(r["iou"], [1.0, 1.0], what="iou")


def test_boundary_mask_border_no_wraparound():
    # Wrap-around would make row 0 a boundary (row 2 differs) and column 4 one (column 0 differs).
    label = a([[2, 1, 1, 1, 1],
               [2, 1, 1, 1, 1],
               [2, 0, 0, 0, 0]])
    expected = a([[1, 1, 0, 0, 0],
                  [1, 1, 1, 1, 1],
                  [1, 1, 1, 1, 1]]).astype(bool)
    np.testing.assert_array_equal(np.asarray(boundary_mask(label)), expected)
    # A constant map has no boundary at all (the image border is not one).
    assert not np.asarray(boundary_mask(np.full((5, 7), 3))).any()


def test_boundary_mask_random_against_reference():
    rng = np.random.default_rng(11)
    for _ in range(20):
        pred, gt = random_pair(rng, int(rng.integers(1, 14)), int(rng.integers(1, 16)), 4, 0.15)
        np.testing.assert_array_equal(np.asarray(boundary_mask(gt, ignore_index=255)),
                                      ref_boundary(gt, 255))
        np.testing.assert_array_equal(np.asarray(boundary_mask(pred, ignore_index=255)),
                                      ref_boundary(pred))


# ----------------------------------------------------------------------------------------------
# 4. absent classes and false-positive-only classes
# ----------------------------------------------------------------------------------------------

def test_absent_class_is_nan_and_fp_only_class_is_zero():
    # 4 classes; class 3 appears nowhere, class 2 is only predicted (one false positive).
    gt1 = a([[0, 0, 1, 1],
             [0, 0, 1, 1]])
    pred1 = a([[0, 2, 1, 1],
               [0, 0, 1, 1]])
    gt2 = a([[1, 1, 1],
             [0, 0, 0]])
    pred2 = gt2.copy()
    r = evaluate([(pred1, gt1, None), (pred2, gt2, None)], 4)
    # Dataset confusion: class 0: TP 3 + 3 = 6, FN 1 (the pixel predicted 2), FP 0 -> 6/7;
    # class 1: TP 4 + 3 = 7 -> 1;  class 2: TP 0, FP 1 -> 0;  class 3: 0/0 -> NaN.
    assert_values(r["iou"], [6 / 7, 1.0, 0.0, NAN], what="iou")
    assert r["miou"] == pytest.approx((6 / 7 + 1 + 0) / 3, abs=1e-12)   # NaN class left out
    assert r["pixel_accuracy"] == pytest.approx(13 / 14, abs=1e-12)
    # Boundaries of class 3: none predicted, none in the GT -> NaN everywhere.
    # Class 2: no GT boundary (R = 0/0 = NaN), one predicted boundary pixel ((0,1), its
    # neighbours are 0) that matches nothing -> P = 0/1 = 0, F = 0 (R is NaN, P is 0).
    assert _is_nan(r["boundary_recall"][3]) and _is_nan(r["boundary_precision"][3])
    assert _is_nan(r["boundary_f"][3])
    assert _is_nan(r["boundary_recall"][2])
    assert r["boundary_precision"][2] == 0.0
    assert r["boundary_f"][2] == 0.0


# ----------------------------------------------------------------------------------------------
# 5. instance-wise IoU
# ----------------------------------------------------------------------------------------------

def test_instance_iou_weighted_by_instance_counts():
    # Image A: three 2-pixel vertical instances of class 1 (ids 1, 2, 3) on class 0.
    gt_a = a([[0, 1, 0, 1, 0, 1],
              [0, 1, 0, 1, 0, 1]])
    inst_a = a([[0, 1, 0, 2, 0, 3],
                [0, 1, 0, 2, 0, 3]])
    pred_a = a([[0, 1, 0, 1, 0, 0],
                [0, 1, 0, 1, 0, 0]])           # misses instance 3
    # U_{1,A}: TP 4, FN 2, FP 0 -> 4/6 = 2/3;   n_{1,A} = 3.
    # Image B: one instance (id 26001) of class 1 on columns 0..3 (8 px).
    gt_b = a([[1, 1, 1, 1, 0, 0],
              [1, 1, 1, 1, 0, 0]])
    inst_b = np.where(gt_b == 1, 26001, 0)
    pred_b = a([[1, 1, 1, 1, 1, 0],
                [1, 1, 1, 1, 1, 0]])           # 2 false positives
    # U_{1,B}: TP 8, FP 2, FN 0 -> 8/10 = 4/5;   n_{1,B} = 1.
    # Û_1 = (3 * 2/3 + 1 * 4/5) / 4 = 2.8 / 4 = 0.7.  Class 0 has no instance -> NaN.
    # Pixel IoU of class 1 over the dataset: TP 12, FN 2, FP 2 -> 12/16 = 0.75 != 0.7
    # (and the unweighted mean of per-image IoUs, (2/3 + 4/5)/2 = 0.733, differs as well).
    r = evaluate([(pred_a, gt_a, inst_a), (pred_b, gt_b, inst_b)], 2)
    assert_values(r["instance_iou"], [NAN, 0.7], what="instance_iou")
    assert r["instance_miou"] == pytest.approx(0.7, abs=1e-12)
    assert r["iou"][1] == pytest.approx(0.75, abs=1e-12)
    assert abs(r["instance_iou"][1] - r["iou"][1]) > 0.04


def test_instance_class_assignment_and_images_without_instances():
    # Image X, 3 classes:
    gt_x = a([[1, 1, 2, 2],
              [0, 0, I, I]])
    inst_x = a([[5, 5, 5, 9],
                [9, 0, 4, 4]])
    #   id 5: GT 1, 1, 2 -> majority class 1.
    #   id 9: GT 2 (at (0,3)) and 0 (at (1,0)) -> tie, smaller class id: class 0.
    #   id 4: only ignored pixels -> not an instance.      n_X = [1, 1, 0]
    pred_x = a([[1, 2, 2, 2],
                [0, 1, 0, 0]])
    # U_X (non-ignored pixels (0,0..3), (1,0), (1,1)):
    #   class 0: TP (1,0); FN (1,1) -> 1/2.   class 1: TP (0,0); FN (0,1); FP (1,1) -> 1/3.
    #   class 2: TP (0,2), (0,3); FP (0,1) -> 2/3 (weight 0 here).
    gt_y = a([[2, 2],
              [2, 0]])
    inst_y = a([[1, 1],
                [1, 6]])                      # id 1: class 2, id 6: class 0; n_Y = [1, 0, 1]
    pred_y = a([[2, 0],
                [0, 0]])
    #   U_{2,Y}: TP 1, FN 2 -> 1/3.   U_{0,Y}: TP 1, FP 2 -> 1/3.
    # Image Z without instances: contributes to pixel IoU only.
    gt_z = a([[1, 1],
              [2, 2]])
    pred_z = a([[0, 0],
                [0, 0]])
    # Û_0 = (1 * 1/2 + 1 * 1/3) / 2 = 5/12 (ids 9 and 6; counting the all-ignored id 4 as a
    # class-0 instance of X would give (2 * 1/2 + 1/3) / 3 = 4/9 instead),
    # Û_1 = 1/3 (id 5), Û_2 = 1/3 (image Y; 1/2 if id 9 went to class 2).
    # instance mIoU = (5/12 + 1/3 + 1/3) / 3 = 13/36.
    r = evaluate([(pred_x, gt_x, inst_x), (pred_y, gt_y, inst_y), (pred_z, gt_z, None)], 3)
    assert_values(r["instance_iou"], [5 / 12, 1 / 3, 1 / 3], what="instance_iou")
    assert r["instance_miou"] == pytest.approx(13 / 36, abs=1e-12)
    # ... while image Z does change the pixel IoU of class 1: X+Y+Z: TP 1, FN 1 + 2, FP 1 -> 1/5.
    assert r["iou"][1] == pytest.approx(1 / 5, abs=1e-12)
    # Without any instance map, every instance IoU is NaN.
    r = evaluate([(pred_x, gt_x, None), (pred_y, gt_y, None)], 3)
    assert_values(r["instance_iou"], [NAN, NAN, NAN], what="instance_iou, no instances")
    assert _is_nan(r["instance_miou"])


# ----------------------------------------------------------------------------------------------
# 6. boundary matching against a brute-force maximum matching
# ----------------------------------------------------------------------------------------------

# 12 x 15 maps, diagonal sqrt(369) = 19.21: radii 0, 0.58, 1.15, 1.92, 3.07 (none is the length
# of an integer vector, checked below, so the comparison does not hinge on rounding).
RANDOM_TOLERANCES = (0.0, 0.03, 0.06, 0.1, 0.16)


def test_boundary_matching_random_maps_against_brute_force():
    rng = np.random.default_rng(2018)
    h, w = 12, 15
    samples = []
    for k in range(30):
        pred, gt = random_pair(rng, h, w, 3 + k % 2)
        samples.append((pred, gt))
    for tol in RANDOM_TOLERANCES:
        radius = tol * math.sqrt(h * h + w * w)
        assert _far_from_sqrt_of_integers(radius), radius
        total = np.zeros((4, 3), dtype=np.int64)          # per class: matched, n_pred, n_gt
        dataset = SegmentationMetrics(4, boundary_tolerance=tol)
        for pred, gt in samples:
            counts = np.array(ref_boundary_counts(pred, gt, 4, 255, radius))
            total += counts
            dataset.update(pred, gt)
            # per image: recover the implementation's matched count from its P and R
            r = evaluate([(pred, gt, None)], 4, tol=tol)
            for c, (matched, n_pred, n_gt) in enumerate(counts):
                expected = ref_prf(matched, n_pred, n_gt)
                got = (r["boundary_precision"][c], r["boundary_recall"][c], r["boundary_f"][c])
                assert_values(got, expected, what=f"tol={tol} class {c} (P, R, F) {counts[c]}")
                if n_gt:
                    assert round(r["boundary_recall"][c] * n_gt) == matched
        r = dataset.compute()
        expected = [ref_prf(*total[c]) for c in range(4)]
        for k, key in enumerate(("boundary_precision", "boundary_recall", "boundary_f")):
            assert_values(r[key], [e[k] for e in expected], what=f"tol={tol} {key}")
        for key, k in (("mean_boundary_precision", 0), ("mean_boundary_recall", 1),
                       ("mean_boundary_f", 2)):
            assert_values(r[key], ref_nanmean([e[k] for e in expected]), what=f"tol={tol} {key}")


def test_match_count_hand_cases():
    empty = np.zeros((0, 2), dtype=np.int64)
    pts = a([[0, 0], [3, 4]])
    assert match_count(empty, empty, 3.0) == 0
    assert match_count(empty, pts, 3.0) == 0
    assert match_count(pts, empty, 3.0) == 0
    # distance exactly equal to the radius matches: |(0,0) - (3,4)| = 5
    assert match_count(a([[0, 0]]), a([[3, 4]]), 5.0) == 1
    assert match_count(a([[0, 0]]), a([[3, 4]]), 4.999) == 0
    assert match_count(a([[2, 2]]), a([[2, 2]]), 0.0) == 1          # radius 0: same pixel only
    assert match_count(a([[2, 2]]), a([[2, 3]]), 0.0) == 0
    # one-to-one: two points next to a single one give one pair
    assert match_count(a([[0, 0], [0, 2]]), a([[0, 1]]), 1.0) == 1
    # a greedy first-fit pass (a0 takes b0) would stop at 1; the maximum matching is 2:
    # a0 = (0,1) ~ b0 = (0,0), b1 = (0,2);  a1 = (0,0) ~ b0 only.
    assert match_count(a([[0, 1], [0, 0]]), a([[0, 0], [0, 2]]), 1.0) == 2
    # a longer augmenting path on a line: a_i = (0, 2i+1), b_i = (0, 2i), radius 1 -> 4
    a_line = a([[0, 1], [0, 3], [0, 5], [0, 7]])
    b_line = a([[0, 0], [0, 2], [0, 4], [0, 6]])
    assert match_count(a_line, b_line, 1.0) == 4
    assert match_count(a_line[::-1], b_line, 1.0) == 4


def test_match_count_random_against_brute_force():
    rng = np.random.default_rng(7)
    grid = np.array([(y, x) for y in range(9) for x in range(9)], dtype=np.int64)
    radii = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, math.sqrt(2))
    for trial in range(80):
        n, m = int(rng.integers(0, 25)), int(rng.integers(0, 25))
        a_yx = grid[rng.choice(len(grid), size=n, replace=False)]
        b_yx = grid[rng.choice(len(grid), size=m, replace=False)]
        radius = radii[trial % len(radii)]
        expected = ref_match_count(a_yx, b_yx, radius)
        assert match_count(a_yx, b_yx, radius) == expected, (trial, radius, a_yx.tolist(), b_yx.tolist())
        assert match_count(b_yx, a_yx, radius) == expected


# ----------------------------------------------------------------------------------------------
# 7. streaming, order independence, numpy vs torch, full reference
# ----------------------------------------------------------------------------------------------

def _random_dataset(seed, tol, n=6, c=4):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        while True:                                                   # sizes differ per image
            h, w = int(rng.integers(6, 14)), int(rng.integers(6, 16))
            if _far_from_sqrt_of_integers(tol * math.sqrt(h * h + w * w)):
                break
        pred, gt = random_pair(rng, h, w, c)
        inst = random_instances(rng, gt) if k % 3 else None
        out.append((pred, gt, inst))
    return out


def test_streaming_order_and_input_type_independence():
    tol = 0.1
    samples = _random_dataset(5, tol)
    forward = evaluate(samples, 4, tol=tol)
    backward = evaluate(samples[::-1], 4, tol=tol)
    shuffled = evaluate([samples[i] for i in (3, 0, 5, 1, 4, 2)], 4, tol=tol)
    assert_results_equal(forward, backward)
    assert_results_equal(forward, shuffled)

    as_torch = [(torch.from_numpy(p), torch.from_numpy(g), None if i is None else torch.from_numpy(i))
                for p, g, i in samples]
    torch_result = evaluate(as_torch, 4, tol=tol)
    assert_results_equal(forward, torch_result, tol=0.0)
    mixed = [(p, torch.from_numpy(g), i) for p, g, i in samples]
    assert_results_equal(forward, evaluate(mixed, 4, tol=tol), tol=0.0)


def test_random_dataset_against_full_reference():
    for seed, tol in ((21, 0.0075), (22, 0.1), (23, 0.16)):
        samples = _random_dataset(seed, tol)
        assert_results_equal(evaluate(samples, 4, tol=tol), ref_metrics(samples, 4, tol=tol))


# ----------------------------------------------------------------------------------------------
# 8. mIoU against the official Cityscapes evaluation
# ----------------------------------------------------------------------------------------------

def _official_cityscapes(pred_files, gt_files, tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    args = copy.copy(ev.args)                  # the module's own defaults, then:
    args.quiet = True                          # no printing
    args.JSONOutput = False                    # no result file
    args.evalInstLevelScore = False            # no *_instanceIds.png needed
    args.evalPixelAccuracy = False
    args.colorized, args.bold, args.nocol = False, "", ""
    args.cityscapesPath = str(tmp_path)
    args.exportFile = str(tmp_path / "unused.json")
    with contextlib.redirect_stdout(io.StringIO()):
        return ev.evaluateImgLists([str(p) for p in pred_files], [str(g) for g in gt_files], args)


def test_miou_matches_official_cityscapes_evaluation(tmp_path, monkeypatch):
    from cityscapesscripts.helpers.labels import labels, trainId2label

    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    rng = np.random.default_rng(19)
    to_label_id = np.array([trainId2label[t].id for t in range(19)], dtype=np.uint8)
    ignored_ids = [lab.id for lab in labels if lab.ignoreInEval and lab.id >= 0]   # 0, 1, 4, 9, ...
    # GT uses train ids 0..15 only; the prediction also uses 16 (false positives only),
    # 17 and 18 appear nowhere (NaN in both evaluations).
    gt_dir, pred_dir = tmp_path / "gtFine" / "val" / "testcity", tmp_path / "results"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir()
    ours = SegmentationMetrics(19)
    gt_files, pred_files = [], []
    for k in range(3):
        h, w = 64, 128
        gt = blocky(rng, h, w, 16, 8)
        gt = np.where(rng.random((h, w)) < 0.05, rng.integers(0, 16, (h, w)), gt)
        pred = np.where(rng.random((h, w)) < 0.3, blocky(rng, h, w, 17, 4), gt)
        ignored = blocky(rng, h, w, 5, 16) == 0                      # ignored blocks ...
        ignored |= rng.random((h, w)) < 0.03                         # ... and scattered pixels
        gt_label_ids = to_label_id[gt]
        gt_label_ids[ignored] = rng.choice(ignored_ids, size=int(ignored.sum()))
        gt_train = np.where(ignored, 255, gt)
        name = f"testcity_000000_{k:06d}"
        gt_files.append(gt_dir / f"{name}_gtFine_labelIds.png")
        pred_files.append(pred_dir / f"{name}_pred.png")
        Image.fromarray(gt_label_ids.astype(np.uint8)).save(gt_files[-1])
        Image.fromarray(to_label_id[pred]).save(pred_files[-1])
        ours.update(pred, gt_train)
    official = _official_cityscapes(pred_files, gt_files, tmp_path)
    r = ours.compute()

    for t in range(19):
        theirs = official["classScores"][trainId2label[t].name]
        if math.isnan(theirs):
            assert t in (17, 18), t
            assert _is_nan(r["iou"][t]), (t, r["iou"][t])
        else:
            assert r["iou"][t] == pytest.approx(theirs, abs=1e-6), (t, trainId2label[t].name)
    assert r["iou"][16] == 0.0                                       # predicted, never in the GT
    assert r["miou"] == pytest.approx(official["averageScoreClasses"], abs=1e-6)


# ----------------------------------------------------------------------------------------------
# 9. input checks
# ----------------------------------------------------------------------------------------------

def test_shape_mismatch_raises():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError):
        m.update(np.zeros((4, 5), np.int64), np.zeros((4, 6), np.int64))
    with pytest.raises(ValueError):
        m.update(torch.zeros(5, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))


@pytest.mark.parametrize("bad", [3, 7, -1, 254])
def test_ground_truth_out_of_range_raises(bad):
    gt = np.zeros((4, 5), np.int64)
    gt[1, 2] = bad
    with pytest.raises(ValueError):
        SegmentationMetrics(3).update(np.zeros((4, 5), np.int64), gt)
    with pytest.raises(ValueError):
        SegmentationMetrics(3).update(torch.zeros(4, 5, dtype=torch.long), torch.from_numpy(gt))
    # the ignore label itself is accepted
    gt[1, 2] = 255
    SegmentationMetrics(3).update(np.zeros((4, 5), np.int64), gt)


# ----------------------------------------------------------------------------------------------
# 10. a second boundary tolerance in pixels (one logit cell, 8 px)
# ----------------------------------------------------------------------------------------------

CELL_PER_CLASS_KEYS = ("boundary_precision_cell", "boundary_recall_cell", "boundary_f_cell")
CELL_SCALAR_KEYS = ("mean_boundary_precision_cell", "mean_boundary_recall_cell", "mean_boundary_f_cell")


def _stripe(size, shift):
    """``size x size`` map, class 1 on the full-height stripe of columns 100+shift .. 199+shift."""
    m = np.zeros((size, size), dtype=np.int64)
    m[:, 100 + shift:200 + shift] = 1
    return m


@pytest.mark.parametrize("shift, paper, cell", [(0, 1.0, 1.0), (4, 1.0, 1.0), (5, 0.0, 1.0), (8, 0.0, 1.0),
                                                (9, 0.0, 0.0)])
def test_cell_tolerance_matches_a_shift_the_papers_misses(shift, paper, cell):
    # 384 x 384: the paper's radius is 0.0075 * sqrt(2) * 384 = 4.07 px, half a logit cell; the
    # second tolerance is 8 px.  GT boundaries: class 0 on columns 99 and 200, class 1 on columns
    # 100 and 199, 384 pixels each (2 * 384 per class); the prediction's are the same columns
    # moved by ``shift``.  A predicted pixel (y, x + shift) is at distance >= shift from the
    # boundary column x of its class (exactly shift from (y, x), a one-to-one pairing) and
    # >= 99 - shift from the class's other boundary column, so for shift <= 9 every pixel is
    # matched iff shift <= radius: P = R = F = 1 then, else 0, for both classes.  Shift 8 is a
    # distance exactly equal to the cell radius (matched); 5 is the case the paper's misses.
    radius = 0.0075 * math.hypot(384, 384)
    assert 4 < radius < 5
    m = SegmentationMetrics(2, boundary_tolerance_px=8)
    m.update(_stripe(384, shift), _stripe(384, 0))
    r = m.compute()
    for key in ("boundary_precision", "boundary_recall", "boundary_f"):
        assert_values(r[key], [paper, paper], what=f"{key}, shift {shift}")
        assert_values(r[f"{key}_cell"], [cell, cell], what=f"{key}_cell, shift {shift}")
        assert r[f"mean_{key}_cell"] == cell
    assert r["boundary_tolerance_px"] == 8.0
    # the same image without the second tolerance: the paper's numbers are unchanged
    plain = evaluate([(_stripe(384, shift), _stripe(384, 0), None)], 2)
    assert_results_equal(r, plain, tol=0.0)


def test_without_a_pixel_tolerance_the_result_has_exactly_the_old_keys():
    old = ["iou", "miou", "pixel_accuracy", "instance_iou", "instance_miou", "boundary_precision",
           "boundary_recall", "boundary_f", "mean_boundary_precision", "mean_boundary_recall", "mean_boundary_f"]
    samples = _random_dataset(31, 0.0075)
    plain = SegmentationMetrics(4)
    cell = SegmentationMetrics(4, boundary_tolerance_px=8)
    for pred, gt, inst in samples:
        plain.update(pred, gt, inst)
        cell.update(pred, gt, inst)
    r_plain, r_cell = plain.compute(), cell.compute()
    assert list(r_plain) == old                                   # same keys, same order
    assert plain.boundary_tolerance_px is None and plain.boundary_pred_hit_cell is None
    assert list(r_cell) == old + list(CELL_PER_CLASS_KEYS) + list(CELL_SCALAR_KEYS) + ["boundary_tolerance_px"]
    # adding the second tolerance changes none of the paper's numbers
    for key in old:
        assert_values(r_cell[key], r_plain[key], tol=0.0, what=key)
    # per-group means of the cell metrics only when they are there
    groups = {"a": [0, 1], "b": [2, 3]}
    assert not any("cell" in k for k in group_means(dict(r_plain), groups))
    with_groups = group_means(dict(r_cell), groups)
    for key in CELL_PER_CLASS_KEYS:
        mean_key = f"mean_{key}_a"
        assert_values(with_groups[mean_key], ref_nanmean(r_cell[key][:2]), what=mean_key)
    # reset() clears the second set too
    cell.reset()
    assert cell.boundary_pred_hit_cell.tolist() == [0] * 4 and cell.boundary_gt_hit_cell.tolist() == [0] * 4
    assert all(_is_nan(v) for v in cell.compute()["boundary_recall_cell"])


def ref_bf_counts(pred, gt, num_classes, ignore_index, radius):
    """Brute-force BF-score counts per class: (predicted boundary pixels with a GT boundary pixel of
    their class within ``radius``, n_pred, GT boundary pixels with a predicted one within it, n_gt),
    from dense distance matrices."""
    gt_b, pred_b = ref_boundary(gt, ignore_index), ref_boundary(pred, None)
    out = []
    for c in range(num_classes):
        p = np.argwhere(pred_b & (pred == c)).astype(float)
        g = np.argwhere(gt_b & (gt == c)).astype(float)
        if len(p) and len(g):
            d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)) <= radius + 1e-9
            out.append((int(d.any(1).sum()), len(p), int(d.any(0).sum()), len(g)))
        else:
            out.append((0, len(p), 0, len(g)))
    return out


@pytest.mark.parametrize("px", [8, 1.5, 3.0, 0.0])
def test_the_cell_set_is_the_bf_score_and_never_below_the_one_to_one_matching(px):
    # same-size images: the BF counts equal a brute-force reference, and a pixel matched one-to-one
    # within ``px`` has a counterpart within ``px``, so the BF precision and recall are >= the
    # matching's at that same distance (``px / diagonal`` as the fractional tolerance).
    rng = np.random.default_rng(int(10 * px) + 40)
    h, w = 30, 41
    cell = SegmentationMetrics(4, boundary_tolerance_px=px)
    fraction = SegmentationMetrics(4, boundary_tolerance=px / math.hypot(h, w))
    total = np.zeros((4, 4), dtype=np.int64)
    for _ in range(8):
        pred, gt = random_pair(rng, h, w, 4)
        if rng.random() < 0.5:                                    # shifts of 4-9 px as well
            pred = np.roll(gt, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
            pred = np.where(pred == 255, 0, pred)
        cell.update(pred, gt)
        fraction.update(pred, gt)
        total += np.array(ref_bf_counts(pred, gt, 4, 255, px))
    assert cell.boundary_pred_hit_cell.tolist() == total[:, 0].tolist()
    assert cell.boundary_gt_hit_cell.tolist() == total[:, 2].tolist()
    assert (cell.boundary_pred_hit_cell >= fraction.boundary_matched).all()
    assert (cell.boundary_gt_hit_cell >= fraction.boundary_matched).all()
    r = cell.compute()
    assert_values(r["boundary_precision_cell"], [a / b if b else float("nan") for a, b in total[:, :2]], what="P")
    assert_values(r["boundary_recall_cell"], [a / b if b else float("nan") for a, b in total[:, 2:]], what="R")


def test_cell_tolerance_is_in_pixels_whatever_the_image_size_against_brute_force():
    # images of different sizes; the reference checks every pixel within 8 px (dense distance
    # matrices), whereas the paper's radius grows with the diagonal.
    rng = np.random.default_rng(8)
    total = np.zeros((3, 4), dtype=np.int64)             # per class: pred hits, n_pred, GT hits, n_gt
    m = SegmentationMetrics(3, boundary_tolerance_px=8)
    for h, w in ((10, 14), (16, 9), (24, 24), (12, 30)):
        gt = blocky(rng, h, w, 3, 4)
        pred = np.roll(gt, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
        pred = np.where(rng.random((h, w)) < 0.1, rng.integers(0, 3, size=(h, w)), pred)
        gt = np.where(rng.random((h, w)) < 0.05, 255, gt)
        total += np.array(ref_bf_counts(pred, gt, 3, 255, 8.0))
        m.update(pred, gt)
    r = m.compute()
    precision = [a / b if b else float("nan") for a, b in total[:, :2]]
    recall = [a / b if b else float("nan") for a, b in total[:, 2:]]
    assert_values(r["boundary_precision_cell"], precision, what="P")
    assert_values(r["boundary_recall_cell"], recall, what="R")
    f = [0.0 if (p or 0) + (q or 0) == 0 else 2 * p * q / (p + q) for p, q in zip(precision, recall)]
    assert_values(r["boundary_f_cell"], f, what="F")
    assert m.boundary_pred.tolist() == total[:, 1].tolist() and m.boundary_gt.tolist() == total[:, 3].tolist()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_pixel_tolerance_raises(bad):
    with pytest.raises(ValueError, match="boundary_tolerance_px"):
        SegmentationMetrics(3, boundary_tolerance_px=bad)


def test_the_matching_is_one_to_one_within_the_radius_and_maximum_on_parallel_chains():
    """Boundaries are long chains of pixels side by side (the layered graphs on which scipy's
    maximum_bipartite_matching re-expands dead ends): the flow's pairs are a valid matching of the
    brute-force maximum size."""
    from aafcore.metrics import _matching

    rng = np.random.default_rng(26147)
    for n, offset, radius in [(120, 1, 1.5), (150, 2, 2.3), (90, 1, 4.07)]:
        line = np.arange(n, dtype=np.float64)
        a_yx = np.column_stack([np.zeros(n), line])
        b_yx = np.column_stack([np.full(n, offset), line + rng.integers(-2, 3, n)])   # a wobbly parallel chain
        b_yx = b_yx[rng.random(n) > 0.1]                                               # with gaps
        partner = _matching(a_yx, b_yx, radius)
        matched = partner >= 0
        assert len(np.unique(partner[matched])) == matched.sum()                       # one-to-one
        assert (np.hypot(*(a_yx[matched] - b_yx[partner[matched]]).T) <= radius + 1e-9).all()
        assert matched.sum() == ref_match_count(a_yx, b_yx, radius)
