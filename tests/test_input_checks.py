"""Bad input gets a one-line error that names the bad value."""

import pytest
import torch

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss, PixelEmbeddingLoss


def _one_line(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


@pytest.fixture(params=["affinity", "aaf"])
def loss(request):
    return AffinityFieldLoss(5) if request.param == "affinity" else AdaptiveAffinityFieldLoss(5)


def test_shape_mismatch(loss):
    with pytest.raises(ValueError) as e:
        loss(torch.randn(2, 5, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long))
    _one_line(e, "shape", "(2, 8, 9)")
    with pytest.raises(ValueError) as e:
        loss(torch.randn(2, 5, 8, 8), torch.zeros(3, 8, 8, dtype=torch.long))
    _one_line(e, "(3, 8, 8)")
    with pytest.raises(ValueError) as e:
        loss(torch.randn(5, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    _one_line(e, "[N, C, H, W]")


def test_wrong_number_of_channels(loss):
    with pytest.raises(ValueError) as e:
        loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    _one_line(e, "4 channels", "num_classes=5")


@pytest.mark.parametrize("bad", [5, 7, -1, 254])
def test_labels_out_of_range(loss, bad):
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 3, 4] = bad
    labels[0, 0, 0] = 255  # the ignore index itself is fine
    with pytest.raises(ValueError) as e:
        loss(torch.randn(1, 5, 8, 8), labels)
    _one_line(e, f"label value {bad}", "[0, 5)")


def test_non_floating_logits(loss):
    with pytest.raises(TypeError) as e:
        loss(torch.zeros(1, 5, 8, 8, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long))
    _one_line(e, "floating-point", "torch.int64")


def test_floating_labels(loss):
    with pytest.raises(TypeError) as e:
        loss(torch.randn(1, 5, 8, 8), torch.zeros(1, 8, 8))
    _one_line(e, "integer", "torch.float32")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits(loss, value):
    logits = torch.randn(1, 5, 8, 8)
    logits[0, 2, 3, 3] = value
    with pytest.raises(ValueError) as e:
        loss(logits, torch.zeros(1, 8, 8, dtype=torch.long))
    _one_line(e, "NaN or inf")


@pytest.mark.parametrize("kwargs, words", [
    ({"kernel_sizes": (3, 4)}, ["kernel_sizes", "(3, 4)"]),
    ({"kernel_sizes": (1, 3)}, ["kernel_sizes"]),
    ({"kernel_sizes": (3, 3)}, ["distinct"]),
    ({"kernel_sizes": ()}, ["kernel_sizes"]),
    ({"weight_by": "pixel"}, ["weight_by", "'pixel'"]),
])
def test_bad_constructor_arguments(kwargs, words):
    with pytest.raises(ValueError) as e:
        AdaptiveAffinityFieldLoss(5, **kwargs)
    _one_line(e, *words)


def test_bad_num_classes_and_embedding_shapes():
    with pytest.raises(ValueError) as e:
        AffinityFieldLoss(1)
    _one_line(e, "num_classes")
    with pytest.raises(ValueError) as e:
        PixelEmbeddingLoss()(torch.randn(2, 8, 4, 4), torch.zeros(3, 32, 32, dtype=torch.long))
    _one_line(e, "features", "(3, 32, 32)")
