"""The pairs of an affinity field and the fast sums of their pairwise KL terms (DESIGN.md section 5).

For a field of size ``k = 2s+1`` a centre pixel ``i`` is paired with the 8 *corner* pixels
``j = i + o`` of its k x k window, ``o in {-s, 0, s}^2 minus (0, 0)``.  The pair ``(i, o)`` counts
only when ``i - o`` and ``i + o`` are both inside the image and none of ``y_i, y_{i+o}, y_{i-o}``
is ignored (the authors' TensorFlow code drops both directions).

:class:`_PairKL` computes, for several sizes at once, the per-class sums of the edge and non-edge
affinity terms with shifted slices and a hand-written backward pass: the same arithmetic as
stacking ``[N, C, 8, H, W]`` neighbours and boolean-indexing them (``tests/naive_aaf.py`` keeps
that naive form as the oracle), but with per-pixel logarithms computed once and no gathers over
the class axis except at the two channels that are edges of a pair.  :mod:`aafcore.losses`
builds the losses of the paper on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from aafcore.errors import NonFiniteError

__all__ = ["CLIP", "corner_offsets", "downsample_labels", "pair_tables", "pair_kl_sums", "check_inputs",
           "check_label_range", "safe_mean"]

CLIP = 1e-4  # probabilities are clipped to [1e-4, 1] before the logarithms, as in the official code
SUM_DTYPE = torch.float64  # the per-class sums of many terms are accumulated in float64


# --------------------------------------------------------------------------- helpers


def corner_offsets(half_size: int) -> list[tuple[int, int]]:
    """The 8 corner offsets ``(dy, dx)`` of a ``(2s+1) x (2s+1)`` window, ``s = half_size``."""
    s = half_size
    return [(dy, dx) for dy in (-s, 0, s) for dx in (-s, 0, s) if (dy, dx) != (0, 0)]


def _pair_slices(height: int, width: int, dy: int, dx: int):
    """Slices of the centres ``i`` with ``i - o`` and ``i + o`` inside the image, and of ``i + o``.

    Returns ``(centre, neighbour)``, two ``(row_slice, col_slice)`` tuples of equal extent, or
    ``None`` when no such centre exists (image not larger than the window).
    """
    ay, ax = abs(dy), abs(dx)
    if height <= 2 * ay or width <= 2 * ax:
        return None
    centre = (slice(ay, height - ay), slice(ax, width - ax))
    neighbour = (slice(ay + dy, height - ay + dy), slice(ax + dx, width - ax + dx))
    return centre, neighbour


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour downsampling of ``labels [N, H, W]`` to ``size = (h, w)``.

    Pixel ``(r, c)`` of the output takes input ``(floor(r * H / h), floor(c * W / w))``: the rule of
    TensorFlow 1's ``resize_nearest_neighbor`` that the authors used to shrink labels to the
    logits (output stride 8).  The ignore label survives unchanged.
    """
    if labels.shape[-2:] == torch.Size(size):
        return labels
    out = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return out[:, 0].to(labels.dtype)


def check_inputs(
    name: str, logits: Tensor, labels: Tensor, num_classes: int | None, ignore_index: int
) -> Tensor:
    """Validate ``logits [N, C, H, W]`` and ``labels [N, H, W]``; return labels as int64.

    Raises ``TypeError``/``ValueError`` with a one-line message naming the bad value.
    """
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(f"{name}: logits and labels must be torch tensors")
    if not logits.is_floating_point():
        raise TypeError(f"{name}: logits must be a floating-point tensor, got {logits.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name}: labels must be an integer tensor, got {labels.dtype}")
    if logits.dim() != 4:
        raise ValueError(f"{name}: logits must be [N, C, H, W], got shape {tuple(logits.shape)}")
    n, c, h, w = logits.shape
    if num_classes is not None and c != num_classes:
        raise ValueError(f"{name}: logits have {c} channels but num_classes={num_classes}")
    if labels.shape != (n, h, w):
        raise ValueError(
            f"{name}: labels shape {tuple(labels.shape)} does not match logits [N, H, W] = "
            f"{(n, h, w)} (downsample labels with aafcore.losses.downsample_labels)"
        )
    if labels.device != logits.device:
        raise ValueError(f"{name}: labels on {labels.device} but logits on {logits.device}")
    if not torch.isfinite(logits).all():
        raise NonFiniteError(f"{name}: logits contain NaN or inf")
    labels = labels.long()
    if num_classes is not None:
        check_label_range(name, labels, num_classes, ignore_index)
    return labels


