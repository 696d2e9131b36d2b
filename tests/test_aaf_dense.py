"""The dense pair sums (aafcore.pairs._PairKL): label-independent work, no host sync on the hot
path, the validate switch, and the flat-grid helpers they rest on."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss, adaptive_affinity_field_loss
from aafcore.pairs import _flat
from cases import random_case, random_labels, randomise_weights, rel_err
from naive_aaf import naive_aaf

# aten ops that read a device value back to the host (item / bool / int of a tensor), or whose
# output shape depends on the data
HOST_SYNC_OPS = {"_local_scalar_dense", "is_nonzero", "item", "nonzero", "nonzero_static", "masked_select",
                 "unique", "_unique", "_unique2", "unique_consecutive", "unique_dim", "bincount", "argwhere",
                 "repeat_interleave.Tensor", "equal", "allclose"}


class _Recorder(TorchDispatchMode):
    """Records ``(op name, output shapes)`` of every aten op that runs."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        shapes = tuple(tuple(t.shape) for t in (out if isinstance(out, (tuple, list)) else [out])
                       if isinstance(t, torch.Tensor))
        self.ops.append((func.overloadpacket.__name__, str(func), shapes))
        return out


def _record(loss, logits, labels):
    logits = logits.detach().clone().requires_grad_()
    with _Recorder() as rec:
        loss(logits, labels).backward()
    return rec.ops


def _synced(ops):
    return sorted({name for name, full, _ in ops
                   if name in HOST_SYNC_OPS or full.split(".")[-1] in HOST_SYNC_OPS or full in HOST_SYNC_OPS})


@pytest.mark.parametrize("validate", ["async", "off"])
@pytest.mark.parametrize("make", [lambda v: AdaptiveAffinityFieldLoss(5, validate=v, backend="torch"),
                                  lambda v: AdaptiveAffinityFieldLoss(5, weight_by="channel", validate=v, backend="torch"),
                                  lambda v: AffinityFieldLoss(5, validate=v, backend="torch")], ids=["aaf-label", "aaf-channel", "affinity"])
def test_forward_and_backward_never_read_back_from_the_device(make, validate):
    """The hot path (checks, pair sums, means, backward) contains no .item(), bool(), nonzero or
    other data-dependent shape: on a GPU nothing makes the host wait."""
    logits, labels = random_case(2, 5, 12, 11, seed=1, dtype=torch.float32)
    ops = _record(make(validate), logits, labels)
    assert len(ops) > 50  # the recorder did see the computation
    assert _synced(ops) == []
    names = {name for name, _, _ in ops}
    assert ("_assert_async" in names) == (validate == "async")


def test_the_sync_checks_do_read_back():
    """The recorder catches a host read-back: the CPU default ('sync') has two."""
    logits, labels = random_case(1, 5, 8, 8, seed=2, dtype=torch.float32)
    assert _synced(_record(AdaptiveAffinityFieldLoss(5, backend="torch"), logits, labels)) != []


@pytest.mark.parametrize("weight_by", ["label", "channel"])
def test_the_work_does_not_depend_on_the_labels(weight_by):
    """Blocky labels (few edge pairs), i.i.d. noise (nearly all edges) and all-ignored labels run
    the same ops on tensors of the same shapes."""
    n, c, h, w = 2, 6, 14, 13
    logits, blocky = random_case(n, c, h, w, seed=3, dtype=torch.float32)
    noise = torch.randint(0, c, (n, h, w), generator=torch.Generator().manual_seed(0))
    ignored = torch.full((n, h, w), 255)
    loss = AdaptiveAffinityFieldLoss(c, weight_by=weight_by, validate="off", backend="torch")
    _record(loss, logits, blocky)  # the first call builds the cached grid geometry
    traces = [[(full, shapes) for _, full, shapes in _record(loss, logits, lab)] for lab in (blocky, noise, ignored)]
    assert traces[0] == traces[1] == traces[2]


