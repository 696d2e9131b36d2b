"""Geometry statistics of a segmentation benchmark, in logit cells: structure widths and edge-pair shares.

Both work on label maps ``uint8 [H, W]`` (class indices, ``ignore_index`` = 255 ignored) and
answer, per class, the question an affinity field of size ``k`` asks of the data: how wide are the
structures, measured in cells of the logit map (``stride`` = 8 px at output stride 8), and how
often does a pair of the field cross a label edge.  The book shows them for a benchmark before any
non-baseline run.

Widths (:func:`width_counts`, :func:`width_quantiles`)
-------------------------------------------------------
For a class ``c`` with mask ``M = [y = c]`` sampled on the half-pixel grid (the mask upsampled
2x, nearest), let ``D(p)`` be the Euclidean distance in pixels from sample ``p`` to the nearest
sample *not* in ``M`` (another class, ignored, or outside the image: the image border counts as
an edge, as the border of a crop does).  The *ridge* of ``M`` is the set of samples where ``D`` is
a local maximum up to a slope, ``D(p) >= D(q) - |p - q| / 2`` for its 8 neighbours ``q``: the
medial axis where the width changes slowly along it (bars, rings, the middle of an ellipse),
without the branches into convex corners (along which ``D`` grows by at least ``1/sqrt 2`` per
unit length) and without the samples beside the axis (slope 1).  The local width there is::

    width(p) = 2 D(p) px,        width_cells(p) = width(p) / stride

On the half-pixel grid this is exact for bars: a bar ``w`` px wide (odd or even ``w``) has
``D = w / 2`` on its centre line, width ``w`` (a 24 px bar: 3 cells; at full resolution ``D``
would overshoot the edge by half a pixel).  The width distribution of a class pools the ridge
samples of all its connected components (8-connected) over all images, so it is weighted by ridge
length (a long thin pole counts by its length, not by its area); its quantiles are the
inverted-CDF ones (the smallest width ``w`` with ``P(width <= w) >= q``).

Edge-pair shares (:func:`edge_pair_counts`, :func:`edge_pair_shares`)
---------------------------------------------------------------------
Labels are first nearest-downsampled to the logit map as training does
(:func:`downsample_nearest`, the rule of :func:`aafcore.losses.downsample_labels`):
``h = ceil(H / stride)``, ``y'(r, c) = y(floor(r H / h), floor(c W / w))``.  A field of size
``k = 2s + 1`` pairs a centre cell ``i`` with the 8 corner cells of its k x k window,
``o in {-s, 0, s}^2 \\ {(0, 0)}`` (:func:`aafcore.pairs.corner_offsets`); as in
:mod:`aafcore.pairs`, the pair ``(i, o)`` is valid when ``i - o`` and ``i + o`` lie inside the map
and none of ``y'_i, y'_{i+o}, y'_{i-o}`` is ignored (``V_k(i, o)``).  The edge-pair share of class
``c`` at size ``k`` is::

    share_k(c) = sum_{n, i, o} V_k(i, o) [y'_i = c] [y'_{i+o} != c]  /  sum_{n, i, o} V_k(i, o) [y'_i = c]

over the images ``n``: the fraction of class-``c``-centred pairs that the affinity loss treats as
edge pairs (pushed apart) rather than non-edge pairs (pulled together).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from aafcore.datasets.base import IGNORE_INDEX, DatasetError
from aafcore.errors import one_line

__all__ = ["STRIDE", "KERNEL_SIZES", "QUANTILES", "logit_size", "downsample_nearest", "width_counts",
           "width_quantiles", "edge_pair_counts", "edge_pair_shares", "read_label_maps", "benchmark_statistics"]

STRIDE = 8  # pixels per logit cell (output stride 8)
KERNEL_SIZES = (3, 5, 7)  # the paper's affinity-field sizes, in logit cells
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
THRESHOLDS = (1.0, 3.0, 10.0)  # widths in cells for the "share of the ridge at least this wide" columns
RIDGE_SLOPE = 0.5  # a ridge sample has no neighbour uphill by more than this per unit step


def _check_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"a label map must be an integer array [H, W], got {label.dtype} {label.shape}")
    return label


# --------------------------------------------------------------------------- widths


def _ridge(dist: np.ndarray) -> np.ndarray:
    """Ridge of a distance map ``[h, w]`` (0 outside the mask): the samples inside the mask that no
    8-neighbour exceeds by more than ``RIDGE_SLOPE`` per unit of distance between them."""
    pad = np.pad(dist, 1)
    h, w = dist.shape
    ok = dist > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                ok &= dist >= pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - RIDGE_SLOPE * math.hypot(dy, dx)
    return ok


def width_counts(label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> list[np.ndarray]:
    """Ridge widths of each class of one label map ``[H, W]``, as histograms of squared widths.

    Returns ``num_classes`` int64 arrays ``h_c`` with ``h_c[v]`` = the number of ridge samples (on
    the half-pixel grid) of width ``sqrt(v)`` px, i.e. ``v = (2 D)^2`` with ``D`` in pixels, an
    integer: ``2 D`` is the distance in half-pixel steps (module docstring); empty arrays for
    absent classes.  Each
    connected component is measured inside its bounding box grown by one pixel: the nearest pixel
    outside a component is 4-adjacent to it and, not being in another component, not of its class.
    """
    label = _check_label(label)
    out = [np.zeros(0, np.int64) for _ in range(num_classes)]
    for c in np.unique(label):
        if c == ignore_index or not 0 <= c < num_classes:
            continue
        comps, _ = ndimage.label(label == c, structure=np.ones((3, 3), bool))
        values = []
        for k, box in enumerate(ndimage.find_objects(comps), start=1):
            if box is None:
                continue
            mask = np.pad(comps[box] == k, 1)  # the image border counts as an edge
            up = mask.repeat(2, 0).repeat(2, 1)
            dist = ndimage.distance_transform_edt(up)
            values.append(np.rint(dist[_ridge(dist)] ** 2).astype(np.int64))
        out[int(c)] = np.bincount(np.concatenate(values)) if values else out[int(c)]
    return out


def _add_counts(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if counts.size > total.size:
        total = np.pad(total, (0, counts.size - total.size))
    total[:counts.size] += counts
    return total


def _weighted_quantile(widths: np.ndarray, counts: np.ndarray, q: float) -> float:
    """Inverted-CDF quantile of ``widths`` (sorted) with multiplicities ``counts``."""
    cum = np.cumsum(counts)
    return float(widths[min(int(np.searchsorted(cum, q * cum[-1], side="left")), len(widths) - 1)])


def width_quantiles(labels: Iterable[np.ndarray], num_classes: int, class_names: Sequence[str] | None = None,
                    stride: int = STRIDE, quantiles: Sequence[float] = QUANTILES,
                    thresholds: Sequence[float] = THRESHOLDS, ignore_index: int = IGNORE_INDEX) -> list[dict]:
    """Per-class width distribution, in logit cells, pooled over the label maps ``labels``.

    One record per class (``pandas.DataFrame(records)`` makes the table): ``index``, ``class``,
    ``ridge_points`` (the number of ridge points on the 2x grid, 0 for an absent class), ``mean``,
    ``q05``, ``q25``, ... (one per quantile, in cells, NaN when absent) and ``ge_1``, ``ge_3``,
    ``ge_10``: the share of the ridge at least 1, 3, 10 cells wide (``thresholds``).
    """
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    totals = [np.zeros(0, np.int64) for _ in range(num_classes)]
    for label in labels:
        for c, counts in enumerate(width_counts(label, num_classes, ignore_index)):
            totals[c] = _add_counts(totals[c], counts)
    records = []
    for c, counts in enumerate(totals):
        present = np.nonzero(counts)[0]
        widths = np.sqrt(present) / stride  # width in px = sqrt(v) (2x-grid distance), then cells
        n = int(counts.sum())
        rec = {"index": c, "class": names[c], "ridge_points": n,
               "mean": float((widths * counts[present]).sum() / n) if n else math.nan}
        for q in quantiles:
            rec[f"q{round(100 * q):02d}"] = _weighted_quantile(widths, counts[present], q) if n else math.nan
        for t in thresholds:
            rec[f"ge_{t:g}"] = float(counts[present][widths >= t - 1e-9].sum() / n) if n else math.nan
        records.append(rec)
    return records


# --------------------------------------------------------------------------- edge pairs


def logit_size(n: int, stride: int = STRIDE) -> int:
    """Logit-map extent of an ``n`` px side at ``stride`` (ResNet arithmetic: ``ceil(n / stride)``)."""
    return -(-int(n) // int(stride))


def downsample_nearest(label: np.ndarray, stride: int = STRIDE, size: tuple[int, int] | None = None) -> np.ndarray:
    """``label [H, W]`` nearest-downsampled to ``size`` (default ``(ceil(H/stride), ceil(W/stride))``).

    Cell ``(r, c)`` takes pixel ``(floor(r * s_y), floor(c * s_x))`` with ``s_y = H / h`` in float32,
    as ``torch.nn.functional.interpolate(mode="nearest")`` in
    :func:`aafcore.losses.downsample_labels` computes it (so the same cells for every size).
    """
    label = _check_label(label)
    height, width = label.shape
    h, w = size if size is not None else (logit_size(height, stride), logit_size(width, stride))
    if (h, w) == (height, width):
        return label

    def index(n_out: int, n_in: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return label[index(h, height)][:, index(w, width)]


def _corner_offsets(half: int) -> list[tuple[int, int]]:
    """The 8 corner offsets of a ``(2 half + 1)``-square window (:func:`aafcore.pairs.corner_offsets`)."""
    return [(dy, dx) for dy in (-half, 0, half) for dx in (-half, 0, half) if (dy, dx) != (0, 0)]


def edge_pair_counts(small: np.ndarray, num_classes: int, kernel_sizes: Sequence[int] = KERNEL_SIZES,
                     ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Valid pairs and edge pairs by centre class on one *logit-resolution* label map ``[h, w]``.

    Returns ``(pairs, edges)``, int64 ``[len(kernel_sizes), num_classes]``: ``pairs[k, c]`` the
    number of valid pairs ``V_k(i, o) [y_i = c]`` over the 8 offsets, ``edges[k, c]`` those with
    ``y_{i+o} != c`` (module docstring).
    """
    small = _check_label(small)
    h, w = small.shape
    valid = small != ignore_index
    pairs = np.zeros((len(kernel_sizes), num_classes), np.int64)
    edges = np.zeros_like(pairs)
    for kk, k in enumerate(kernel_sizes):
        if k < 3 or k % 2 == 0:
            raise ValueError(f"kernel sizes must be odd and >= 3, got {k}")
        for dy, dx in _corner_offsets((k - 1) // 2):
            ay, ax = abs(dy), abs(dx)
            if h <= 2 * ay or w <= 2 * ax:
                continue
            centre = (slice(ay, h - ay), slice(ax, w - ax))
            plus = (slice(ay + dy, h - ay + dy), slice(ax + dx, w - ax + dx))
            minus = (slice(ay - dy, h - ay - dy), slice(ax - dx, w - ax - dx))
            ok = valid[centre] & valid[plus] & valid[minus]
            yc = small[centre][ok].astype(np.int64)
            pairs[kk] += np.bincount(yc, minlength=num_classes)[:num_classes]
            edges[kk] += np.bincount(yc[small[plus][ok] != yc], minlength=num_classes)[:num_classes]
    return pairs, edges


def edge_pair_shares(labels: Iterable[np.ndarray], num_classes: int, class_names: Sequence[str] | None = None,
                     stride: int = STRIDE, kernel_sizes: Sequence[int] = KERNEL_SIZES,
                     ignore_index: int = IGNORE_INDEX) -> list[dict]:
    """Edge-pair share per class and field size, pooled over the full-resolution label maps ``labels``.

    Each map is downsampled with :func:`downsample_nearest` (``stride``), then counted with
    :func:`edge_pair_counts`.  One record per (class, size): ``index``, ``class``, ``k``,
    ``pairs``, ``edge_pairs`` and ``share`` = edge_pairs / pairs (NaN without pairs).
    """
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    pairs = np.zeros((len(kernel_sizes), num_classes), np.int64)
    edges = np.zeros_like(pairs)
    for label in labels:
        p, e = edge_pair_counts(downsample_nearest(label, stride), num_classes, kernel_sizes, ignore_index)
        pairs += p
        edges += e
    return [{"index": c, "class": names[c], "k": int(k), "pairs": int(pairs[kk, c]),
             "edge_pairs": int(edges[kk, c]), "share": float(edges[kk, c] / pairs[kk, c]) if pairs[kk, c] else math.nan}
            for c in range(num_classes) for kk, k in enumerate(kernel_sizes)]


# --------------------------------------------------------------------------- a benchmark on disk


def read_label_maps(root: str | os.PathLike, split: str, limit: int | None = None) -> Iterable[np.ndarray]:
    """The label maps ``uint8 [H, W]`` of ``split`` of a VOC-layout tree (the synthetic benchmark),
    the first ``limit`` images of its list (all when None), read lazily."""
    root = Path(root)
    ids = (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    for ident in ids[:limit]:
        path = root / "SegmentationClass" / f"{ident}.png"
        try:
            with Image.open(path) as im:
                yield np.array(im)
        except OSError as err:
            raise DatasetError(f"cannot read {path}: {one_line(err)}") from None


def benchmark_statistics(root: str | os.PathLike, split: str = "train", limit: int | None = 200,
                         stride: int = STRIDE, kernel_sizes: Sequence[int] = KERNEL_SIZES) -> dict:
    """Both statistics of a generated synthetic benchmark at ``root`` (classes from its ``meta.json``)
    on the first ``limit`` images of ``split``: ``{"widths": records, "edge_pairs": records,
    "split": split, "images": n, "stride": stride}`` (records as :func:`width_quantiles` and
    :func:`edge_pair_shares` give them)."""
    try:
        meta = json.loads((Path(root) / "meta.json").read_text())
        names = list(meta["class_names"])
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(f"cannot read {Path(root) / 'meta.json'}: {one_line(err)}") from None
    labels = list(read_label_maps(root, split, limit))
    return {"split": split, "images": len(labels), "stride": stride,
            "widths": width_quantiles(labels, len(names), names, stride),
            "edge_pairs": edge_pair_shares(labels, len(names), names, stride, kernel_sizes)}
