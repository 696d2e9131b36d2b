"""The loss API rejects bad options in one line and has a rule for empty batches (issue 13, case 8)."""

from __future__ import annotations

import math

import pytest
import torch

from aafcore.losses import (AdaptiveAffinityFieldLoss, AffinityFieldLoss, PixelEmbeddingLoss,
                            adaptive_affinity_field_loss, affinity_field_loss)


def _one_line(err, *words):
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("module", [AffinityFieldLoss, AdaptiveAffinityFieldLoss])
@pytest.mark.parametrize("num_classes", [2.5, "5", True, 1])
def test_num_classes_must_be_an_integer(module, num_classes):
    with pytest.raises(ValueError) as err:
        module(num_classes)
    _one_line(err, "num_classes must be an integer >= 2", repr(num_classes))


@pytest.mark.parametrize("kernel_sizes", [(3, 5.5), "357", (3, 4), (), (3, 3), (True, 5)])
def test_kernel_sizes_must_be_odd_integers(kernel_sizes):
    with pytest.raises(ValueError) as err:
        AdaptiveAffinityFieldLoss(4, kernel_sizes=kernel_sizes)
    _one_line(err, "kernel_sizes must be")
    with pytest.raises(ValueError) as err:
        adaptive_affinity_field_loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long),
                                     torch.zeros(4, 2), torch.zeros(4, 2), kernel_sizes)
    _one_line(err, "kernel_sizes must be")


@pytest.mark.parametrize("option", ["margin", "lambda_edge", "lambda_not_edge"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, "3"])
def test_margin_and_lambdas_must_be_finite(option, value):
    for make in (lambda: AffinityFieldLoss(4, **{option: value}), lambda: AdaptiveAffinityFieldLoss(4, **{option: value}),
                 lambda: PixelEmbeddingLoss(**{option: value}),
                 lambda: affinity_field_loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long),
                                             **{option: value})):
        with pytest.raises(ValueError) as err:
            make()
        _one_line(err, option, "finite")


@pytest.mark.parametrize("ignore_index", [0, 3])
def test_ignore_index_must_not_be_a_class(ignore_index):
    with pytest.raises(ValueError) as err:
        AdaptiveAffinityFieldLoss(4, ignore_index=ignore_index)
    _one_line(err, f"ignore_index {ignore_index} is a class id in [0, 4)")
    with pytest.raises(ValueError) as err:
        affinity_field_loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), ignore_index=ignore_index)
    _one_line(err, f"ignore_index {ignore_index} is a class id in [0, 4)")
    assert AffinityFieldLoss(4, ignore_index=-1).ignore_index == -1   # outside the classes: fine


def test_an_empty_batch_gives_zero_with_zero_gradients():
    logits = torch.randn(0, 4, 8, 8, requires_grad=True)
    labels = torch.zeros(0, 8, 8, dtype=torch.long)
    aaf = AdaptiveAffinityFieldLoss(4)
    for loss in (AffinityFieldLoss(4)(logits, labels), aaf(logits, labels), affinity_field_loss(logits, labels),
                 adaptive_affinity_field_loss(logits, labels, aaf.edge_logits, aaf.not_edge_logits)):
        assert loss.shape == () and loss.item() == 0.0
        loss.backward()
    assert logits.grad.shape == logits.shape and torch.equal(aaf.edge_logits.grad, torch.zeros(4, 3))
