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
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from aafcore.errors import NonFiniteError
from aafcore.kernels import BACKENDS
from aafcore.kernels import cpu as cpu_kernel

__all__ = ["CLIP", "corner_offsets", "downsample_labels", "pair_tables", "pair_kl_sums", "check_inputs",
           "check_label_range", "safe_mean", "VALIDATE_MODES", "BACKENDS", "resolve_backend"]

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


VALIDATE_MODES = ("auto", "sync", "async", "off")


def check_inputs(
    name: str, logits: Tensor, labels: Tensor, num_classes: int | None, ignore_index: int,
    validate: str = "auto",
) -> Tensor:
    """Validate ``logits [N, C, H, W]`` and ``labels [N, H, W]``; return labels as int64.

    Types, shapes and devices are always checked (they cost nothing).  The *values* (finite
    logits, labels in ``[0, C)`` or ``ignore_index``) are checked as ``validate`` says:

    * ``"sync"``: on the host, a ``TypeError``/``ValueError`` with a one-line message naming the
      bad value (this reads two numbers back from the device, so on a GPU it waits for it);
    * ``"async"``: with ``torch._assert_async``, which never waits: on a GPU a bad value stops
      the process at a later kernel launch (a device-side assertion, which also ends the CUDA
      context), on the CPU it raises a ``RuntimeError`` with the one-line message at once;
    * ``"auto"`` (default): ``"sync"`` on the CPU, ``"async"`` on any other device;
    * ``"off"``: no value checks.
    """
    if validate not in VALIDATE_MODES:
        raise ValueError(f"{name}: validate must be one of {VALIDATE_MODES}, got {validate!r}")
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
    labels = labels.long()
    if validate == "auto":
        validate = "sync" if logits.device.type == "cpu" else "async"
    if validate == "sync":
        if not torch.isfinite(logits).all():
            raise NonFiniteError(f"{name}: logits contain NaN or inf")
        if num_classes is not None:
            check_label_range(name, labels, num_classes, ignore_index)
    elif validate == "async" and logits.numel():
        torch._assert_async(torch.isfinite(logits).all(), f"{name}: logits contain NaN or inf")
        if num_classes is not None:
            in_range = ((labels >= 0) & (labels < num_classes)) | (labels == ignore_index)
            torch._assert_async(in_range.all(), f"{name}: a label value is outside [0, {num_classes}) "
                                                f"and is not the ignore index {ignore_index}")
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