def check_label_range(name: str, labels: Tensor, num_classes: int, ignore_index: int) -> None:
    """A one-line ``ValueError`` when a label of ``labels`` is outside ``[0, num_classes)`` and is
    not ``ignore_index``."""
    if labels.numel():
        low, high = torch.aminmax(torch.where(labels == ignore_index, 0, labels))
        if low < 0 or high >= num_classes:
            value = int(low if low < 0 else high)
            raise ValueError(
                f"{name}: label value {value} is outside [0, {num_classes}) and is not the "
                f"ignore index {ignore_index}"
            )


# --------------------------------------------------------------------------- pairwise KL sums


@dataclass(frozen=True)
class _Geometry:
    """Corner offsets of several sizes on an H x W image, and the index tables they need.

    Offsets are enumerated size by size, 8 corners each (``P = 8 K``), so that offset ``p`` and
    its opposite ``7 - p`` (mod 8) belong to the same size.  ``padded [P * H * W]`` is the flat
    index of ``i + o`` in the image padded by ``max(s)`` on every side; ``step [P]`` the flat
    step of each offset in the unpadded image; ``slices`` the ``(p, centre, neighbour)`` slices
    of the offsets whose pairs fit in the image.
    """

    offsets: tuple[tuple[int, int], ...]
    pad: int
    padded: Tensor
    step: Tensor
    opposite: Tensor
    slices: tuple

    def pad_map(self, x: Tensor, fill) -> Tensor:
        """``x [N, H, W]`` padded by ``pad`` with ``fill`` and flattened: ``[N, (H+2pad)(W+2pad)]``."""
        p = self.pad
        out = x.new_full((x.shape[0], x.shape[1] + 2 * p, x.shape[2] + 2 * p), fill)
        out[:, p:p + x.shape[1], p:p + x.shape[2]] = x
        return out.view(x.shape[0], -1)

    def at_neighbours(self, x: Tensor, fill) -> Tensor:
        """``out[n, p, i] = x[n, i + o_p]`` (``fill`` outside the image): ``[N, P, H, W]``."""
        n, height, width = x.shape
        index = self.padded.view(1, -1).expand(n, -1)
        return self.pad_map(x, fill).gather(1, index).view(n, len(self.offsets), height, width)

    def to_neighbours(self, w: Tensor, first: int = 0) -> Tensor:
        """``out[n, j] = sum_p w[n, p, j - o_{first+p}]`` for ``w [N, P', H, W]``: ``[N, H, W]``."""
        n, count, height, width = w.shape
        p, hw = self.pad, height * width
        out = w.new_zeros(n, (height + 2 * p) * (width + 2 * p))
        index = self.padded[first * hw:(first + count) * hw]
        out.scatter_add_(1, index.view(1, -1).expand(n, -1), w.reshape(n, -1))
        return out.view(n, height + 2 * p, width + 2 * p)[:, p:p + height, p:p + width]


