"""Segmentation metrics of Section 4.2 of the paper (DESIGN.md section 8).

Three families, all streamed over a dataset (:meth:`SegmentationMetrics.update` per image,
:meth:`SegmentationMetrics.compute` at the end), all as fractions in [0, 1]:

* **pixel** -- from the dataset-wide confusion matrix (ground-truth ignore pixels skipped):
  ``iou_c = TP_c / (TP_c + FP_c + FN_c)``, ``miou``, ``pixel_accuracy = Σ TP / Σ valid``;
* **instance-wise** -- ``Û_c = Σ_x n_{c,x} U_{c,x} / Σ_x n_{c,x}`` with ``U_{c,x}`` the IoU of class
  c on image x alone and ``n_{c,x}`` its number of instances of c (the paper's Eq. in 4.2);
* **boundary** (BSDS-style) -- the boundary of class c is the set of pixels labelled c with a
  4-neighbour labelled differently (ground-truth ignore pixels are never boundary pixels).
  Predicted and ground-truth boundary pixels of a class are matched one-to-one by a maximum
  bipartite matching when their distance is ``<= tolerance × image diagonal``;
  ``recall_c = Σ matched / Σ GT boundary pixels``, ``precision_c = Σ matched / Σ predicted
  boundary pixels`` over the dataset and ``F_c = 2PR / (P + R)``, 0 when P or R is 0.
  Optionally (``boundary_tolerance_px``) a second set, ``*_cell``, at a fixed distance in pixels:
  one logit cell (8 px, the models' output stride), because the paper's ``0.0075 × diagonal`` is
  only half a logit cell (4.1 px) on 384-px images.  This set is the **BF score** (Csurka et al.
  2013; DAVIS's boundary measure), not a one-to-one matching: ``precision_c`` = the share of
  predicted boundary pixels of c with a ground-truth boundary pixel of c within the distance,
  ``recall_c`` = the share of ground-truth boundary pixels of c with a predicted one within it.
  A maximum matching at 8 px took seconds to minutes per noisy 384-px prediction (hundreds of
  candidates per pixel); the BF score is two nearest-neighbour queries.

Undefined values are ``nan``: a 0/0 ratio (e.g. the IoU of a class neither in the ground truth
nor predicted, the boundary precision of a class never predicted).  ``F_c`` is ``nan`` only when
both P and R are: a ground-truth class that is never predicted has ``R = 0`` and ``F = 0``.
Every mean (``miou``, ``instance_miou``, ``mean_boundary_*``) is over the classes whose value is
not ``nan``.

The boundary matching builds a sparse candidate graph (pairs within the tolerance, found with a
KD-tree) and finds a maximum matching on it as a unit-capacity maximum flow (scipy's Dinic, which
is Hopcroft-Karp's O(E sqrt(V)) on such a network); no dense ``n × m`` distance matrix is ever
formed.  scipy's ``maximum_bipartite_matching`` is not used: its depth-first phase re-expands dead
ends (scipy issue 26147) and took 14 s to hours on single 384 px images whose boundary pixels form
long layered chains, where the flow takes 0.3 s and finds a matching of the same size.  The ``*_cell`` set asks the same KD-trees for each point's
nearest neighbour of its class within ``boundary_tolerance_px``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree

__all__ = ["SegmentationMetrics", "confusion_matrix", "mean_iou", "boundary_mask", "match_count", "instance_counts",
           "group_means"]

# Distances between pixel centres are square roots of integers; this slack makes "distance ==
# radius" count as within the radius whatever the rounding of the radius itself.
_RADIUS_SLACK = 1e-9


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_range(values: np.ndarray, name: str, num_classes: int) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)][0]
        raise ValueError(f"{name} value {bad} is outside [0, {num_classes})")


def confusion_matrix(pred, gt, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``[C, C]`` int64 counts, row = ground-truth class, column = predicted class.

    ``pred`` and ``gt`` are integer arrays of the same shape; pixels where ``gt == ignore_index``
    are skipped.  A ground-truth value outside ``[0, C)`` (other than the ignore label) or a
    prediction outside ``[0, C)`` raises ``ValueError``.
    """
    pred, gt = _as_numpy(pred).astype(np.int64, copy=False), _as_numpy(gt).astype(np.int64, copy=False)
    if pred.shape != gt.shape:
        raise ValueError(f"confusion_matrix: prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    keep = gt != ignore_index
    gt, pred = gt[keep], pred[keep]
    _check_range(gt, "confusion_matrix: ground truth", num_classes)
    _check_range(pred, "confusion_matrix: prediction", num_classes)
    return np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def boundary_mask(label, ignore_index: int | None = 255) -> np.ndarray:
    """Bool ``[H, W]``: pixels with a 4-neighbour (inside the image) of a different value.

    Pixels whose own value is ``ignore_index`` are never boundary pixels (pass ``None`` for a
    prediction, which has no ignore label); a class pixel next to an ignore pixel is one.
    """
    label = _as_numpy(label)
    edge = np.zeros(label.shape, dtype=bool)
    vertical = label[1:, :] != label[:-1, :]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    horizontal = label[:, 1:] != label[:, :-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if ignore_index is not None:
        edge &= label != ignore_index
    return edge


def _matching(a_yx: np.ndarray, b_yx: np.ndarray, radius: float) -> np.ndarray:
    """For each point of ``a``, the index of its partner in ``b`` (-1 if unmatched) in a maximum
    one-to-one matching of the pairs at Euclidean distance ``<= radius``.

    The matching is a maximum flow from a source through ``a`` (capacity 1 each), the candidate
    pairs, and ``b`` (capacity 1 each) to a sink; a pair carrying flow is matched."""
    na, nb = len(a_yx), len(b_yx)
    if na == 0 or nb == 0:
        return np.full(na, -1, dtype=np.int64)
    pairs = cKDTree(a_yx).sparse_distance_matrix(cKDTree(b_yx), float(radius) + _RADIUS_SLACK,
                                                 output_type="ndarray")
    source, sink = na + nb, na + nb + 1
    rows = np.concatenate([np.full(na, source), pairs["i"], na + np.arange(nb)])
    cols = np.concatenate([np.arange(na), na + pairs["j"], np.full(nb, sink)])
    capacity = csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(na + nb + 2,) * 2)
    flow = maximum_flow(capacity, source, sink, method="dinic").flow.tocoo()
    used = (flow.data > 0) & (flow.row < na) & (flow.col >= na) & (flow.col < na + nb)
    partner = np.full(na, -1, dtype=np.int64)
    partner[flow.row[used]] = flow.col[used] - na
    return partner


def _within(a_yx: np.ndarray, b_yx: np.ndarray, radius: float) -> np.ndarray:
    """bool ``[len(a)]``: whether each point of ``a`` has a point of ``b`` at distance ``<= radius``."""
    if len(a_yx) == 0 or len(b_yx) == 0:
        return np.zeros(len(a_yx), dtype=bool)
    distance, _ = cKDTree(b_yx).query(a_yx, k=1, distance_upper_bound=float(radius) + _RADIUS_SLACK)
    return np.isfinite(distance)


def match_count(a_yx, b_yx, radius: float) -> int:
    """Size of a maximum one-to-one matching between point sets ``a_yx [n, 2]`` and ``b_yx [m, 2]``
    (pixel ``(row, col)`` coordinates), a pair being allowed iff its distance is ``<= radius``."""
    a = np.asarray(a_yx, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b_yx, dtype=np.float64).reshape(-1, 2)
    return int((_matching(a, b, radius) >= 0).sum())


def instance_counts(gt, instances, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``n_{c,x}``: int64 ``[C]`` number of instances of each class in one image.

    Each distinct non-zero id of ``instances`` is one instance; it belongs to the majority
    ground-truth class among its non-ignored pixels (ties: the smaller class id, as an
    ``argmax`` would pick).  Ids whose pixels are all ignored are not counted; 0 means "no
    instance" (stuff).
    """
    gt = _as_numpy(gt).astype(np.int64, copy=False)
    inst = _as_numpy(instances).astype(np.int64, copy=False)
    if inst.shape != gt.shape:
        raise ValueError(f"instance map shape {inst.shape} != ground-truth shape {gt.shape}")
    keep = (gt != ignore_index) & (inst != 0)
    if not keep.any():
        return np.zeros(num_classes, dtype=np.int64)
    pairs, counts = np.unique(inst[keep] * num_classes + gt[keep], return_counts=True)
    ids, classes = pairs // num_classes, pairs % num_classes
    order = np.lexsort((classes, -counts, ids))          # per id: most pixels first, then lowest class
    ids, classes = ids[order], classes[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return np.bincount(classes[first], minlength=num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _iou(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm)
    return _ratio(tp, cm.sum(0) + cm.sum(1) - tp)


def mean_iou(cm: np.ndarray) -> float:
    """The mIoU of a confusion matrix ``[C, C]`` (a fraction): the mean IoU over the classes whose
    IoU is defined, as :meth:`SegmentationMetrics.compute` gives ``miou``."""
    return _nanmean(_iou(np.asarray(cm)))


def _harmonic_mean(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``F = 2PR / (P + R)``; 0 when either side is 0 (the limit of the harmonic mean, whatever
    the other side is, even undefined); NaN only when neither is defined.

    Since ``matched <= min(predicted, GT)``, an undefined side (0/0) always comes with the other
    side 0 or undefined: a class in the ground truth that is never predicted has ``R = 0``,
    ``P = NaN`` and ``F = 0``, so missing a class entirely lowers the mean F instead of dropping
    out of it.
    """
    p0, r0 = np.nan_to_num(p, nan=0.0), np.nan_to_num(r, nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(p0 + r0 > 0, 2 * p0 * r0 / (p0 + r0), 0.0)
    return np.where(np.isnan(p) & np.isnan(r), np.nan, f)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class SegmentationMetrics:
    """Streaming pixel, instance-wise and boundary metrics (see the module docstring).

    ``update(pred, gt, instances=None)`` takes int ``[H, W]`` arrays (numpy or torch) of one image;
    images may differ in size.  Images given without ``instances`` add nothing to the
    instance-wise IoU.  ``boundary_tolerance`` is the matching distance as a fraction of the
    image diagonal (BSDS default 0.0075).  ``boundary_tolerance_px`` (``None``: none) adds a
    second set of boundary metrics, ``boundary_{precision,recall,f}_cell`` and their means
    ``mean_boundary_{precision,recall,f}_cell``: the BF score within that many pixels whatever the
    image size (see the module docstring), reported with ``boundary_tolerance_px``; the boundary
    pixels themselves, hence the predicted and ground-truth totals, are the same for both sets.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, boundary_tolerance: float = 0.0075,
                 boundary_tolerance_px: float | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not boundary_tolerance >= 0:
            raise ValueError(f"boundary_tolerance must be >= 0, got {boundary_tolerance}")
        if boundary_tolerance_px is not None and not (boundary_tolerance_px >= 0
                                                      and np.isfinite(boundary_tolerance_px)):
            raise ValueError(f"boundary_tolerance_px must be a finite number >= 0 or None, got {boundary_tolerance_px}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_tolerance = boundary_tolerance
        self.boundary_tolerance_px = None if boundary_tolerance_px is None else float(boundary_tolerance_px)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.confusion = np.zeros((c, c), dtype=np.int64)
        self.instance_weighted_iou = np.zeros(c, dtype=np.float64)   # Σ_x n_{c,x} U_{c,x}
        self.instances = np.zeros(c, dtype=np.int64)                 # Σ_x n_{c,x}
        self.boundary_matched = np.zeros(c, dtype=np.int64)
        self.boundary_gt = np.zeros(c, dtype=np.int64)
        self.boundary_pred = np.zeros(c, dtype=np.int64)
        # BF score at boundary_tolerance_px (None without it): predicted / GT boundary pixels with a
        # counterpart of their class within the distance; the totals are boundary_pred / boundary_gt
        cell = self.boundary_tolerance_px is not None
        self.boundary_pred_hit_cell = np.zeros(c, dtype=np.int64) if cell else None
        self.boundary_gt_hit_cell = np.zeros(c, dtype=np.int64) if cell else None
        self.images = 0

    def update(self, pred, gt, instances=None) -> None:
        """Add one image: ``pred``, ``gt`` (and ``instances``) int ``[H, W]``."""
        pred = _as_numpy(pred).astype(np.int64, copy=False)
        gt = _as_numpy(gt).astype(np.int64, copy=False)
        if pred.ndim != 2:
            raise ValueError(f"SegmentationMetrics.update takes one [H, W] map per call, got shape {pred.shape}")
        cm = confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        self.confusion += cm
        if instances is not None:
            n = instance_counts(gt, instances, self.num_classes, self.ignore_index)
            present = n > 0                          # such classes are in the ground truth: IoU defined
            self.instance_weighted_iou[present] += n[present] * _iou(cm)[present]
            self.instances += n
        self._update_boundaries(pred, gt)
        self.images += 1

    def _update_boundaries(self, pred: np.ndarray, gt: np.ndarray) -> None:
        c = self.num_classes
        h, w = gt.shape
        radius = self.boundary_tolerance * float(np.hypot(h, w))
        gt_yx = np.argwhere(boundary_mask(gt, self.ignore_index))
        pred_yx = np.argwhere(boundary_mask(pred, None))
        gt_cls, pred_cls = gt[gt_yx[:, 0], gt_yx[:, 1]], pred[pred_yx[:, 0], pred_yx[:, 1]]
        self.boundary_gt += np.bincount(gt_cls, minlength=c)
        self.boundary_pred += np.bincount(pred_cls, minlength=c)
        # One matching for all classes: shift each class's points along x by more than the (largest)
        # radius so that no pair of different classes is ever a candidate.  The classes' graphs are
        # disjoint, so each class's count is its own maximum matching, whatever the shift.
        shift = w + max(radius, self.boundary_tolerance_px or 0.0) + 2.0
        a = np.column_stack([pred_yx[:, 0], pred_yx[:, 1] + pred_cls * shift]).astype(np.float64)
        b = np.column_stack([gt_yx[:, 0], gt_yx[:, 1] + gt_cls * shift]).astype(np.float64)
        self.boundary_matched += np.bincount(pred_cls[_matching(a, b, radius) >= 0], minlength=c)
        if self.boundary_tolerance_px is not None:
            self.boundary_pred_hit_cell += np.bincount(pred_cls[_within(a, b, self.boundary_tolerance_px)], minlength=c)
            self.boundary_gt_hit_cell += np.bincount(gt_cls[_within(b, a, self.boundary_tolerance_px)], minlength=c)

    def compute(self) -> dict:
        """All metrics as plain Python floats and lists (``[C]`` per class); with
        ``boundary_tolerance_px`` also the ``*_cell`` boundary metrics and ``boundary_tolerance_px``."""
        cm = self.confusion
        iou = _iou(cm)
        total = cm.sum()
        instance_iou = _ratio(self.instance_weighted_iou, self.instances)
        recall = _ratio(self.boundary_matched, self.boundary_gt)
        precision = _ratio(self.boundary_matched, self.boundary_pred)
        f = _harmonic_mean(precision, recall)
        out = {
            "iou": iou.tolist(),
            "miou": mean_iou(cm),
            "pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
            "instance_iou": instance_iou.tolist(),
            "instance_miou": _nanmean(instance_iou),
            "boundary_precision": precision.tolist(),
            "boundary_recall": recall.tolist(),
            "boundary_f": f.tolist(),
            "mean_boundary_precision": _nanmean(precision),
            "mean_boundary_recall": _nanmean(recall),
            "mean_boundary_f": _nanmean(f),
        }
        if self.boundary_tolerance_px is not None:
            recall = _ratio(self.boundary_gt_hit_cell, self.boundary_gt)
            precision = _ratio(self.boundary_pred_hit_cell, self.boundary_pred)
            f = _harmonic_mean(precision, recall)
            out.update({
                "boundary_precision_cell": precision.tolist(),
                "boundary_recall_cell": recall.tolist(),
                "boundary_f_cell": f.tolist(),
                "mean_boundary_precision_cell": _nanmean(precision),
                "mean_boundary_recall_cell": _nanmean(recall),
                "mean_boundary_f_cell": _nanmean(f),
                "boundary_tolerance_px": self.boundary_tolerance_px,
            })
        return out


# per-class list of compute() -> the name of its mean
_GROUP_MEANS = {"iou": "miou", "instance_iou": "instance_miou", "boundary_precision": "mean_boundary_precision",
                "boundary_recall": "mean_boundary_recall", "boundary_f": "mean_boundary_f",
                "boundary_precision_cell": "mean_boundary_precision_cell",
                "boundary_recall_cell": "mean_boundary_recall_cell", "boundary_f_cell": "mean_boundary_f_cell"}


def group_means(result: dict, groups: dict[str, list[int]]) -> dict:
    """Adds per-group means to a :meth:`SegmentationMetrics.compute` dict, in place, and returns it.

    ``groups`` maps a group name to class indices (e.g. ``{"large": [0, 1, 2, 3], "thin": [4, 5,
    6, 7]}``).  For each group g and per-class list (``iou``, ``instance_iou``,
    ``boundary_{precision,recall,f}`` and, when present, ``boundary_{precision,recall,f}_cell``)
    present in ``result`` it adds the mean over the group's classes whose value is not ``nan``:
    ``miou_<g>``, ``instance_miou_<g>``, ``mean_boundary_{precision,recall,f}_<g>``,
    ``mean_boundary_{precision,recall,f}_cell_<g>`` (``nan`` when every value is).
    """
    for group, classes in groups.items():
        for key, mean_key in _GROUP_MEANS.items():
            if key in result:
                result[f"{mean_key}_{group}"] = _nanmean(np.asarray(result[key], dtype=np.float64)[classes])
    return result
