"""Small, fast building blocks of the interactive tutorial on affinity fields (``notebooks/tutorial.ipynb``).

* :func:`toy_labels` -- a toy label map with a thin bar, a disk and background;
* :func:`pair_masks` -- which corner pairs of a k x k field are *edge* / *non-edge* pairs;
* :func:`pair_loss` -- the affinity loss of one pair and class channel (Eq. 3): KL or hinge;
* :func:`thin_structure_experiment` -- CE vs CE + affinity on a thin structure, in seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aafcore.losses import AffinityFieldLoss, corner_offsets
from aafcore.metrics import SegmentationMetrics

__all__ = ["toy_labels", "pair_masks", "pair_loss", "thin_structure_experiment"]

CLASSES = ("background", "bar", "disk")


def toy_labels(size: int = 32, bar_width: int = 2) -> np.ndarray:
    """int64 ``[size, size]``: 0 background, 1 a vertical bar ``bar_width`` px wide, 2 a disk."""
    y, x = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int64)
    labels[size // 6: size - size // 6, size // 4: size // 4 + bar_width] = 1
    labels[(y - size * 0.6) ** 2 + (x - size * 0.65) ** 2 <= (size * 0.22) ** 2] = 2
    return labels


def pair_masks(labels: np.ndarray, kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the number of *edge* and of *non-edge* pairs it centres in a ``k x k`` field.

    As in the losses: pixel ``i`` is paired with the 8 corners ``i + o`` of its window
    (``o ∈ {-s, 0, s}², s = (k-1)/2``), a pair counting only when ``i - o`` and ``i + o`` are in the
    image; it is an edge pair when ``y_{i+o} ≠ y_i``.  Returns two int arrays ``[H, W]``.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    edge = np.zeros((h, w), np.int64)
    same = np.zeros((h, w), np.int64)
    for dy, dx in corner_offsets((kernel_size - 1) // 2):
        ys, xs = np.mgrid[:h, :w]
        inside = ((ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
                  & (ys - dy >= 0) & (ys - dy < h) & (xs - dx >= 0) & (xs - dx < w))
        neighbour = labels[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
        edge += inside & (neighbour != labels)
        same += inside & (neighbour == labels)
    return edge, same


def pair_loss(p_i: float, p_j: float, is_edge: bool, margin: float = 3.0) -> float:
    """Eq. 3 for one pair and one class channel c, as the official code computes it.

    ``p_i``, ``p_j``: the two pixels' probabilities of class c.  With ``q = clamp(p, 1e-4, 1)`` and
    ``q̄ = clamp(1 - p, 1e-4, 1)``, ``KL = q_j log(q_j / q_i) + q̄_j log(q̄_j / q̄_i)`` (binary KL
    of channel c); the non-edge term is ``KL`` (grouping force), the edge term -- when exactly one
    of the two pixels is labelled c -- is ``max(0, m - KL)`` (separating force).
    """
    q_i, q_j = np.clip(p_i, 1e-4, 1.0), np.clip(p_j, 1e-4, 1.0)
    r_i, r_j = np.clip(1 - p_i, 1e-4, 1.0), np.clip(1 - p_j, 1e-4, 1.0)
    kl = float(q_j * np.log(q_j / q_i) + r_j * np.log(r_j / r_i))
    return max(0.0, margin - kl) if is_edge else kl


def _toy_batch(n: int, size: int, generator: torch.Generator, noise: float):
    """Images of random thin bars and disks: colour = class colour + Gaussian noise."""
    colours = torch.tensor([[0.2, 0.2, 0.2], [0.55, 0.5, 0.45], [0.5, 0.55, 0.45]])
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    for b in range(n):
        x0 = int(torch.randint(2, size - 4, (1,), generator=generator))
        labels[b, 2:size - 2, x0:x0 + 2] = 1
        cy, cx = (int(v) for v in torch.randint(size // 4, 3 * size // 4, (2,), generator=generator))
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        labels[b][((yy - cy) ** 2 + (xx - cx) ** 2) <= (size // 6) ** 2] = 2
    images = colours[labels].permute(0, 3, 1, 2)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images, labels


def thin_structure_experiment(steps: int = 150, size: int = 32, noise: float = 0.25, seed: int = 0,
                              affinity_weight: float = 1.0) -> dict:
    """Train the same tiny fully convolutional net twice, with CE and with CE + affinity loss,
    on noisy images of thin bars and disks whose colours are close; return the test IoU per class
    and the boundary F of the bar for each (a few seconds on a CPU).

    The two runs share the initial weights and the training batches, so they differ only by the
    loss.  The outcome is what it is: the tutorial shows it, whichever way it goes.
    """
    results = {}
    for name, use_affinity in (("CE", False), ("CE + affinity", True)):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                            nn.ReLU(), nn.Conv2d(16, 3, 1))
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        affinity = AffinityFieldLoss(3)
        gen = torch.Generator().manual_seed(seed + 1)
        for _ in range(steps):
            images, labels = _toy_batch(8, size, gen, noise)
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            if use_affinity:
                loss = loss + affinity_weight * affinity(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        test_images, test_labels = _toy_batch(16, size, torch.Generator().manual_seed(seed + 1000), noise)
        with torch.no_grad():
            pred = net(test_images).argmax(1)
        metrics = SegmentationMetrics(3, boundary_tolerance=1.5 / np.hypot(size, size))
        for p, g in zip(pred, test_labels):
            metrics.update(p, g)
        r = metrics.compute()
        results[name] = {"iou": dict(zip(CLASSES, r["iou"])), "bar_boundary_f": r["boundary_f"][1],
                         "prediction": pred[0].numpy(), "image": test_images[0], "labels": test_labels[0].numpy()}
    return results
