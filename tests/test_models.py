"""aafcore.models: FCN / PSPNet on dilated ResNets at output stride 8."""

import math

import pytest
import torch
import torchvision
from torch import nn

from aafcore.models import BACKBONES, BASES, FCNHead, SegmentationModel, build_model

SMALL = ("narrow", "resnet18")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("backbone", SMALL)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("size", [(65, 47), (33, 16), (8, 9)])
def test_output_stride_8_shapes(base, backbone, size):
    model = build_model(base, backbone, num_classes=5).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits = model(x)
        pair = model(x, with_features=True)
    h, w = math.ceil(size[0] / 8), math.ceil(size[1] / 8)  # the documented formula
    assert logits.shape == (2, 5, h, w)
    assert isinstance(pair, tuple) and len(pair) == 2
    assert torch.equal(pair[0], logits)
    assert pair[1].shape == (2, model.feature_channels, h, w)
    assert (pair[1] >= 0).all()  # after ReLU


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101"])
@pytest.mark.parametrize("base", BASES)
def test_large_backbones_tiny_forward(base, backbone):
    model = build_model(base, backbone, num_classes=3).eval()
    with torch.no_grad():
        logits, features = model(torch.randn(1, 3, 33, 33), with_features=True)
    assert logits.shape == (1, 3, 5, 5)
    assert model.backbone.out_channels == 2048
    assert features.shape == (1, 512, 5, 5) and model.feature_channels == 512  # the paper's 512


@pytest.mark.parametrize("backbone", BACKBONES)
def test_attributes_and_backbone_stride(backbone):
    model = build_model("pspnet", backbone, num_classes=7)
    assert isinstance(model, SegmentationModel)
    assert (model.output_stride, model.num_classes, model.base, model.backbone_name) == (8, 7, "pspnet", backbone)
    assert model.feature_channels == model.head.classifier.in_channels
    assert model.head.classifier.out_channels == 7
    if backbone in SMALL:  # the big ones are covered by the tiny forward above
        with torch.no_grad():
            out = model.backbone.eval()(torch.randn(1, 3, 41, 24))
        assert out.shape == (1, model.backbone.out_channels, 6, 3)


def test_head_structure():
    fcn = build_model("fcn", "resnet18", 4).head
    assert [type(m) for m in fcn.block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert fcn.block[0].kernel_size == (3, 3) and fcn.block[0].bias is None
    assert (fcn.block[0].in_channels, fcn.block[0].out_channels) == (512, 128)
    assert fcn.dropout.p == 0.1 and fcn.classifier.kernel_size == (1, 1)

    psp = build_model("pspnet", "resnet18", 4).head
    assert psp.bins == (1, 2, 3, 6)
    for bins, stage in zip(psp.bins, psp.stages):
        assert stage[0].output_size == bins
        conv = stage[1][0]
        assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (512, 128)
    assert psp.bottleneck[0].in_channels == 1024 and psp.bottleneck[0].kernel_size == (3, 3)
    assert psp.dropout.p == 0.1
    wide = build_model("pspnet", "narrow", 4, head_channels=64)
    assert wide.feature_channels == 64 and wide.head.classifier.in_channels == 64
    assert not any("aux" in name for name, _ in wide.named_modules())  # no auxiliary head


def test_bad_input_shape():
    model = build_model("fcn", "narrow", 2)
    with pytest.raises(ValueError) as error:
        model(torch.randn(3, 16, 16))
    assert "[N, 3, H, W]" in _one_line(error)


# --------------------------------------------------------------------------- dilation


def _convs(layer):
    return [(name, m) for name, m in layer.named_modules() if isinstance(m, nn.Conv2d)]


def test_bottleneck_dilation_matches_torchvision():
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    model = build_model("fcn", "resnet50", 3).backbone
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        ours, theirs = _convs(getattr(model, layer)), _convs(getattr(reference, layer))
        assert [n for n, _ in ours] == [n for n, _ in theirs]
        for (name, a), (_, b) in zip(ours, theirs):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding), f"{layer}.{name}"
    model101 = build_model("fcn", "resnet101", 3).backbone
    assert [b.conv2.dilation[0] for b in model101.layer3] == [1] + [2] * 22
    assert [b.conv2.dilation[0] for b in model101.layer4] == [2, 4, 4]


