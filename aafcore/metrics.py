"""Segmentation metrics of Section 4.2 (DESIGN.md section 8).

This module holds the dataset-wide confusion-matrix metrics: per-class pixel IoU, mIoU and
pixel accuracy.  Instance-wise IoU and boundary precision/recall are added by issue 4.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SegmentationMetrics", "confusion_matrix"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


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
    for name, values in (("ground truth", gt), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(f"confusion_matrix: {name} value {bad} is outside [0, {num_classes})")
    return np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


class SegmentationMetrics:
    """Streaming metrics over a dataset: call :meth:`update` per image, :meth:`compute` at the end.

    ``iou[c] = TP_c / (TP_c + FP_c + FN_c)`` from the dataset-wide confusion matrix (``nan`` for a
    class that is neither in the ground truth nor predicted); ``miou`` is the mean over the
    classes that are not ``nan``; ``pixel_accuracy = Σ TP / Σ valid pixels``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, boundary_tolerance: float = 0.0075):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_tolerance = boundary_tolerance
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, gt, instances=None) -> None:
        """Add one image: ``pred`` and ``gt`` int ``[H, W]`` (numpy or torch)."""
        self.confusion += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        total = cm.sum()
        return {"iou": iou.tolist(),
                "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                "pixel_accuracy": float(tp.sum() / total) if total else float("nan")}
