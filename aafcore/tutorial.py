"""Small, fast building blocks of the interactive tutorial on affinity fields (``notebooks/tutorial.ipynb``).

* :func:`toy_labels` -- a toy label map with a thin bar, a disk and background;
* :func:`pair_masks` -- which corner pairs of a k x k field are *edge* / *non-edge* pairs;
* :func:`pair_loss` -- the affinity loss of one pair and class channel (Eq. 3): KL or hinge;
* :func:`size_terms` -- what AAF's adversary compares: each class's loss term per field size;
* :func:`train_toy` -- one tiny network trained on noisy thin bars and disks with CE, CE +
  affinity or CE + AAF (the AAF size weights maximised by an adversary, their path recorded);
* :func:`thin_structure_experiment` -- the three losses from the same start on the same batches;
* :func:`seed_study` / :func:`summary_rows` -- that experiment over seeds, one row per seed and method.

Every function is deterministic for a given seed *and* a given number of torch threads (the
order of floating-point sums in a convolution depends on the thread count); the tutorial fixes
it with :data:`TUTORIAL_THREADS`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss, corner_offsets
from aafcore.metrics import SegmentationMetrics
from aafcore.pairs import pair_kl_sums, safe_mean

__all__ = ["CLASSES", "METHODS", "TUTORIAL_THREADS", "toy_labels", "pair_masks", "pair_loss", "toy_batch",
           "size_terms", "train_toy", "thin_structure_experiment", "seed_study", "summary_rows"]

CLASSES = ("background", "bar", "disk")
METHODS = ("CE", "CE + affinity", "CE + AAF")
TUTORIAL_THREADS = 1     # torch threads of the tutorial: its numbers are for this count


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


def toy_batch(n: int, size: int, generator: torch.Generator, noise: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """The toy trainings' data: ``n`` images float ``[n, 3, size, size]`` and labels int64 ``[n, size, size]``.

    Each image has a vertical bar 2 px wide (label 1) at a random column and a disk of radius
    ``size // 6`` (label 2, drawn over the bar) at a random centre, on background (0); a pixel's
    colour is its class colour (bar and disk differ by 0.05 in two channels) plus Gaussian noise of
    std ``noise``.  Everything is drawn from ``generator``.
    """
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


def _toy_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                         nn.ReLU(), nn.Conv2d(16, 3, 1))


def size_terms(aaf: AdaptiveAffinityFieldLoss, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """What AAF's adversary compares: per term, ``{"edge", "not_edge"} -> float [C, K]`` with

    ``A_ck = λ · (sum of the term's pair losses at size k over the centres labelled c) /
    (number of the term's entries at size k, all classes)``,

    the coefficient of ``w_ck`` in the AAF loss, ``L_AAF = Σ_ck w^e_ck A^e_ck + Σ_ck w^n_ck A^n_ck``,
    from the loss's own pair sums (:func:`aafcore.pairs.pair_kl_sums`, ``weight_by`` of ``aaf``).
    ``logits`` ``[N, C, H, W]``, ``labels`` ``[N, H, W]``.  The gradient of ``L_AAF`` in the weight
    logit of class c and size k is ``w_ck (A_ck - Σ_j w_cj A_cj)``: ascent moves weight to the
    sizes whose ``A_ck`` is above the class's weighted mean.
    """
    half = tuple((k - 1) // 2 for k in aaf.kernel_sizes)
    with torch.no_grad():
        edge, non_edge, n_e, n_n = pair_kl_sums(logits.detach(), labels, half, aaf.margin,
                                                aaf.weight_by == "channel", aaf.ignore_index)
    return {"edge": aaf.lambda_edge * safe_mean(edge, n_e[:, None]).t().double().numpy(),
            "not_edge": aaf.lambda_not_edge * safe_mean(non_edge, n_n[:, None]).t().double().numpy()}


def _record(aaf: AdaptiveAffinityFieldLoss, path: dict) -> None:
    """Append the weights ``[C, K]`` and effective sizes ``[C]`` of both terms to ``path``."""
    edge, not_edge = aaf.weights()
    path["edge_weights"].append(edge.detach().numpy().copy())
    path["not_edge_weights"].append(not_edge.detach().numpy().copy())
    path["effective_size"].append(aaf.effective_kernel_size("edge").numpy().copy())
    path["effective_size_not_edge"].append(aaf.effective_kernel_size("not_edge").numpy().copy())


def _record_signal(aaf: AdaptiveAffinityFieldLoss, weight: float, path: dict) -> None:
    """After ``backward()``: ``grad / (weight · w) = A_ck - Σ_j w_cj A_cj`` of both terms, ``[C, K]``."""
    w_edge, w_not_edge = aaf.weights()
    path["edge_signal"].append((aaf.edge_logits.grad / (weight * w_edge)).detach().numpy().copy())
    path["not_edge_signal"].append((aaf.not_edge_logits.grad / (weight * w_not_edge)).detach().numpy().copy())


def _test(net: nn.Module, size: int, noise: float, seed: int) -> dict:
    """Test IoU per class and the bar's boundary F (1.5 px) on 16 images drawn from ``seed + 1000``."""
    images, labels = toy_batch(16, size, torch.Generator().manual_seed(seed + 1000), noise)
    with torch.no_grad():
        pred = net(images).argmax(1)
    metrics = SegmentationMetrics(3, boundary_tolerance=1.5 / np.hypot(size, size))
    for p, g in zip(pred, labels):
        metrics.update(p, g)
    r = metrics.compute()
    return {"iou": dict(zip(CLASSES, r["iou"])), "bar_boundary_f": r["boundary_f"][1],
            "prediction": pred[0].numpy(), "image": images[0], "labels": labels[0].numpy()}


def train_toy(method: str = "CE + AAF", steps: int = 150, seed: int = 0, *, size: int = 32, noise: float = 0.25,
              batch: int = 4, weight: float = 1.0, adversary_lr: float = 0.01) -> dict:
    """Train the tutorial's tiny fully convolutional net with one of :data:`METHODS`; test it.

    The net (3 convolutions, 3 classes) is trained for ``steps`` Adam steps (lr 0.01) on batches
    of ``batch`` noisy ``size x size`` images of 2 px bars and disks with close colours, with
    ``loss = CE + weight · aux``, ``aux`` the 3x3 :class:`~aafcore.losses.AffinityFieldLoss` or
    the :class:`~aafcore.losses.AdaptiveAffinityFieldLoss` over sizes (3, 5, 7).  For AAF, as in
    the paper (Eq. 6) and in ``aafcore.objectives.AAFObjective``, the size-weight logits ``[C, K]``
    *ascend* the same loss (``SGD(maximize=True)``, momentum 0.9, ``adversary_lr``: the network's
    rate) while the net descends it; their step comes first.  The initial weights depend only on
    ``seed`` and the batches only on ``seed + 1``, so the methods share both.

    Returns a dict: ``iou`` (class name -> test IoU), ``bar_boundary_f`` (boundary F of the bar,
    1.5 px tolerance), ``prediction`` / ``labels`` int ``[size, size]`` and ``image`` ``[3, size,
    size]`` of the first of 16 test images.  For AAF also ``kernel_sizes`` ``(3, 5, 7)``;
    ``edge_weights`` / ``not_edge_weights`` float ``[steps + 1, C, K]`` (softmax over sizes, row 0
    the uniform start); ``effective_size`` / ``effective_size_not_edge`` ``[steps + 1, C]``
    (``Σ_k w_ck · k``, :meth:`~aafcore.losses.AdaptiveAffinityFieldLoss.effective_kernel_size`);
    ``edge_signal`` / ``not_edge_signal`` ``[steps, C, K]``: at each step the adversary's signal
    ``A_ck - Σ_j w_cj A_cj`` (see :func:`size_terms`) on that step's batch, read off the gradient.
    """
    if method not in METHODS:
        raise ValueError(f"train_toy: method must be one of {METHODS}, got {method!r}")
    if not weight > 0:
        raise ValueError(f"train_toy: weight must be > 0, got {weight!r}")
    torch.manual_seed(seed)
    net = _toy_net()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    aux = {"CE": None, "CE + affinity": AffinityFieldLoss(3),
           "CE + AAF": AdaptiveAffinityFieldLoss(3, kernel_sizes=(3, 5, 7))}[method]
    adversary = None
    path = {key: [] for key in ("edge_weights", "not_edge_weights", "effective_size", "effective_size_not_edge",
                                "edge_signal", "not_edge_signal")}
    if isinstance(aux, AdaptiveAffinityFieldLoss):
        adversary = torch.optim.SGD(aux.parameters(), lr=adversary_lr, momentum=0.9, maximize=True)
        _record(aux, path)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        images, labels = toy_batch(batch, size, gen, noise)
        logits = net(images)
        loss = F.cross_entropy(logits, labels)
        if aux is not None:
            loss = loss + weight * aux(logits, labels)
        opt.zero_grad()
        if adversary is not None:
            adversary.zero_grad()
        loss.backward()
        if adversary is not None:
            _record_signal(aux, weight, path)
            adversary.step()
            _record(aux, path)
        opt.step()
    out = _test(net, size, noise, seed)
    if adversary is not None:
        out.update({key: np.stack(values) for key, values in path.items()}, kernel_sizes=aux.kernel_sizes)
    return out


def thin_structure_experiment(steps: int = 150, seed: int = 0, methods: tuple[str, ...] = METHODS,
                              **options) -> dict:
    """Train the same tiny net with each of ``methods`` (:func:`train_toy`, ``options`` passed on)
    from the same initial weights on the same batches, so that the runs differ only by the loss;
    returns ``{method: result}``.  The outcome is what it is: the tutorial shows it either way.
    """
    return {m: train_toy(m, steps, seed, **options) for m in methods}


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def seed_study(seeds=(0, 1, 2), steps: int = 150, methods: tuple[str, ...] = METHODS, workers: int = 1,
               **options) -> dict:
    """:func:`thin_structure_experiment` for each seed: ``{seed: {method: result}}``.

    ``workers > 1`` runs the (seed, method) trainings in that many fresh processes (``spawn``), each
    with the caller's torch thread count, so the results are the same as with ``workers=1``.
    """
    if unknown := [m for m in methods if m not in METHODS]:
        raise ValueError(f"seed_study: methods must be among {METHODS}, got {unknown[0]!r}")
    jobs = [(m, steps, seed) for seed in seeds for m in methods]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_set_threads, initargs=(torch.get_num_threads(),)) as pool:
            # the slowest trainings (AAF, then affinity) first, so that the two workers end together
            order = sorted(range(len(jobs)), key=lambda i: -METHODS.index(jobs[i][0]))
            futures = {i: pool.submit(train_toy, *jobs[i], **options) for i in order}
            done = [futures[i].result() for i in range(len(jobs))]
    else:
        done = [train_toy(*job, **options) for job in jobs]
    runs = {seed: {} for seed in seeds}
    for (method, _, seed), result in zip(jobs, done):
        runs[seed][method] = result
    return runs


def summary_rows(runs: dict) -> list[dict]:
    """One row per (seed, method) of :func:`seed_study`'s ``runs``: ``seed``, ``method``,
    ``IoU <class>`` per class, ``mIoU`` (their mean) and ``bar boundary F``, fractions in [0, 1]."""
    rows = []
    for seed, results in runs.items():
        for method, r in results.items():
            rows.append({"seed": seed, "method": method, **{f"IoU {c}": v for c, v in r["iou"].items()},
                         "mIoU": float(np.nanmean(list(r["iou"].values()))), "bar boundary F": r["bar_boundary_f"]})
    return rows
