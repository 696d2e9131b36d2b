"""Naive oracle: a direct port of the authors' TensorFlow data flow (network/exps/layers.py,
losses.py and the training scripts), kept deliberately slow and obvious.

For each half size s it pads and stacks the 8 corner neighbours into ``[N, C, 8, H, W]``,
builds the edge / non-edge / ignore masks the same way as the official code
(``ignores_from_label``: centre, ``i+o`` and ``i-o``, padding counts as ignored;
``edges_from_label`` on one-hot labels), computes the clipped Bernoulli KL, and takes
``mean`` over the boolean-indexed entries.  Used by the tests and by ``benchmarks/aaf_loss.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def corner_offsets(s: int):
    return [(dy, dx) for dy in (-s, 0, s) for dx in (-s, 0, s) if (dy, dx) != (0, 0)]


def shifted(x: torch.Tensor, dy: int, dx: int, fill) -> torch.Tensor:
    """Value at ``i + (dy, dx)`` for every pixel i of ``x [..., H, W]``; outside the image: ``fill``."""
    h, w = x.shape[-2:]
    py, px = abs(dy), abs(dx)
    if x.dtype == torch.bool:
        padded = F.pad(x.to(torch.uint8), (px, px, py, py), value=int(fill)).bool()
    else:
        padded = F.pad(x, (px, px, py, py), value=fill)
    return padded[..., py + dy: py + dy + h, px + dx: px + dx + w]


def naive_terms(logits, labels, s, margin=3.0, ignore_index=255):
    """Stacked terms and masks, each ``[N, C, 8, H, W]``: (edge loss, non-edge loss, edge, non-edge)."""
    n, c, h, w = logits.shape
    prob = logits.softmax(1)
    offsets = corner_offsets(s)
    paired = torch.stack([shifted(prob, dy, dx, 0.0) for dy, dx in offsets], 2)
    ignore = labels == ignore_index
    ignored = torch.stack([shifted(ignore, dy, dx, True) | shifted(ignore, -dy, -dx, True) | ignore
                           for dy, dx in offsets], 1)  # [N, 8, H, W]
    not_ignored = ~ignored[:, None]
    safe = torch.where(ignore, torch.full_like(labels, c), labels)
    one_hot = F.one_hot(safe, c + 1)[..., :c].permute(0, 3, 1, 2)  # ignore -> all zeros
    one_hot_paired = torch.stack([shifted(one_hot, dy, dx, 0) for dy, dx in offsets], 2)
    edge = (one_hot[:, :, None] != one_hot_paired) & not_ignored
    not_edge = ~edge & not_ignored

    q = prob[:, :, None].clamp(1e-4, 1.0)
    qb = (1 - prob[:, :, None]).clamp(1e-4, 1.0)
    qj = paired.clamp(1e-4, 1.0)
    qbj = (1 - paired).clamp(1e-4, 1.0)
    kl = qj * torch.log(qj / q) + qbj * torch.log(qbj / qb)
    return torch.maximum(torch.zeros_like(kl), margin - kl), kl, edge, not_edge


def _masked_mean(values, mask):
    picked = values[mask]
    return picked.mean() if picked.numel() else values.sum() * 0.0


def naive_affinity(logits, labels, margin=3.0, lambda_edge=1.0, lambda_not_edge=1.0, ignore_index=255):
    edge_loss, not_edge_loss, edge, not_edge = naive_terms(logits, labels, 1, margin, ignore_index)
    return lambda_edge * _masked_mean(edge_loss, edge) + lambda_not_edge * _masked_mean(not_edge_loss, not_edge)


def naive_aaf(logits, labels, edge_logits, not_edge_logits, kernel_sizes=(3, 5, 7), margin=3.0,
              lambda_edge=1.0, lambda_not_edge=1.0, ignore_index=255, weight_by="label"):
    """AAF as in ``train_aaf.py``: per size, ``mean(w[y_i] * edge) + mean(w[y_i] * non-edge)``."""
    w_edge, w_not_edge = edge_logits.softmax(1), not_edge_logits.softmax(1)  # [C, K]
    safe = torch.where(labels == ignore_index, torch.zeros_like(labels), labels)
    total = logits.sum() * 0.0
    for k, size in enumerate(kernel_sizes):
        edge_loss, not_edge_loss, edge, not_edge = naive_terms(logits, labels, (size - 1) // 2,
                                                               margin, ignore_index)
        if weight_by == "label":  # weight of the centre pixel's label: [N, 1, 1, H, W]
            we = w_edge[:, k][safe][:, None, None]
            wn = w_not_edge[:, k][safe][:, None, None]
        else:  # weight of the class channel: [1, C, 1, 1, 1]
            we = w_edge[:, k][None, :, None, None, None]
            wn = w_not_edge[:, k][None, :, None, None, None]
        total = total + lambda_edge * _masked_mean(edge_loss * we, edge)
        total = total + lambda_not_edge * _masked_mean(not_edge_loss * wn, not_edge)
    return total


def naive_embedding(features, labels, margin=0.2, kernel_size=3, ignore_index=255):
    """Eq. 9 by explicit loops over pixels and corner offsets (tiny inputs only)."""
    f = F.normalize(features, dim=1)
    n, _, h, w = f.shape
    s = (kernel_size - 1) // 2
    edge, not_edge = [], []
    for b in range(n):
        for r in range(h):
            for col in range(w):
                for dy, dx in corner_offsets(s):
                    pts = [(r, col), (r + dy, col + dx), (r - dy, col - dx)]
                    if any(not (0 <= y < h and 0 <= x < w) for y, x in pts):
                        continue
                    if any(int(labels[b, y, x]) == ignore_index for y, x in pts):
                        continue
                    d = f[b, :, r + dy, col + dx] - f[b, :, r, col]
                    d2 = (d * d).sum()
                    if labels[b, r, col] == labels[b, r + dy, col + dx]:
                        not_edge.append(d2)
                    else:
                        edge.append(torch.clamp(margin - d2.clamp_min(1e-12).sqrt(), min=0))
    mean = lambda xs: torch.stack(xs).mean() if xs else f.sum() * 0.0  # noqa: E731
    return mean(edge) + mean(not_edge)