@pytest.mark.parametrize("backbone", SMALL)
def test_basicblock_dilation_convention(backbone):
    """Same rule as torchvision's dilate=True: first block keeps the previous dilation."""
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    model = build_model("fcn", backbone, 3).backbone
    for layer in ("layer3", "layer4"):
        ref_layer = getattr(reference, layer)
        for index, block in enumerate(getattr(model, layer)):
            expected = ref_layer[min(index, 1)].conv2.dilation
            for conv in (block.conv1, block.conv2):
                assert conv.stride == (1, 1)
                assert conv.dilation == expected and conv.padding == expected, f"{layer}[{index}]"
            if block.downsample is not None:
                assert block.downsample[0].stride == (1, 1)
    # layers 1/2 are untouched: layer2 still halves the resolution
    assert model.layer2[0].conv1.stride == (2, 2)
    assert all(c.dilation == (1, 1) for _, c in _convs(model.layer1) + _convs(model.layer2))


def test_receptive_field_of_dilated_basic_resnet():
    """FCN on a [2,2,2,2] BasicBlock ResNet at OS 8 sees 403 px (undilated OS 8 would see 243).

    Stem 7 -> maxpool 11 (jump 4) -> layer1 +32 = 43 -> layer2 +56 = 99 (jump 8) -> layer3
    (d 1, 2) +96 = 195 -> layer4 (d 2, 4) +192 = 387 -> head 3x3 +16 = 403.
    """
    model = build_model("fcn", "narrow", 3).eval()  # same conversion code as resnet18
    x = torch.randn(1, 3, 448, 448, requires_grad=True)
    logits = model(x)
    logits[0, :, 28, 28].sum().backward()
    seen = x.grad.abs().sum(dim=(0, 1))
    cols = torch.nonzero(seen.sum(0)).squeeze(1)
    rows = torch.nonzero(seen.sum(1)).squeeze(1)
    for index in (cols, rows):
        extent = int(index.max() - index.min() + 1)
        assert 360 <= extent <= 403
        assert int(index.min()) >= 224 - 201 and int(index.max()) <= 224 + 201  # centred on 8 * 28


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("backbone", SMALL)
def test_parameter_groups_partition(base, backbone):
    model = build_model(base, backbone, 4)
    backbone_ids = [id(p) for p in model.backbone_parameters()]
    head_ids = [id(p) for p in model.head_parameters()]
    everything = [id(p) for p in model.parameters()]
    assert backbone_ids and head_ids
    assert not set(backbone_ids) & set(head_ids)
    assert sorted(backbone_ids + head_ids) == sorted(everything)
    assert len(set(everything)) == len(everything)


def test_backward_reaches_all_parameters():
    model = build_model("pspnet", "narrow", 4).train()
    logits, features = model(torch.randn(2, 3, 48, 40), with_features=True)
    (logits.square().mean() + features.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# --------------------------------------------------------------------------- pretrained


def _resnet18_file(tmp_path, mutate=None):
    state = torchvision.models.resnet18(weights=None).state_dict()
    if mutate:
        mutate(state)
    path = tmp_path / "resnet18-test.pth"
    torch.save(state, path)
    return path, state


def test_pretrained_loads_torchvision_state_dict(tmp_path):
    path, state = _resnet18_file(tmp_path)
    model = build_model("pspnet", "resnet18", 4, pretrained=path)
    own = model.backbone.state_dict()
    assert set(own) == {k for k in state if not k.startswith("fc.")}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


def test_pretrained_without_bn_counters(tmp_path):
    """Old torchvision files have no num_batches_tracked entries; they load."""
    path, state = _resnet18_file(
        tmp_path, lambda s: [s.pop(k) for k in [k for k in s if k.endswith("num_batches_tracked")]])
    model = build_model("fcn", "resnet18", 4, pretrained=str(path))
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_pretrained_narrow_same_code_path(tmp_path):
    source = build_model("fcn", "narrow", 3)
    path = tmp_path / "narrow.pth"
    torch.save(source.backbone.state_dict(), path)
    model = build_model("pspnet", "narrow", 5, pretrained=path)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source.backbone.layer4[1].conv2.weight)
    with pytest.raises(ValueError) as error:  # a resnet18 file does not fit the narrow backbone
        build_model("fcn", "narrow", 3, pretrained=_resnet18_file(tmp_path)[0])
    assert "resnet18-test.pth" in _one_line(error) and "conv1.weight" in str(error.value)