@functools.lru_cache(maxsize=64)
def _geometry(height: int, width: int, half_sizes: tuple[int, ...], device: torch.device) -> _Geometry:
    offsets = tuple(o for s in half_sizes for o in corner_offsets(s))
    pad = max(half_sizes)
    wp = width + 2 * pad
    base = (torch.arange(height)[:, None] + pad) * wp + torch.arange(width) + pad
    padded = base + torch.tensor([dy * wp + dx for dy, dx in offsets])[:, None, None]
    step = torch.tensor([dy * width + dx for dy, dx in offsets])
    opposite = torch.tensor([8 * (p // 8) + 7 - p % 8 for p in range(len(offsets))])
    slices = tuple((p, *sl) for p, (dy, dx) in enumerate(offsets)
                   if (sl := _pair_slices(height, width, dy, dx)) is not None)
    return _Geometry(offsets, pad, padded.flatten().to(device), step.to(device), opposite.to(device), slices)


def pair_tables(labels: Tensor, valid: Tensor, half_sizes: tuple[int, ...]):
    """Labels and validity of every (centre, offset) pair, for all sizes at once.

    Returns ``(geometry, y_j, pair_valid)``: ``y_j [N, P, H, W]`` the label at ``i + o`` (-1
    outside the image or ignored) and ``pair_valid [N, P, H, W]`` bool, ``v_i & v_{i+o} & v_{i-o}``.
    """
    geo = _geometry(*labels.shape[-2:], tuple(half_sizes), labels.device)
    y_j = geo.at_neighbours(torch.where(valid, labels, -1), -1)
    inside = y_j >= 0
    return geo, y_j, valid[:, None] & inside & inside.index_select(1, geo.opposite)


def _take(source: Tensor, index: Tensor) -> Tensor:
    """``source.flatten()[index]`` (same shape as ``index``), through the faster 1-D ``index_select``."""
    return source.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)


class _PairKL(torch.autograd.Function):
    """Per-size, per-key sums of the edge and non-edge affinity terms.

    Inputs: ``p [N, C, H, W]`` (softmax probabilities), ``labels [N, H, W]`` int64, ``half_sizes``
    (tuple of s), ``margin`` m, ``by_channel`` (bool), ``ignore_index``.

    With ``q = clip(p, 1e-4, 1)``, ``qb = clip(1 - p, 1e-4, 1)``, ``j = i + o`` and
    ``KL_c(i, o) = q_{j,c} log(q_{j,c}/q_{i,c}) + qb_{j,c} log(qb_{j,c}/qb_{i,c})``, it returns

    * ``edge [K, C]``:     sum over valid (i, o, c) with ``[y_i = c] != [y_j = c]`` of ``max(0, m - KL_c)``
    * ``non_edge [K, C]``: sum over the other valid (i, o, c) of ``KL_c``
    * ``n_edge [K]``, ``n_non_edge [K]``: the number of entries in each sum (not differentiable)

    where the key (second axis) is the centre label ``y_i`` (official code) or, with
    ``by_channel``, the channel ``c`` (Eq. 7 read literally).

    How.  For a pair with ``y_i != y_j`` exactly the channels ``a = y_i`` and ``b = y_j`` are
    edges and every other channel is non-edge, so non-edge = (sum of ``KL_c`` over *all*
    channels) - (``KL_a + KL_b`` at the edge pairs).  With ``h = q log q + qb log qb``,
    ``KL_c = h_{j,c} - q_{j,c} log q_{i,c} - qb_{j,c} log qb_{i,c}``: the all-channel sum needs one
    shifted multiply-add per offset for the cross term and per-pixel maps for ``h``; the two edge
    channels are gathered for the edge pairs alone (one ``nonzero``).  The backward pass is
    written by hand, so no ``[N, C, 8, H, W]`` tensor is ever built.
    """

    @staticmethod
    def forward(ctx, p, labels, half_sizes, margin, by_channel, ignore_index):
        n, c, height, width = p.shape
        hw, k_sizes = height * width, len(half_sizes)
        p, labels = p.contiguous(), labels.contiguous()
        qq = torch.stack((p.clamp(CLIP, 1.0), (1 - p).clamp(CLIP, 1.0)), 1)  # [N, 2, C, H, W]: q, qb
        lg = qq.log()
        valid = labels != ignore_index
        y = torch.where(valid, labels, 0)  # a safe index; ignored pixels are masked out below
        geo, y_j, pair_valid = pair_tables(labels, valid, half_sizes)
        pair_f = pair_valid.to(p.dtype)
        h = (qq * lg).sum(1)  # [N, C, H, W]

        # Dense part: acc_k = sum_{o of size k} V(i, o) (q, qb)_{i+o}, and per key
        # sum over all channels of KL = sum_o V h_{i+o} - sum_c lg_i . acc_k.
        accs = qq.new_zeros(k_sizes, *qq.shape)  # [K, N, 2, C, H, W]
        for o, (r0, c0), (r1, c1) in geo.slices:
            accs[o // 8, ..., r0, c0].addcmul_(pair_f[:, None, None, o, r0, c0], qq[..., r1, c1])
        cross = lg * accs  # sum_o V (q_j log q_i, qb_j log qb_i), per size
        non_edge = p.new_zeros(k_sizes, c, dtype=SUM_DTYPE)  # sums of many terms: accumulate in float64
        if by_channel:  # sum_i sum_o V h_{i+o,c} = sum_j h_{j,c} (number of pairs whose neighbour is j)
            received = torch.stack([geo.to_neighbours(pair_f[:, 8 * k:8 * k + 8], 8 * k)
                                    for k in range(k_sizes)])  # [K, N, H, W]
            non_edge += ((h * received[:, :, None]).sum((1, 3, 4)) - cross.sum((1, 2, 4, 5))).to(SUM_DTYPE)
        else:
            h_term = (pair_f * geo.at_neighbours(h.sum(1), 0.0)).view(n, k_sizes, 8, hw).sum(2)  # [N, K, HW]
            cross_term = cross.sum((2, 3)).view(k_sizes, n, hw).transpose(0, 1)  # [N, K, HW]
            per_px = ((h_term - cross_term) * valid.view(n, 1, hw)).flatten().to(SUM_DTYPE)
            px_keys = torch.arange(k_sizes, device=p.device)[:, None] * c + y.view(n, 1, hw)  # [N, K, HW]
            non_edge.view(-1).index_add_(0, px_keys.flatten(), per_px)

        # Edge pairs: q and qb at (j, a), (j, b), (i, a), (i, b), a = y_i, b = y_j.
        e_n, e_p, e_r, e_c = (pair_valid & (y[:, None] != y_j)).nonzero().unbind(1)
        x_pix = e_r * width + e_c
        ya = _take(y, e_n * hw + x_pix)
        yb = _take(y_j, (e_n * len(geo.offsets) + e_p) * hw + x_pix)
        pix = torch.stack((x_pix + _take(geo.step, e_p), x_pix))  # [2, M]: j, i
        chan = torch.stack((ya, yb)) * hw  # [2, M]: a, b
        part = torch.arange(2, device=p.device)[:, None, None, None] * (c * hw)  # q, qb
        index = part + (pix[:, None] + chan + e_n * (2 * c * hw))  # [2 (q|qb), 2 (j|i), 2 (a|b), M]
        vals = _take(qq, index)
        logs = vals.log()
        kl_ab = (vals[:, 0] * (logs[:, 0] - logs[:, 1])).sum(0).flatten()  # [2M]: KL_a then KL_b
        e_k = (e_p // 8) * c
        keys = torch.cat((e_k + ya, e_k + (yb if by_channel else ya)))
        kl_sum = kl_ab.to(SUM_DTYPE)
        edge = p.new_zeros(k_sizes * c, dtype=SUM_DTYPE).index_add_(0, keys, (margin - kl_sum).clamp_min(0))
        non_edge -= p.new_zeros(k_sizes * c, dtype=SUM_DTYPE).index_add_(0, keys, kl_sum).view(k_sizes, c)

        n_edge = 2 * torch.zeros(k_sizes, dtype=torch.long, device=p.device).index_add_(
            0, e_p // 8, torch.ones_like(e_p))
        n_valid = pair_valid.sum((0, 2, 3)).view(k_sizes, 8).sum(1)
        n_non_edge = c * n_valid - n_edge
        ctx.mark_non_differentiable(n_edge, n_non_edge)
        ctx.save_for_backward(p, qq, lg, y, valid, pair_f, keys, kl_ab, index, vals, logs)
        ctx.accs, ctx.geo = accs, geo
        ctx.margin, ctx.by_channel = margin, by_channel
        return edge.view(k_sizes, c).to(p.dtype), non_edge.to(p.dtype), n_edge, n_non_edge

    @staticmethod
    def backward(ctx, g_edge, g_non_edge, _g_n_edge, _g_n_non_edge):
        p, qq, lg, y, valid, pair_f, keys, kl_ab, index, vals, logs = ctx.saved_tensors
        geo, by_channel = ctx.geo, ctx.by_channel
        n, c, height, width = p.shape
        k_sizes = len(ctx.accs)
        # Dense part.  The coefficient of KL_c(i, o) is alpha(i) beta(c): alpha = g[k, y_i], beta = 1
        # (by label) or alpha = 1, beta = g[k, c] (by channel).  Then
        #   d/d log q_i = -sum_k coef acc_k(i),  d/dq_j = -sum_o coef log q_i,  d/dh_j = sum_o coef.
        g_qq = torch.zeros_like(qq)
        g_lg = torch.zeros_like(qq)
        if by_channel:
            betas = g_non_edge[:, None, None, :, None, None]  # [K, 1, 1, C, 1, 1]
            for k, acc in enumerate(ctx.accs):
                g_lg.addcmul_(acc, betas[k], value=-1)
            partial = [torch.zeros_like(qq) for _ in range(k_sizes)]
            for o, (r0, c0), (r1, c1) in geo.slices:
                partial[o // 8][..., r1, c1].addcmul_(pair_f[:, None, None, o, r0, c0], lg[..., r0, c0], value=-1)
            for k in range(k_sizes):
                g_qq.addcmul_(partial[k], betas[k])
            received = torch.stack([geo.to_neighbours(pair_f[:, 8 * k:8 * k + 8], 8 * k) for k in range(k_sizes)], 1)
            g_h = (received[:, :, None] * g_non_edge[None, :, :, None, None]).sum(1)[:, None]  # [N, 1, C, H, W]
        else:
            alpha = _take(g_non_edge, torch.arange(k_sizes, device=p.device)[:, None, None, None] * c + y)
            alpha = alpha * valid  # [K, N, H, W]
            for k, acc in enumerate(ctx.accs):
                g_lg.addcmul_(acc, alpha[k][:, None, None], value=-1)
            weights = pair_f * alpha.repeat_interleave(8, 0).transpose(0, 1)  # [N, P, H, W]
            for o, (r0, c0), (r1, c1) in geo.slices:
                g_qq[..., r1, c1].addcmul_(weights[:, None, None, o, r0, c0], lg[..., r0, c0], value=-1)
            g_h = geo.to_neighbours(weights)[:, None, None]  # [N, 1, 1, H, W]
        g_qq += g_h  # dh/dq = log q + 1
        g_qq.addcmul_(g_h, lg)
        g_qq.addcdiv_(g_lg, qq)
        # Edge channels: d/dKL of  g_edge[key] max(0, m - KL) - g_non_edge[key] KL, with
        # dKL/dq_j = log(q_j/q_i) + 1 and dKL/dq_i = -q_j/q_i (likewise for qb).
        d = -(_take(g_edge, keys) * (ctx.margin - kl_ab > 0) + _take(g_non_edge, keys))
        d = d.view(2, -1)  # [2 (a|b), M]
        g_vals = torch.stack((d * (logs[:, 0] - logs[:, 1] + 1), -d * vals[:, 0] / vals[:, 1]), 1)
        g_qq.view(-1).index_add_(0, index.flatten(), g_vals.flatten())
        zero = p.new_zeros(())
        g_p = torch.where(p >= CLIP, g_qq[:, 0], zero) - torch.where(1 - p >= CLIP, g_qq[:, 1], zero)
        return g_p, None, None, None, None, None


def pair_kl_sums(logits, labels, half_sizes, margin, by_channel, ignore_index):
    """Softmax then :class:`_PairKL`, in float32 at least and with autocast off."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return _PairKL.apply(logits.softmax(1), labels, tuple(half_sizes), float(margin), by_channel,
                             ignore_index)


def safe_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, and 0 (never NaN) for an empty set."""
    return total / count.clamp_min(1).to(total.dtype)