@dataclass(frozen=True)
class _Flat:
    """An H x W image on a flat grid padded by ``pad = max(s)`` on every side (``S = Hp * Wp``).

    The *domain* is the run of flat indices from the first to the last image pixel
    (``start``, ``length = (H - 1) Wp + W``), pad columns between rows included; for every
    domain pixel ``i`` and corner offset ``o`` (``|dy|, |dx| <= pad``), ``i + o`` and ``i - o``
    stay on the grid, so an offset is a shift of the flat index by ``step = dy Wp + dx`` and a
    pair that leaves the image lands on padding, which is marked invalid.  ``nbr [P, length]``
    holds ``start + l + step_p``; ``opposite [P]`` the offset ``-o_p``.
    """

    height: int
    width: int
    pad: int
    size: int
    start: int
    length: int
    steps: tuple[int, ...]
    nbr: Tensor
    domain: Tensor
    opposite: Tensor

    def pad_map(self, x: Tensor, fill) -> Tensor:
        """``x [N, ..., H, W]`` on the padded grid, ``fill`` outside the image: ``[N, ..., S]``."""
        p = self.pad
        out = x.new_full((*x.shape[:-2], self.height + 2 * p, self.width + 2 * p), fill)
        out[..., p:p + self.height, p:p + self.width] = x
        return out.flatten(-2)

    def unpad(self, x: Tensor) -> Tensor:
        """The image pixels of ``x [..., S]``: ``[..., H, W]``."""
        p = self.pad
        return x.unflatten(-1, (self.height + 2 * p, self.width + 2 * p))[..., p:p + self.height, p:p + self.width]

    def shifted(self, x: Tensor, p: int) -> Tensor:
        """``x [..., S]`` at ``i + o_p`` for the domain pixels ``i``: a view ``[..., length]``."""
        begin = self.start + self.steps[p]
        return x[..., begin:begin + self.length]

    def at_neighbours(self, x: Tensor) -> Tensor:
        """``out[n, p, l] = x[n, start + l + step_p]`` for ``x [N, S]``: ``[N, P, length]``."""
        return torch.stack([self.shifted(x, p) for p in range(len(self.steps))], 1)

    def to_neighbours(self, w: Tensor) -> Tensor:
        """The adjoint of :meth:`at_neighbours` per size: ``out[n, k, j] = sum_{p of size k}
        w[n, p, j - start - step_p]`` for ``w [N, P, length]``: ``[N, K, S]``."""
        out = w.new_zeros(w.shape[0], w.shape[1] // 8, self.size)
        for p in range(w.shape[1]):
            self.shifted(out[:, p // 8], p).add_(w[:, p])
        return out


@functools.lru_cache(maxsize=64)
def _flat(height: int, width: int, half_sizes: tuple[int, ...], device: torch.device) -> _Flat:
    offsets = [o for s in half_sizes for o in corner_offsets(s)]
    pad = max(half_sizes)
    wp = width + 2 * pad
    start, length = pad * wp + pad, (height - 1) * wp + width
    steps = tuple(dy * wp + dx for dy, dx in offsets)
    domain = torch.arange(start, start + length)
    nbr = domain + torch.tensor(steps)[:, None]
    opposite = torch.tensor([8 * (p // 8) + 7 - p % 8 for p in range(len(offsets))])
    return _Flat(height, width, pad, (height + 2 * pad) * wp, start, length, steps, nbr.to(device),
                 domain.to(device), opposite.to(device))


def _bernoulli(x: Tensor):
    """``(q, qb, log q, log qb)`` with ``q = clip(x, 1e-4, 1)``, ``qb = clip(1 - x, 1e-4, 1)``."""
    q, qb = x.clamp(CLIP, 1.0), (1 - x).clamp(CLIP, 1.0)
    return q, qb, q.log(), qb.log()


def _edge_channels(g: _Flat, p_pad: Tensor, y_safe: Tensor, y_i: Tensor, y_j: Tensor, grad: bool):
    """``KL_a`` and ``KL_b`` of every pair ``(i, o)``, edge pair or not, ``a = y_i``, ``b = y_j``.

    ``p_pad [N, C, S]`` probabilities on the grid, ``y_safe [N, S]`` its labels (0 where ignored),
    ``y_i [N, L]`` those of the domain, ``y_j [N, P, L]`` those of the neighbours (0 where ignored).
    Returns ``own [N, S]`` (``p_{i, y_i}``), ``kl [N, 2, P, L]`` (``KL_a``, ``KL_b``) and, when
    ``grad``, what the backward pass needs, each ``[N, P, L]`` (else ``None``): ``cross_a``
    (``p_{j,a}``), ``fa = dKL_a/dp_{j,a}``, ``fb = dKL_b/dp_{i,b}`` and the clipped logarithms
    ``log qb``, ``log qbb`` of ``p_{i,b}``.
    """
    n, num_p, length = y_j.shape
    dom = slice(g.start, g.start + length)
    zero = p_pad.new_zeros(())
    own = p_pad.gather(1, y_safe[:, None])[:, 0]  # [N, S]
    oq, oqb, olq, olqb = _bernoulli(own)
    at_j = g.at_neighbours(torch.stack((oq * olq + oqb * olqb, oq, oqb)).view(3 * n, -1)).view(3, n, num_p, length)
    # KL_a(i, o) = KL(p_{j,a} || p_{i,a}), p_{j,a} gathered per offset
    cross_a = torch.cat([g.shifted(p_pad, o).gather(1, y_i[:, None]) for o in range(num_p)], 1)  # [N, P, L]
    qa, qba, lqa, lqba = _bernoulli(cross_a)
    lqa -= olq[:, None, dom]   # log(qa / oq_i)
    lqba -= olqb[:, None, dom]
    kl_a = qa * lqa
    kl_a.addcmul_(qba, lqba)
    # KL_b(i, o) = KL(p_{j,b} || p_{i,b}) = h(p_{j,b}) - q_{j,b} log q_{i,b} - qb_{j,b} log qb_{i,b}
    cross_b = p_pad[..., dom].gather(1, y_j)  # [N, P, L]: p_{i, y_j}
    qb, qbb, lqb, lqbb = _bernoulli(cross_b)
    kl_b = at_j[0] - at_j[1] * lqb
    kl_b.addcmul_(at_j[2], lqbb, value=-1)
    kl = torch.stack((kl_a, kl_b), 1)
    if not grad:
        return own, kl, None
    # d KL_a / d p_{j,a} = [p_{j,a} >= clip] (log(qa / oq_i) + 1) - [1 - p_{j,a} >= clip] (log(qba / oqb_i) + 1)
    fa = torch.where(cross_a >= CLIP, lqa + 1, zero).sub_(torch.where(1 - cross_a >= CLIP, lqba + 1, zero))
    # d KL_b / d p_{i,b} = -[p_{i,b} >= clip] oq_j / qb + [1 - p_{i,b} >= clip] oqb_j / qbb
    fb = torch.where(cross_b >= CLIP, at_j[1] / qb, zero).neg_().add_(torch.where(1 - cross_b >= CLIP, at_j[2] / qbb, zero))
    return own, kl, (cross_a, fa, fb, lqb, lqbb)


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
    shifted multiply-add per offset for the cross term and per-pixel maps for ``h``.  The two
    edge channels are computed densely for *every* pair, edge pair or not (the edge mask
    multiplies them): ``p_{j,a}`` and ``p_{i,b}`` are gathered along the class axis, ``p_{i,a}``
    and ``p_{j,b}`` come from the per-pixel map ``p_{i, y_i}``.  Offsets are shifts of a flat
    index on a padded grid (:class:`_Flat`), so every tensor's shape depends on ``[N, C, H, W]``
    and the sizes alone: the cost does not depend on the labels and nothing waits on the host.
    The backward pass is written by hand (scatter-adds with the same dense indices), so no
    ``[N, C, 8, H, W]`` tensor is ever built.
    """

    @staticmethod
    def forward(ctx, p, labels, half_sizes, margin, by_channel, ignore_index):
        n, c, height, width = p.shape
        k_sizes = len(half_sizes)
        g = _flat(height, width, tuple(half_sizes), p.device)
        num_p, length, size = len(g.steps), g.length, g.size
        dom = slice(g.start, g.start + length)
        # Labels on the padded grid (-1: ignored or outside) and the pair tables [N, P, L].
        y_pad = g.pad_map(torch.where(labels == ignore_index, -1, labels), -1)  # [N, S]
        y_safe = y_pad.clamp_min(0)
        y_i = y_safe[:, dom]  # [N, L]
        y_j = g.at_neighbours(y_pad)  # [N, P, L]
        v_j = y_j >= 0
        pair = (y_pad[:, None, dom] >= 0) & v_j & v_j.index_select(1, g.opposite)
        edge_pair = pair & (y_j != y_i[:, None])
        y_j.clamp_min_(0)
        pair_f, edge_f = pair.to(p.dtype), edge_pair.to(p.dtype)

        p_pad = g.pad_map(p, 0.5)  # [N, C, S]; the padding is never paired
        qq = torch.stack((p_pad.clamp(CLIP, 1.0), (1 - p_pad).clamp_(CLIP, 1.0)), 1)  # [N, 2, C, S]: q, qb
        lg = qq.log()
        lg_dom = lg[..., dom]

        # Dense part: acc_k = sum_{o of size k} V(i, o) (q, qb)_{i+o}; per key, the sum over all
        # channels of KL = sum_o V h_{i+o} - lg_i . acc_k.
        accs = qq.new_empty(k_sizes, n, 2, c, length)  # [K, N, 2, C, L]
        for o in range(num_p):
            if o % 8:
                accs[o // 8].addcmul_(pair_f[:, None, None, o], g.shifted(qq, o))
            else:
                torch.mul(pair_f[:, None, None, o], g.shifted(qq, o), out=accs[o // 8])

        grad = ctx.needs_input_grad[0]
        own, kl, for_backward = _edge_channels(g, p_pad, y_safe, y_i, y_j, grad)
        kl_a, kl_b = kl.unbind(1)
        hinge = (margin - kl).clamp_min_(0)

        sum_dtype = torch.promote_types(p.dtype, SUM_DTYPE)
        size_keys = torch.arange(k_sizes, device=p.device)[:, None, None] * c  # [K, 1, 1]
        if by_channel:  # sum_i sum_o V h_{i+o,c} = sum_j h_{j,c} (number of pairs whose neighbour is j)
            h = (qq * lg).sum(1)  # [N, C, S]
            received = g.to_neighbours(pair_f)  # [N, K, S]
            h_term = (h.transpose(0, 1).reshape(c, -1).to(sum_dtype)
                      @ received.transpose(0, 1).reshape(k_sizes, -1).t().to(sum_dtype)).t()  # [K, C]
            non_edge = h_term - (accs * lg_dom).sum((1, 2, 4)).to(sum_dtype)
            # edge channels: a keyed by y_i, b by y_j (moved to j, where it is y_j's own pixel)
            masked = torch.stack((hinge, kl), 0) * edge_f[:, None]  # [2, N, 2, P, L]
            per_a = masked[:, :, 0].reshape(2, n, k_sizes, 8, length).sum(3)  # [2, N, K, L]
            per_b = g.to_neighbours(masked[:, :, 1].reshape(2 * n, num_p, length))  # [2N, K, S]
            keys = torch.cat(((size_keys + y_i).transpose(0, 1).flatten(),
                              (size_keys + y_safe).transpose(0, 1).flatten()))
            sums = []
            for t in range(2):  # edge, then the edge-channel KL to take from non-edge
                values = torch.cat((per_a[t].flatten(), per_b.view(2, n, k_sizes, size)[t].flatten()))
                sums.append(p.new_zeros(k_sizes * c, dtype=sum_dtype).index_add_(0, keys, values.to(sum_dtype)))
            edge, non_edge = sums[0].view(k_sizes, c), non_edge - sums[1].view(k_sizes, c)
        else:
            h_sum = (qq * lg).sum((1, 2))  # [N, S]
            h_term = pair_f * g.at_neighbours(h_sum)  # [N, P, L]
            h_term.addcmul_(kl_a + kl_b, edge_f, value=-1)
            edge_px = (hinge[:, 0] + hinge[:, 1]).mul_(edge_f)
            per_px = torch.stack((edge_px, h_term)).view(2, n, k_sizes, 8, length).sum(3)  # [2, N, K, L]
            per_px[1] -= (accs * lg_dom).sum((2, 3)).transpose(0, 1)
            keys = (size_keys + y_i[None]).transpose(0, 1)  # [N, K, L]
            keys = torch.stack((keys, keys + k_sizes * c)).flatten()
            sums = p.new_zeros(2 * k_sizes * c, dtype=sum_dtype).index_add_(0, keys, per_px.flatten().to(sum_dtype))
            edge, non_edge = sums.view(2, k_sizes, c).unbind(0)

        n_pairs = torch.stack((pair, edge_pair)).view(2, n, k_sizes, 8 * length).sum((1, 3))  # [2, K]
        n_edge = 2 * n_pairs[1]
        n_non_edge = c * n_pairs[0] - n_edge
        ctx.mark_non_differentiable(n_edge, n_non_edge)
        if grad:  # masks as bool, q and y_j recomputed: the saved tensors are ~ 2K + 4 [N, C, S] and 5 [N, P, L] floats
            ctx.save_for_backward(p_pad, lg, accs, pair, edge_pair, hinge > 0, y_pad, own, *for_backward)
        ctx.geometry, ctx.margin, ctx.by_channel, ctx.shape = g, margin, by_channel, (n, c, height, width)
        return edge.to(p.dtype), non_edge.to(p.dtype), n_edge, n_non_edge

    @staticmethod
    def backward(ctx, g_edge, g_non_edge, _g_n_edge, _g_n_non_edge):
        p_pad, lg, accs, pair, edge_pair, hinge_on, y_pad, own, cross_a, fa, fb, lqb, lqbb = ctx.saved_tensors
        g, by_channel = ctx.geometry, ctx.by_channel
        n, c, height, width = ctx.shape
        k_sizes, num_p, length = len(accs), len(g.steps), g.length
        dom = slice(g.start, g.start + length)
        y_safe = y_pad.clamp_min(0)
        y_i, y_j = y_safe[:, dom], g.at_neighbours(y_safe)  # [N, L], [N, P, L]
        pair_f, edge_f = pair.to(p_pad.dtype), edge_pair.to(p_pad.dtype)
        g_edge, g_non_edge = g_edge.contiguous(), g_non_edge.contiguous()
        # Dense part.  The coefficient of KL_c(i, o) is alpha(i) beta(c): alpha = g[k, y_i], beta = 1
        # (by label) or alpha = 1, beta = g[k, c] (by channel).  Then
        #   d/d log q_i = -sum_k coef acc_k(i),  d/dq_j = -sum_o coef log q_i,  d/dh_j = sum_o coef.
        g_qq = torch.zeros_like(lg)  # [N, 2, C, S]
        g_lg = torch.empty_like(accs[0])  # [N, 2, C, L]
        size_keys = torch.arange(k_sizes, device=lg.device)[:, None, None] * c
        keys_i = (size_keys + y_i).transpose(0, 1)[:, :, None]  # [N, K, 1, L]: key of y_i, for the 8 offsets of a size
        per_size = (n, k_sizes, 8, length)
        if by_channel:
            betas = g_non_edge[:, None, None, :, None]  # [K, 1, 1, C, 1]
            torch.mul(accs[0], betas[0], out=g_lg)
            for k in range(1, k_sizes):
                g_lg.addcmul_(accs[k], betas[k])
            weighted = [lg[..., dom] * betas[k] for k in range(k_sizes)]
            for o in range(num_p):
                g.shifted(g_qq, o).addcmul_(pair_f[:, None, None, o], weighted[o // 8], value=-1)
            received = g.to_neighbours(pair_f)  # [N, K, S]
            g_h = torch.einsum("nks,kc->ncs", received, g_non_edge)[:, None]  # [N, 1, C, S]
            keys_j = (size_keys.view(1, k_sizes, 1, 1) + y_j.view(per_size)).view(n, num_p, length)  # key of y_j
        else:
            alpha = g_non_edge.view(-1).take(size_keys + y_i).view(k_sizes, n, 1, 1, length)
            torch.mul(accs[0], alpha[0], out=g_lg)
            for k in range(1, k_sizes):
                g_lg.addcmul_(accs[k], alpha[k])
            weights = (pair_f.view(per_size) * alpha.view(k_sizes, n, 1, length).transpose(0, 1)).view(n, num_p, length)
            lg_dom = lg[..., dom]
            for o in range(num_p):
                g.shifted(g_qq, o).addcmul_(weights[:, None, None, o], lg_dom, value=-1)
            g_h = g.to_neighbours(weights).sum(1)[:, None, None]  # [N, 1, 1, S]
        g_qq += g_h  # dh/dq = log q + 1
        g_qq.addcmul_(g_h, lg)
        g_qq[..., dom].addcdiv_(g_lg, torch.stack((p_pad[..., dom].clamp(CLIP, 1.0), (1 - p_pad[..., dom]).clamp_(CLIP, 1.0)), 1),
                                value=-1)
        zero = lg.new_zeros(())
        g_pad = torch.where(p_pad >= CLIP, g_qq[:, 0], zero).sub_(torch.where(1 - p_pad >= CLIP, g_qq[:, 1], zero))
        # Edge channels: d/dKL of  g_edge[key] max(0, m - KL) - g_non_edge[key] KL  (d_a, d_b [N, P, L]).
        ge, gn = g_edge.view(-1), g_non_edge.view(-1)
        ge_i, gn_i = ge.take(keys_i), gn.take(keys_i)  # [N, K, 1, L]: the key of y_i
        on_a, on_b = hinge_on.unbind(1)
        d_a = (ge_i * on_a.view(per_size)).add_(gn_i).view(n, num_p, length).mul_(edge_f).neg_()
        if by_channel:  # channel b is keyed by y_j
            d_b = (ge.take(keys_j) * on_b).add_(gn.take(keys_j))
        else:
            d_b = (ge_i * on_b.view(per_size)).add_(gn_i).view(n, num_p, length)
        d_b.mul_(edge_f).neg_()
        oq, oqb, olq, olqb = _bernoulli(own)
        # KL_a = qa (log qa - log oq_i) + qba (log qba - log oqb_i), qa from p_{j,a}, oq_i from p_{i,a}:
        #   d/dp_{j,a} = fa (from the forward pass);
        #   d/dp_{i,a} = -[p_{i,a} >= clip] qa / oq_i + [1 - p_{i,a} >= clip] qba / oqb_i
        d_ja = fa * d_a
        sums_i = torch.stack(((d_a * cross_a.clamp(CLIP, 1.0)).sum(1), (d_a * (1 - cross_a).clamp_(CLIP, 1.0)).sum(1)))
        d_own = torch.zeros_like(own)  # [N, S]: d/dp_{i, y_i}
        d_own[:, dom] = (torch.where(own[:, dom] >= CLIP, sums_i[0] / oq[:, dom], zero).neg_()
                         + torch.where(1 - own[:, dom] >= CLIP, sums_i[1] / oqb[:, dom], zero))
        # KL_b = h(p_{j,b}) - oq_j log qb - oqb_j log qbb, with qb, qbb from p_{i,b}:
        #   d/dp_{j,b} = [p_{j,b} >= clip] (log oq_j + 1 - log qb) - [1 - p_{j,b} >= clip] (log oqb_j + 1 - log qbb)
        #   d/dp_{i,b} = fb (from the forward pass)
        moved = g.to_neighbours(torch.stack((d_b, d_b * lqb, d_b * lqbb)).view(3 * n, num_p, length))
        moved = moved.sum(1).view(3, n, -1)  # [3, N, S]: sums over the pairs whose neighbour is j
        d_own += torch.where(own >= CLIP, (olq + 1) * moved[0] - moved[1], zero)
        d_own -= torch.where(1 - own >= CLIP, (olqb + 1) * moved[0] - moved[2], zero)
        d_ib = fb * d_b
        g_pad.scatter_add_(1, y_safe[:, None], d_own[:, None])
        g_pad[..., dom].scatter_add_(1, y_j, d_ib)
        for o in range(num_p):
            g.shifted(g_pad, o).scatter_add_(1, y_i[:, None], d_ja[:, o:o + 1])
        return g.unpad(g_pad), None, None, None, None, None


AUTO_CPU_BACKEND = "cpp"  # what "auto" tries first for CPU tensors (the tests switch it to run both)


def resolve_backend(name: str, backend: str, p: Tensor) -> str:
    """The backend that computes the pair sums of ``p`` (the probabilities).

    ``"torch"``: :class:`_PairKL`, dense torch ops on any device.  ``"cpp"``: the fused C++
    kernel (:mod:`aafcore.kernels.cpu`; CPU tensors, float32/float64), compiled on first use.
    ``"auto"``: ``"cpp"`` for CPU tensors when the kernel builds here (else ``"torch"``, with a
    warning that says why), ``"torch"`` on any other device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{name}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and (p.device.type != "cpu" or AUTO_CPU_BACKEND == "torch")):
        return "torch"
    if p.device.type != "cpu":
        raise ValueError(f"{name}: backend 'cpp' runs on CPU tensors, got {p.device}")
    error = cpu_kernel.build_error()
    if error is None:
        return "cpp"
    if backend == "cpp":
        raise RuntimeError(f"{name}: backend 'cpp' is not available: {error}")
    _warn_once(f"aafcore: the fused CPU kernel of the AAF loss is not available ({error}); using the slower "
               f"torch backend")
    return "torch"


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def pair_kl_sums(logits, labels, half_sizes, margin, by_channel, ignore_index, backend: str = "auto"):
    """Softmax then the pair sums of :class:`_PairKL` on ``backend`` (:func:`resolve_backend`),
    in float32 at least and with autocast off."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        p = logits.softmax(1)
        if resolve_backend("pair_kl_sums", backend, p) == "cpp":
            grid = _flat(*p.shape[-2:], tuple(half_sizes), p.device)
            return cpu_kernel.PairKLCpp.apply(p, labels, grid, float(margin), by_channel, ignore_index)
        return _PairKL.apply(p, labels, tuple(half_sizes), float(margin), by_channel, ignore_index)


def safe_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, and 0 (never NaN) for an empty set."""
    return total / count.clamp_min(1).to(total.dtype)
