"""Random test inputs: logits and piecewise-constant label maps with edges, noise and ignore pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_labels(n, h, w, c, seed=0, ignore_frac=0.1, ignore_index=255, block=3):
    """Blocky label maps (so both edge and non-edge pairs occur), 10% label noise, ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (n, 1, -(-h // block), -(-w // block)), generator=g).float()
    labels = F.interpolate(coarse, scale_factor=block, mode="nearest")[:, 0, :h, :w].long()
    noise = torch.rand(n, h, w, generator=g) < 0.1
    labels = torch.where(noise, torch.randint(0, c, (n, h, w), generator=g), labels)
    ignored = torch.rand(n, h, w, generator=g) < ignore_frac
    return torch.where(ignored, torch.full_like(labels, ignore_index), labels)


def random_case(n, c, h, w, seed=0, dtype=torch.float64, scale=1.5, **label_kw):
    """``(logits [n, c, h, w] requiring grad, labels [n, h, w])``."""
    g = torch.Generator().manual_seed(seed + 1000)
    logits = (scale * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    return logits, random_labels(n, h, w, c, seed, **label_kw)


def randomise_weights(loss, seed=0):
    """Give an AAF loss non-uniform size weights (the zero initialisation hides indexing bugs)."""
    g = torch.Generator().manual_seed(seed + 2000)
    with torch.no_grad():
        loss.edge_logits.copy_(torch.randn(loss.edge_logits.shape, generator=g))
        loss.not_edge_logits.copy_(torch.randn(loss.not_edge_logits.shape, generator=g))
    return loss


def rel_err(a, b):
    """Largest absolute difference relative to the largest magnitude of ``b``."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
