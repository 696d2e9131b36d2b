"""Structure losses of *Adaptive Affinity Fields for Semantic Segmentation* (ECCV 2018).

* :class:`AffinityFieldLoss` / :func:`affinity_field_loss` -- Eq. 3, one 3x3 field.
* :class:`AdaptiveAffinityFieldLoss` / :func:`adaptive_affinity_field_loss` -- Eq. 6/7, several
  field sizes with adversarial weights.
* :class:`PixelEmbeddingLoss`         -- Eq. 9, the contrastive "Emb." baseline.
* :class:`PatchDiscriminator` and the two GAN losses -- Eq. 8, the "GAN" baseline.

Like kornia's losses, each loss is an ``nn.Module`` (it holds the hyper-parameters and, for AAF,
the learned weight logits) with a functional form beside it that takes everything as arguments.

Pairs and masks follow the authors' TensorFlow code (DESIGN.md section 5).  For a field of size
``k = 2s+1`` a centre pixel ``i`` is paired with the 8 *corner* pixels ``j = i + o`` of its
k x k window, ``o in {-s, 0, s}^2 minus (0, 0)``.  The pair ``(i, o)`` counts only when ``i - o``
and ``i + o`` are both inside the image and none of ``y_i, y_{i+o}, y_{i-o}`` is ignored.  The
KL sums come from :mod:`aafcore.pairs` (shifted slices and a hand-written backward pass;
``tests/naive_aaf.py`` keeps the naive form as the oracle).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aafcore.pairs import (BACKENDS, VALIDATE_MODES, check_inputs, corner_offsets, downsample_labels, pair_kl_sums,
                           pair_tables, safe_mean)

__all__ = [
    "AffinityFieldLoss",
    "AdaptiveAffinityFieldLoss",
    "affinity_field_loss",
    "adaptive_affinity_field_loss",
    "PixelEmbeddingLoss",
    "PatchDiscriminator",
    "discriminator_loss",
    "segmenter_adversarial_loss",
    "gan_label_maps",
    "corner_offsets",
    "downsample_labels",
]

# --------------------------------------------------------------------------- affinity fields


def _affinity(logits: Tensor, labels: Tensor, margin: float, lambda_edge: float, lambda_not_edge: float,
              ignore_index: int, backend: str) -> Tensor:
    edge, non_edge, n_e, n_n = pair_kl_sums(logits, labels, (1,), margin, False, ignore_index, backend)
    return lambda_edge * safe_mean(edge[0].sum(), n_e[0]) + lambda_not_edge * safe_mean(non_edge[0].sum(), n_n[0])


def _adaptive(logits: Tensor, labels: Tensor, edge_logits: Tensor, not_edge_logits: Tensor,
              kernel_sizes: tuple[int, ...], margin: float, lambda_edge: float, lambda_not_edge: float,
              ignore_index: int, weight_by: str, backend: str) -> Tensor:
    half = tuple((k - 1) // 2 for k in kernel_sizes)
    edge, non_edge, n_e, n_n = pair_kl_sums(logits, labels, half, margin, weight_by == "channel", ignore_index,
                                            backend)
    w_e = edge_logits.softmax(1).t().to(edge.dtype)   # [K, C]
    w_n = not_edge_logits.softmax(1).t().to(edge.dtype)
    return (lambda_edge * safe_mean((w_e * edge).sum(1), n_e)
            + lambda_not_edge * safe_mean((w_n * non_edge).sum(1), n_n)).sum()


def _check_sizes(name: str, kernel_sizes: Sequence[int], weight_by: str) -> tuple[int, ...]:
    if isinstance(kernel_sizes, (str, bytes)) or not all(_is_int(k) for k in kernel_sizes):
        raise ValueError(f"{name}: kernel_sizes must be a sequence of odd integers >= 3, got {kernel_sizes!r}")
    sizes = tuple(int(k) for k in kernel_sizes)
    if not sizes or any(k < 3 or k % 2 == 0 for k in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"{name}: kernel_sizes must be distinct odd integers >= 3, got {tuple(kernel_sizes)}")
    if weight_by not in ("label", "channel"):
        raise ValueError(f"{name}: weight_by must be 'label' or 'channel', got {weight_by!r}")
    return sizes


def _channels(logits) -> int | None:
    return logits.shape[1] if isinstance(logits, Tensor) and logits.dim() == 4 else None


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_options(name: str, num_classes, ignore_index, **reals) -> None:
    """One-line ``ValueError`` for a non-integer ``num_classes`` (when given), an ``ignore_index``
    that is a class id in ``[0, num_classes)``, and non-finite or negative ``reals`` (margin, λ)."""
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 2):
        raise ValueError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not _is_int(ignore_index):
        raise ValueError(f"{name}: ignore_index must be an integer, got {ignore_index!r}")
    if num_classes is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"{name}: ignore_index {ignore_index} is a class id in [0, {num_classes}); "
                         f"use a value outside the classes, such as 255")
    for key, value in reals.items():
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: {key} must be a finite number >= 0, got {value!r}")


def _empty_batch(logits: Tensor, *weights: Tensor) -> Tensor | None:
    """0 (connected to the graph, so every gradient is 0) for an empty batch ``N = 0``, else None."""
    if logits.shape[0]:
        return None
    return sum((w.sum() for w in weights), logits.sum()) * 0.0


def affinity_field_loss(logits: Tensor, labels: Tensor, margin: float = 3.0, lambda_edge: float = 1.0,
                        lambda_not_edge: float = 1.0, ignore_index: int = 255, validate: str = "auto",
                        backend: str = "auto") -> Tensor:
    r"""The affinity field loss (Eq. 3) as a function; see :class:`AffinityFieldLoss` for the equation.

    ``logits`` float ``[N, C, H, W]``; ``labels`` integer ``[N, H, W]`` (values in ``[0, C)`` or
    ``ignore_index``) at the logits' resolution.  Returns a scalar.  ``validate``: how the input
    values are checked (:func:`aafcore.pairs.check_inputs`); ``backend``: what computes the pair
    sums (:func:`aafcore.pairs.resolve_backend`).

    Example:
        >>> import torch
        >>> from aafcore.losses import affinity_field_loss
        >>> labels = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> labels[..., 4:] = 1                                  # two halves: one vertical boundary
        >>> round(affinity_field_loss(torch.zeros(1, 2, 8, 8), labels).item(), 4)  # uniform: margin 3 missed
        3.0
        >>> sharp = 20 * torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
        >>> affinity_field_loss(sharp, labels).item() < 1e-4     # perfect: no edge or non-edge cost
        True
    """
    name = "affinity_field_loss"
    _check_options(name, None, ignore_index, margin=margin, lambda_edge=lambda_edge, lambda_not_edge=lambda_not_edge)
    labels = check_inputs(name, logits, labels, _channels(logits), ignore_index, validate)
    _check_options(name, logits.shape[1], ignore_index)
    empty = _empty_batch(logits)
    return empty if empty is not None else _affinity(logits, labels, margin, lambda_edge, lambda_not_edge,
                                                     ignore_index, backend)


def adaptive_affinity_field_loss(logits: Tensor, labels: Tensor, edge_logits: Tensor, not_edge_logits: Tensor,
                                 kernel_sizes: Sequence[int] = (3, 5, 7), margin: float = 3.0,
                                 lambda_edge: float = 1.0, lambda_not_edge: float = 1.0, ignore_index: int = 255,
                                 weight_by: str = "label", validate: str = "auto", backend: str = "auto") -> Tensor:
    r"""The AAF loss (Eq. 6-7) as a function; see :class:`AdaptiveAffinityFieldLoss` for the equation.

    ``logits`` float ``[N, C, H, W]``; ``labels`` integer ``[N, H, W]``; ``edge_logits`` and
    ``not_edge_logits`` ``[C, K]`` with ``K = len(kernel_sizes)`` (the weights are their softmax
    over sizes).  Returns a scalar, differentiable in the logits and in both weight tensors.
    ``validate``: how the input values are checked (:func:`aafcore.pairs.check_inputs`);
    ``backend``: what computes the pair sums (:func:`aafcore.pairs.resolve_backend`).

    Example:
        >>> import torch
        >>> from aafcore.losses import adaptive_affinity_field_loss
        >>> labels = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> labels[..., 4:] = 1
        >>> w = torch.zeros(2, 2, requires_grad=True)            # [C, K]: uniform weights over sizes 3, 5
        >>> loss = adaptive_affinity_field_loss(torch.zeros(1, 2, 8, 8), labels, w, torch.zeros(2, 2), (3, 5))
        >>> round(loss.item(), 4)                                # each size: 0.5 x margin 3
        3.0
        >>> loss.backward()
        >>> w.grad.shape
        torch.Size([2, 2])
    """
    name = "adaptive_affinity_field_loss"
    sizes = _check_sizes(name, kernel_sizes, weight_by)
    _check_options(name, None, ignore_index, margin=margin, lambda_edge=lambda_edge, lambda_not_edge=lambda_not_edge)
    labels = check_inputs(name, logits, labels, _channels(logits), ignore_index, validate)
    _check_options(name, logits.shape[1], ignore_index)
    for what, w in (("edge_logits", edge_logits), ("not_edge_logits", not_edge_logits)):
        if not isinstance(w, Tensor) or tuple(w.shape) != (logits.shape[1], len(sizes)):
            raise ValueError(f"{name}: {what} must be a tensor [C, K] = {[logits.shape[1], len(sizes)]}, got "
                             f"{list(getattr(w, 'shape', []))}")
    empty = _empty_batch(logits, edge_logits, not_edge_logits)
    return empty if empty is not None else _adaptive(logits, labels, edge_logits, not_edge_logits, sizes, margin,
                                                     lambda_edge, lambda_not_edge, ignore_index, weight_by, backend)


class AffinityFieldLoss(nn.Module):
    r"""Affinity field loss (Eq. 3), the 3x3 field of the paper's "Affinity" rows.

    For every valid centre/corner pair ``(i, j = i + o)`` of the 3x3 window and every class c,

    .. math::
        L^{ic} = \begin{cases} KL(\hat y_j(c) \| \hat y_i(c)) & [y_i = c] = [y_j = c] \ \text{(non-edge)} \\
                 \max\{0,\ m - KL(\hat y_j(c) \| \hat y_i(c))\} & \text{otherwise (edge)} \end{cases}

    with the Bernoulli ``KL(p||q) = p log(p/q) + (1-p) log((1-p)/(1-q))`` on probabilities
    clipped to ``[1e-4, 1]``.  The loss is ``lambda_edge * mean(edge terms) + lambda_not_edge *
    mean(non-edge terms)``, each mean over its valid entries ``(n, i, c, o)``; an empty set gives 0,
    and so does an empty batch (``N = 0``), with zero gradients.

    Args:
        num_classes: C.
        margin: m, the edge margin on the KL divergence (paper: 3).
        lambda_edge, lambda_not_edge: weights of the two means (paper: 1, 1).
        ignore_index: label value that is skipped together with every pair it touches.
        validate: how the input values (finite logits, labels in range) are checked:
            ``"auto"`` (default: on the host with a one-line error on the CPU, with asynchronous
            device-side assertions elsewhere, so a training step never waits for the GPU),
            ``"sync"``, ``"async"`` or ``"off"`` (:func:`aafcore.pairs.check_inputs`).
        backend: what computes the pair sums: ``"auto"`` (default: the fused C++ kernel on CPU
            tensors when it builds here, dense torch ops on a GPU), ``"cpp"`` or ``"torch"``
            (:func:`aafcore.pairs.resolve_backend`).  All give the same values and gradients.

    Shapes: ``logits`` float ``[N, C, H, W]``; ``labels`` integer ``[N, H, W]`` with values in
    ``[0, C)`` or ``ignore_index``, already at the logits' resolution.  Returns a scalar.

    Example:
        >>> import torch
        >>> from aafcore.losses import AffinityFieldLoss
        >>> criterion = AffinityFieldLoss(num_classes=3)
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)   # a network's output [N, C, h, w]
        >>> labels = torch.randint(0, 3, (2, 16, 16))                # labels at the logits' size
        >>> loss = criterion(logits, labels)
        >>> loss.backward()
        >>> loss.shape, logits.grad.shape
        (torch.Size([]), torch.Size([2, 3, 16, 16]))
    """

    def __init__(self, num_classes: int, margin: float = 3.0, lambda_edge: float = 1.0,
                 lambda_not_edge: float = 1.0, ignore_index: int = 255, validate: str = "auto",
                 backend: str = "auto"):
        super().__init__()
        _check_options(type(self).__name__, num_classes, ignore_index, margin=margin, lambda_edge=lambda_edge,
                       lambda_not_edge=lambda_not_edge)
        if validate not in VALIDATE_MODES:
            raise ValueError(f"{type(self).__name__}: validate must be one of {VALIDATE_MODES}, got {validate!r}")
        if backend not in BACKENDS:
            raise ValueError(f"{type(self).__name__}: backend must be one of {BACKENDS}, got {backend!r}")
        self.validate = validate
        self.backend = backend
        self.num_classes = num_classes
        self.margin = margin
        self.lambda_edge = lambda_edge
        self.lambda_not_edge = lambda_not_edge
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        labels = check_inputs("AffinityFieldLoss", logits, labels, self.num_classes, self.ignore_index,
                              self.validate)
        empty = _empty_batch(logits)
        return empty if empty is not None else _affinity(logits, labels, self.margin, self.lambda_edge,
                                                         self.lambda_not_edge, self.ignore_index, self.backend)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, margin={self.margin}, lambda_edge={self.lambda_edge}, "
                f"lambda_not_edge={self.lambda_not_edge}, ignore_index={self.ignore_index}")


class AdaptiveAffinityFieldLoss(AffinityFieldLoss):
    r"""Adaptive affinity field (AAF) loss (Eq. 6-7): affinity fields of several sizes whose
    per-class weights are learned adversarially.

    For each size ``k`` in ``kernel_sizes`` the 8 corner pairs of the k x k window (a dilated
    3x3) give edge and non-edge terms as in :class:`AffinityFieldLoss`.  Every term is weighted by

    .. math::
        w^{e}_{c k} = \mathrm{softmax}_k(\text{edge\_logits})[c, k], \qquad
        w^{n}_{c k} = \mathrm{softmax}_k(\text{not\_edge\_logits})[c, k]

    with c the **centre pixel's label** (``weight_by="label"``, the authors' code and the default)
    or the **class channel** of the term (``weight_by="channel"``, Eq. 7 read literally), and

    .. math::
        L_{AAF} = \sum_k \lambda_e \,\mathrm{mean}_k(w^e \cdot \text{edge}) +
                  \lambda_n \,\mathrm{mean}_k(w^n \cdot \text{non-edge}),

    each mean over the valid entries of size k.  ``edge_logits`` and ``not_edge_logits`` are
    ``nn.Parameter [C, K]``, zero-initialised (uniform weights).  They are to be *maximised*
    (gradient ascent, e.g. ``torch.optim.SGD(..., maximize=True)``) while the network minimises.

    ``margin``, the λs, ``ignore_index``, ``validate`` and ``backend`` are those of
    :class:`AffinityFieldLoss`.

    Shapes: ``logits`` float ``[N, C, H, W]``; ``labels`` integer ``[N, H, W]``.  Returns a scalar.

    Example:
        >>> import torch
        >>> from aafcore.losses import AdaptiveAffinityFieldLoss
        >>> aaf = AdaptiveAffinityFieldLoss(num_classes=3, kernel_sizes=(3, 5, 7))
        >>> ascent = torch.optim.SGD(aaf.parameters(), lr=0.1, maximize=True)   # the adversary's side
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> labels = torch.randint(0, 3, (2, 16, 16))
        >>> aaf(logits, labels).backward()      # gradients for the network and for the weight logits
        >>> ascent.step()
        >>> aaf.edge_logits.shape, aaf.effective_kernel_size().shape   # [C, K] and Fig. 4's [C]
        (torch.Size([3, 3]), torch.Size([3]))
    """

    def __init__(self, num_classes: int, kernel_sizes: Sequence[int] = (3, 5, 7), margin: float = 3.0,
                 lambda_edge: float = 1.0, lambda_not_edge: float = 1.0, ignore_index: int = 255,
                 weight_by: str = "label", validate: str = "auto", backend: str = "auto"):
        super().__init__(num_classes, margin, lambda_edge, lambda_not_edge, ignore_index, validate, backend)
        sizes = _check_sizes("AdaptiveAffinityFieldLoss", kernel_sizes, weight_by)
        self.kernel_sizes = sizes
        self.weight_by = weight_by
        self.edge_logits = nn.Parameter(torch.zeros(num_classes, len(sizes)))
        self.not_edge_logits = nn.Parameter(torch.zeros(num_classes, len(sizes)))

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(w_edge, w_not_edge)``, each ``[C, K]`` with rows summing to 1."""
        return self.edge_logits.softmax(1), self.not_edge_logits.softmax(1)

    def effective_kernel_size(self, term: str = "edge") -> Tensor:
        """``[C]``: ``sum_k softmax(logits)[c, k] * k`` for the ``"edge"`` (Fig. 4) or ``"not_edge"`` term."""
        if term not in ("edge", "not_edge"):
            raise ValueError(f"effective_kernel_size: term must be 'edge' or 'not_edge', got {term!r}")
        logits = self.edge_logits if term == "edge" else self.not_edge_logits
        sizes = torch.tensor(self.kernel_sizes, dtype=logits.dtype, device=logits.device)
        return logits.detach().softmax(1) @ sizes

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        labels = check_inputs("AdaptiveAffinityFieldLoss", logits, labels, self.num_classes, self.ignore_index,
                              self.validate)
        empty = _empty_batch(logits, self.edge_logits, self.not_edge_logits)
        if empty is not None:
            return empty
        return _adaptive(logits, labels, self.edge_logits, self.not_edge_logits, self.kernel_sizes, self.margin,
                         self.lambda_edge, self.lambda_not_edge, self.ignore_index, self.weight_by, self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kernel_sizes={self.kernel_sizes}, weight_by={self.weight_by!r}"


# --------------------------------------------------------------------------- baselines


class PixelEmbeddingLoss(nn.Module):
    r"""Contrastive pixel-embedding loss (Eq. 9), the paper's "Emb." baseline.

    Features are L2-normalised over channels, ``f_i = F_i / ||F_i||``.  For the same valid
    centre/corner pairs as the affinity field of size ``kernel_size``,

    .. math::
        L^i = \begin{cases} \|f_j - f_i\|_2^2 & y_i = y_j \\
                            \max\{0,\ m - \|f_j - f_i\|_2\} & \text{otherwise} \end{cases}

    and the loss is ``lambda_edge * mean(edge) + lambda_not_edge * mean(non-edge)``; an empty set
    gives 0.  ``||.||_2`` is ``sqrt(max(d^2, 1e-12))`` so that identical features stay differentiable.

    Shapes: ``features`` float ``[N, D, h, w]`` (the layer before the classifier); ``labels``
    integer ``[N, H, W]``, nearest-downsampled to ``(h, w)`` (:func:`downsample_labels`).
    """

    def __init__(self, margin: float = 0.2, kernel_size: int = 3, lambda_edge: float = 1.0,
                 lambda_not_edge: float = 1.0, ignore_index: int = 255):
        super().__init__()
        if not _is_int(kernel_size) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"PixelEmbeddingLoss: kernel_size must be an odd integer >= 3, got {kernel_size!r}")
        _check_options("PixelEmbeddingLoss", None, ignore_index, margin=margin, lambda_edge=lambda_edge,
                       lambda_not_edge=lambda_not_edge)
        self.margin = margin
        self.kernel_size = kernel_size
        self.lambda_edge = lambda_edge
        self.lambda_not_edge = lambda_not_edge
        self.ignore_index = ignore_index

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if not (isinstance(features, Tensor) and isinstance(labels, Tensor) and features.dim() == 4
                and labels.dim() == 3 and labels.shape[0] == features.shape[0]):
            raise ValueError("PixelEmbeddingLoss: expects features [N, D, h, w] and labels [N, H, W], got "
                             f"{tuple(getattr(features, 'shape', ()))} and {tuple(getattr(labels, 'shape', ()))}")
        if not labels.is_floating_point():
            labels = downsample_labels(labels, tuple(features.shape[-2:]))
        labels = check_inputs("PixelEmbeddingLoss", features, labels, None, self.ignore_index)
        f = F.normalize(features.float() if features.dtype in (torch.float16, torch.bfloat16)
                        else features, dim=1)
        geo, y_j, pair_valid = pair_tables(labels, labels != self.ignore_index, ((self.kernel_size - 1) // 2,))
        edge_sum = f.new_zeros(())
        non_edge_sum = f.new_zeros(())
        n_edge = n_valid = 0
        for o, ci, cj in geo.slices:
            d2 = (f[..., cj[0], cj[1]] - f[..., ci[0], ci[1]]).square().sum(1)
            mask = pair_valid[:, o, ci[0], ci[1]]
            same = labels[:, ci[0], ci[1]] == y_j[:, o, ci[0], ci[1]]
            emask = mask & ~same
            hinge = (self.margin - d2.clamp_min(1e-12).sqrt()).clamp_min(0)
            edge_sum = edge_sum + (hinge * emask).sum()
            non_edge_sum = non_edge_sum + (d2 * (mask & same)).sum()
            n_edge = n_edge + emask.sum()
            n_valid = n_valid + mask.sum()
        n_edge = torch.as_tensor(n_edge, device=f.device)
        n_non_edge = torch.as_tensor(n_valid, device=f.device) - n_edge
        return (self.lambda_edge * safe_mean(edge_sum, n_edge)
                + self.lambda_not_edge * safe_mean(non_edge_sum, n_non_edge))


# --------------------------------------------------------------------------- GAN baseline


class PatchDiscriminator(nn.Module):
    r"""Patch discriminator D of the GAN baseline (Eq. 8), over label maps.

    Input: a label map ``[N, C, h, w]`` -- the one-hot ground truth (real) or the softmax
    prediction (fake) -- optionally concatenated with the image resized to ``(h, w)``
    (``image_channels > 0``).  ``depth`` stride-2 4x4 convolutions with LeakyReLU(0.2) (batch norm
    after the first), then a 3x3 convolution to one logit per patch: ``[N, 1, h', w']``.
    ``D = sigmoid(logit)`` is the probability that the patch's label map is ground truth.
    """

    def __init__(self, num_classes: int, image_channels: int = 0, width: int = 64, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"PatchDiscriminator: depth must be >= 1, got {depth}")
        self.num_classes = num_classes
        self.image_channels = image_channels
        layers: list[nn.Module] = []
        cin = num_classes + image_channels
        for d in range(depth):
            cout = width * 2 ** min(d, 3)
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=d == 0)]
            if d > 0:
                layers += [nn.BatchNorm2d(cout)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers += [nn.Conv2d(cin, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, label_map: Tensor, image: Tensor | None = None) -> Tensor:
        if label_map.dim() != 4 or label_map.shape[1] != self.num_classes:
            raise ValueError(f"PatchDiscriminator: label_map must be [N, {self.num_classes}, h, w], "
                             f"got {tuple(label_map.shape)}")
        if self.image_channels:
            if image is None or image.dim() != 4 or image.shape[1] != self.image_channels:
                raise ValueError(f"PatchDiscriminator: expects an image [N, {self.image_channels}, H, W]")
            image = F.interpolate(image, size=label_map.shape[-2:], mode="bilinear", align_corners=False)
            label_map = torch.cat((label_map, image.to(label_map.dtype)), 1)
        elif image is not None:
            raise ValueError("PatchDiscriminator: built with image_channels=0 but given an image")
        return self.net(label_map)


def gan_label_maps(logits: Tensor, labels: Tensor, num_classes: int, ignore_index: int = 255):
    """``(real, fake)`` discriminator inputs at the logits' resolution, each ``[N, C, h, w]``.

    ``real`` is the one-hot ground truth, ``fake`` the softmax of ``logits``; both are zero at
    ignored pixels, so the discriminator cannot tell them apart there.
    """
    labels = check_inputs("gan_label_maps", logits, labels, num_classes, ignore_index)
    valid = (labels != ignore_index)[:, None]
    real = F.one_hot(torch.where(valid[:, 0], labels, 0), num_classes).permute(0, 3, 1, 2)
    real = real.to(logits.dtype) * valid
    fake = logits.softmax(1) * valid
    return real, fake


def discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    r"""Discriminator side of Eq. 8: minimise ``-[log D(y) + log(1 - D(\hat y))]``, averaged over patches.

    ``d_real``/``d_fake`` are patch logits; pass ``d_fake`` computed on a detached prediction.
    """
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def segmenter_adversarial_loss(d_fake: Tensor, non_saturating: bool = False) -> Tensor:
    r"""Segmenter side of Eq. 8: ``mean log(1 - D(\hat y))`` (to be minimised), as the paper writes it.

    ``non_saturating=True`` gives the usual ``-mean log D(\hat y)`` variant instead (same fixed
    point, stronger gradients early in training).
    """
    if non_saturating:
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    return -F.softplus(d_fake).mean()  # log(1 - sigmoid(z)) = -softplus(z)