def test_pretrained_missing_key(tmp_path):
    path, _ = _resnet18_file(tmp_path, lambda s: s.pop("layer3.1.bn2.running_var"))
    with pytest.raises(ValueError) as error:
        build_model("fcn", "resnet18", 4, pretrained=path)
    message = _one_line(error)
    assert str(path) in message and "layer3.1.bn2.running_var" in message and "missing" in message


def test_pretrained_wrong_shape_and_unexpected_key(tmp_path):
    path, _ = _resnet18_file(tmp_path, lambda s: s.__setitem__("layer2.0.conv1.weight", torch.zeros(128, 64, 1, 1)))
    with pytest.raises(ValueError) as error:
        build_model("fcn", "resnet18", 4, pretrained=path)
    message = _one_line(error)
    assert str(path) in message and "layer2.0.conv1.weight" in message and "shape" in message

    path, _ = _resnet18_file(tmp_path, lambda s: s.__setitem__("layer5.0.conv1.weight", torch.zeros(1)))
    with pytest.raises(ValueError) as error:
        build_model("fcn", "resnet18", 4, pretrained=path)
    assert str(path) in _one_line(error) and "layer5.0.conv1.weight" in str(error.value)


def test_pretrained_missing_or_unreadable_file(tmp_path):
    missing = tmp_path / "nope" / "resnet101-63fe2227.pth"
    with pytest.raises(FileNotFoundError) as error:
        build_model("fcn", "resnet18", 4, pretrained=missing)
    assert str(missing) in _one_line(error)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint\n" * 3)
    with pytest.raises(ValueError) as error:
        build_model("fcn", "resnet18", 4, pretrained=garbage)
    assert str(garbage) in _one_line(error)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("base, backbone, word", [("deeplab", "resnet18", "deeplab"),
                                                  ("fcn", "resnet34", "resnet34"),
                                                  ("PSPNet", "narrow", "PSPNet")])
def test_unknown_choices(base, backbone, word):
    with pytest.raises(ValueError) as error:
        build_model(base, backbone, 4)
    message = _one_line(error)
    assert word in message
    choices = BASES if word != "resnet34" else BACKBONES
    assert all(choice in message for choice in choices)


# --------------------------------------------------------------------------- modes / formats


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("base", BASES)
def test_channels_last_matches_contiguous(base, dtype):
    """Same output for NCHW and channels_last (float64: 1e-5; float32: kernels sum in another
    order, so 1e-5 relative to the logits' scale, which is ~30 for an untrained model in eval)."""
    model = build_model(base, "narrow", 6).eval().to(dtype)
    x = torch.randn(2, 3, 57, 70, dtype=dtype)
    with torch.no_grad():
        ref_logits, ref_features = model(x, with_features=True)
        model_cl = model.to(memory_format=torch.channels_last)
        logits, features = model_cl(x.to(memory_format=torch.channels_last), with_features=True)
    assert model_cl.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for got, ref in ((logits, ref_logits), (features, ref_features)):
        scale = 1.0 if dtype == torch.float64 else float(ref.abs().max())
        torch.testing.assert_close(got, ref, atol=1e-5 * scale, rtol=1e-5)


def test_autocast_runs():
    model = build_model("pspnet", "narrow", 3).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = model(torch.randn(2, 3, 40, 40), with_features=True)
    assert logits.shape == (2, 3, 5, 5) and features.shape[-2:] == (5, 5)
    assert torch.isfinite(logits.float()).all()


def test_eval_deterministic_train_updates_bn():
    model = build_model("pspnet", "narrow", 4)
    x = torch.randn(2, 3, 48, 48)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    model(x)
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert int(model.backbone.bn1.num_batches_tracked) == 1


def test_the_authors_fcn_is_a_bare_1x1_classifier():
    from aafcore.models import LinearHead

    model = build_model("fcn", "narrow", 5, fcn_head="official")
    assert isinstance(model.head, LinearHead)
    assert [name for name, _ in model.head.named_parameters()] == ["classifier.weight", "classifier.bias"]
    assert model.head.classifier.kernel_size == (1, 1)
    x = torch.randn(2, 3, 48, 40)
    logits, features = model(x, with_features=True)
    assert logits.shape == (2, 5, 6, 5) and torch.equal(features, model.backbone(x))
    assert isinstance(build_model("fcn", "narrow", 5).head, FCNHead)       # the v1 default is unchanged
    with pytest.raises(ValueError, match="fcn_head"):
        build_model("fcn", "narrow", 5, fcn_head="fancy")