@pytest.mark.parametrize("validate", ["sync", "async"])
def test_bad_values_are_caught_in_both_modes(validate):
    loss = AdaptiveAffinityFieldLoss(4, validate=validate)
    error = ValueError if validate == "sync" else RuntimeError  # async on the CPU: a RuntimeError at once
    logits = torch.randn(1, 4, 8, 8)
    logits[0, 1, 2, 3] = float("nan")
    with pytest.raises(error, match="logits contain NaN or inf"):
        loss(logits, torch.zeros(1, 8, 8, dtype=torch.long))
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 5, 5] = 4
    with pytest.raises(error, match=r"outside \[0, 4\)"):
        loss(torch.randn(1, 4, 8, 8), labels)
    labels[0, 5, 5] = 255  # the ignore index is fine
    assert torch.isfinite(loss(torch.randn(1, 4, 8, 8), labels))


def test_validate_off_skips_value_checks_only():
    loss = AdaptiveAffinityFieldLoss(4, validate="off")
    logits = torch.randn(1, 4, 8, 8)
    logits[0, 0, 0, 0] = float("inf")
    loss(logits, torch.zeros(1, 8, 8, dtype=torch.long))  # no value check
    with pytest.raises(ValueError, match="labels shape"):  # shapes are still checked
        loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 9, dtype=torch.long))


def test_validate_must_be_a_known_mode():
    for make in (lambda: AdaptiveAffinityFieldLoss(4, validate="fast"),
                 lambda: adaptive_affinity_field_loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long),
                                                      torch.zeros(4, 3), torch.zeros(4, 3), validate=True)):
        with pytest.raises(ValueError) as err:
            make()
        assert "\n" not in str(err.value) and "validate must be one of" in str(err.value)


@pytest.mark.usefixtures("pair_backend")
@pytest.mark.parametrize("weight_by", ["label", "channel"])
@pytest.mark.parametrize("labels_kind", ["noise", "one-class", "stripes"])
def test_extreme_label_maps_match_the_oracle(weight_by, labels_kind):
    """All-edge (i.i.d. noise, 1-px stripes) and no-edge label maps, values and gradients."""
    n, c, h, w = 2, 5, 13, 15
    logits, _ = random_case(n, c, h, w, seed=11)
    g = torch.Generator().manual_seed(4)
    labels = {"noise": torch.randint(0, c, (n, h, w), generator=g),
              "one-class": torch.full((n, h, w), 3),
              "stripes": (torch.arange(w) % 2).expand(n, h, w).clone()}[labels_kind]
    labels[0, 4, 4] = 255
    loss = randomise_weights(AdaptiveAffinityFieldLoss(c, weight_by=weight_by).double(), seed=2)
    value = loss(logits, labels)
    grads = torch.autograd.grad(value, [logits, loss.edge_logits, loss.not_edge_logits])
    ref = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits, weight_by=weight_by)
    ref_grads = torch.autograd.grad(ref, [logits, loss.edge_logits, loss.not_edge_logits])
    assert rel_err(value.detach(), ref.detach()) < 1e-9
    for grad, ref_grad in zip(grads, ref_grads):
        assert rel_err(grad, ref_grad) < 1e-9


def test_flat_grid_neighbours_are_the_image_neighbours():
    """at_neighbours reads i + o on the padded grid; to_neighbours is its adjoint per size."""
    h, w = 7, 9
    g = _flat(h, w, (1, 3), torch.device("cpu"))
    image = torch.arange(h * w, dtype=torch.float64).view(1, h, w) + 1
    at = g.at_neighbours(g.pad_map(image, 0.0))  # [1, P, L]
    offsets = [(dy, dx) for s in (1, 3) for dy in (-s, 0, s) for dx in (-s, 0, s) if (dy, dx) != (0, 0)]
    for p, (dy, dx) in enumerate(offsets):
        grid = torch.full((g.size,), -1.0, dtype=torch.float64)
        grid[g.start:g.start + g.length] = at[0, p]
        plane = g.unpad(grid)  # back onto the image
        for r in range(h):
            for col in range(w):
                inside = 0 <= r + dy < h and 0 <= col + dx < w
                assert plane[r, col] == (image[0, r + dy, col + dx] if inside else 0.0)
    x = torch.randn(2, g.size, dtype=torch.float64)
    wts = torch.randn(2, len(offsets), g.length, dtype=torch.float64)
    assert torch.allclose((g.at_neighbours(x) * wts).sum(), (x * g.to_neighbours(wts).sum(1)).sum())
