"""The fast affinity / AAF losses against the naive port of the official TensorFlow data flow:
values and gradients (logits, edge weight logits, non-edge weight logits) in float64."""

import pytest
import torch

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss
from cases import random_case, randomise_weights, rel_err
from naive_aaf import naive_aaf, naive_affinity

# every test runs on both CPU backends of the pair sums (torch ops and the fused C++ kernel)
pytestmark = pytest.mark.usefixtures("pair_backend")

SHAPES = [(2, 5, 12, 13), (1, 2, 9, 9), (3, 21, 16, 11), (2, 3, 20, 7), (1, 19, 24, 30), (4, 8, 10, 10)]


def _aaf_grads(loss, logits, labels, impl):
    if impl == "fast":
        value = loss(logits, labels)
    else:
        value = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits, loss.kernel_sizes,
                          loss.margin, loss.lambda_edge, loss.lambda_not_edge, loss.ignore_index,
                          loss.weight_by)
    grads = torch.autograd.grad(value, [logits, loss.edge_logits, loss.not_edge_logits])
    return value.detach(), grads


@pytest.mark.parametrize("weight_by", ["label", "channel"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_aaf_matches_oracle(shape, weight_by):
    n, c, h, w = shape
    logits, labels = random_case(n, c, h, w, seed=sum(shape))
    loss = randomise_weights(AdaptiveAffinityFieldLoss(c, weight_by=weight_by).double(), seed=c)
    value, grads = _aaf_grads(loss, logits, labels, "fast")
    ref_value, ref_grads = _aaf_grads(loss, logits, labels, "naive")
    assert rel_err(value, ref_value) < 1e-6
    for name, g, ref in zip(["logits", "edge_logits", "not_edge_logits"], grads, ref_grads):
        assert ref.abs().max() > 0, name
        assert rel_err(g, ref) < 1e-6, name


@pytest.mark.parametrize("shape", SHAPES[:4], ids=lambda s: "x".join(map(str, s)))
def test_affinity_matches_oracle(shape):
    n, c, h, w = shape
    logits, labels = random_case(n, c, h, w, seed=7 * sum(shape))
    value = AffinityFieldLoss(c)(logits, labels)
    ref = naive_affinity(logits, labels)
    (g,) = torch.autograd.grad(value, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert rel_err(value.detach(), ref.detach()) < 1e-6
    assert rel_err(g, g_ref) < 1e-6


@pytest.mark.parametrize("kernel_sizes", [(3,), (5, 9), (7, 3), (3, 5, 7, 9)])
def test_aaf_other_kernel_sets_and_hyperparameters(kernel_sizes):
    logits, labels = random_case(2, 6, 21, 19, seed=len(kernel_sizes), ignore_index=-1)
    loss = AdaptiveAffinityFieldLoss(6, kernel_sizes=kernel_sizes, margin=1.5, lambda_edge=0.5,
                                     lambda_not_edge=2.0, ignore_index=-1).double()
    randomise_weights(loss, seed=3)
    value, grads = _aaf_grads(loss, logits, labels, "fast")
    ref_value, ref_grads = _aaf_grads(loss, logits, labels, "naive")
    assert rel_err(value, ref_value) < 1e-6
    for g, ref in zip(grads, ref_grads):
        assert rel_err(g, ref) < 1e-6


def test_saturated_probabilities_hit_the_clip_like_the_oracle():
    """Large logits drive p below 1e-4 and above 1 - 1e-4: the clipping path must match too."""
    logits, labels = random_case(2, 4, 14, 14, seed=5, scale=12.0)
    loss = randomise_weights(AdaptiveAffinityFieldLoss(4).double())
    p = logits.detach().softmax(1)
    assert (p < 1e-4).any() and (p > 1 - 1e-4).any()
    value, grads = _aaf_grads(loss, logits, labels, "fast")
    ref_value, ref_grads = _aaf_grads(loss, logits, labels, "naive")
    assert rel_err(value, ref_value) < 1e-6
    for g, ref in zip(grads, ref_grads):
        assert rel_err(g, ref) < 1e-6


def test_affinity_is_aaf_with_one_size_and_unit_weight():
    """With sizes {3} the softmax weight is 1 for every class: AAF reduces to Eq. 3."""
    logits, labels = random_case(2, 5, 15, 15, seed=11)
    a = AffinityFieldLoss(5)(logits, labels)
    b = AdaptiveAffinityFieldLoss(5, kernel_sizes=(3,)).double()(logits, labels)
    assert torch.allclose(a, b, rtol=1e-12, atol=0)
