"""Segmentation models of the paper: FCN and PSPNet on a dilated ResNet at output stride 8.

``build_model(base, backbone, num_classes, pretrained=None)`` returns a
:class:`SegmentationModel` = ResNet backbone + head.

* Backbones: ``torchvision.models.resnet{18,50,101}(weights=None)`` made dilated at output
  stride 8 (layer3 / layer4: stride 1, dilation 2 / 4), or ``narrow``, a small ResNet for the
  2-core CPU profile.  The dilation follows torchvision's ``replace_stride_with_dilation=
  [False, True, True]`` exactly: in a dilated layer the *first* block keeps the previous
  dilation (1 in layer3, 2 in layer4) and only loses its stride; the remaining blocks use the
  new dilation (2 in layer3, 4 in layer4).  Bottleneck ResNets are built with that flag;
  BasicBlock ResNets (torchvision refuses ``dilation > 1`` there) are converted after
  construction with the same rule applied to both 3x3 convolutions of a block.  Weight shapes
  are unchanged, so torchvision state dicts load (``pretrained=``).
* Heads (no auxiliary loss head: the AAF authors' PSPNet code trains without one):

  - ``fcn`` with ``fcn_head="official"``: the AAF authors' FCN (``seg_models/models/fcn.py``), a
    bare 1x1 convolution from the backbone's features to the classes (:class:`LinearHead`);
  - ``fcn`` with ``fcn_head="torchvision"`` (the default, kept for the runs of benchmark v1):
    torchvision's ``FCNHead`` layout, 3x3 conv ``in -> in/4`` + BN + ReLU + Dropout(0.1) + 1x1
    conv to classes.
  - ``pspnet`` (Zhao et al. 2017): pyramid pooling with bins (1, 2, 3, 6), each adaptive
    average pool -> 1x1 conv ``in -> in/4`` + BN + ReLU -> bilinear upsample; concat with the
    input (``2*in`` channels) -> 3x3 conv to ``head_channels`` (512 for ResNet-50/101 as in
    the paper, ``in/4`` in general) + BN + ReLU + Dropout(0.1) -> 1x1 conv to classes.

* Output: logits at stride 8, **not** upsampled (the paper downsamples the labels instead).
  For an input of ``H x W`` the logits are ``ceil(H/8) x ceil(W/8)``: the stem conv (7x7, s2,
  p3), the max-pool (3x3, s2, p1) and layer2's first block (3x3 s2 p1 / 1x1 s2) each map a
  size ``n`` to ``ceil(n/2)``, and ``ceil(ceil(ceil(n/2)/2)/2) = ceil(n/8)``.

The ``narrow`` backbone is ResNet-18 at a quarter of its width: BasicBlock, blocks [2, 2, 2, 2],
widths (16, 32, 64, 128), 7x7 stem + max-pool, OS 8 (dilations layer3 1/2, layer4 2/4 by the
rule above), receptive field 403 px with the FCN head; 0.70 M backbone parameters (FCN 0.74 M,
PSPNet 0.79 M in total; both heads 32 channels wide).  Chosen by measurement on the 2-core CPU
(``torch.set_num_threads(2)``): one training step (forward, cross-entropy, backward, SGD momentum
step), batch 8, 8 classes, median of 12 steps after 3 warm-up steps, two runs (ms/step):

    model              96x96      112x112     128x128
    fcn-narrow         36 / 39    50 / 52     66 / 65
    pspnet-narrow      41 / 41    54 / 62     71 / 76
    fcn-resnet18        --        521 / 505    --
    pspnet-resnet18     --        595 / 608    --

(3/8 width with one block per stage costs about the same, ~70 ms at 112x112; layer4's dilated
convolutions take about half of the time.)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BASES",
    "BACKBONES",
    "build_model",
    "SegmentationModel",
    "ResNetBackbone",
    "FCNHead",
    "LinearHead",
    "FCN_HEADS",
    "PSPHead",
    "load_backbone_weights",
]

BASES = ("fcn", "pspnet")
FCN_HEADS = ("torchvision", "official")
BACKBONES = ("resnet18", "resnet50", "resnet101", "narrow")

NARROW_WIDTHS = (16, 32, 64, 128)  # ResNet-18 at a quarter of its width
NARROW_LAYERS = (2, 2, 2, 2)
PSP_BINS = (1, 2, 3, 6)


# --------------------------------------------------------------------------- backbone


def _dilate_basic_layer(layer: nn.Sequential, previous_dilation: int, dilation: int) -> None:
    """Turn a stride-2 BasicBlock layer into a stride-1 dilated one, in place.

    Mirrors torchvision's ``_make_layer(..., dilate=True)``: the first block loses its stride
    (conv1 and the downsample 1x1) and keeps ``previous_dilation``; the other blocks get
    ``dilation``.  Both 3x3 convs of a block use the block's dilation (padding = dilation).
    """
    for index, block in enumerate(layer):
        d = previous_dilation if index == 0 else dilation
        if index == 0:
            block.conv1.stride = (1, 1)
            block.stride = 1
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        for conv in (block.conv1, block.conv2):
            conv.dilation = (d, d)
            conv.padding = (d, d)


class ResNetBackbone(nn.Module):
    """A ResNet without ``avgpool``/``fc``: ``[N, 3, H, W] -> [N, out_channels, ceil(H/8), ceil(W/8)]``.

    Submodule names equal torchvision's (``conv1, bn1, relu, maxpool, layer1..layer4``), so its
    state dict is a torchvision ResNet state dict minus the ``fc.*`` keys.
    """

    def __init__(self, resnet: nn.Module, name: str) -> None:
        super().__init__()
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        last = self.layer4[-1]
        self.out_channels = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _NarrowResNet(nn.Module):
    """torchvision's ResNet layout (BasicBlock) with custom widths; ``fc`` omitted."""

    def __init__(self, widths=NARROW_WIDTHS, layers=NARROW_LAYERS) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0], 1)
        self.layer2 = self._make_layer(widths[1], layers[1], 2)
        self.layer3 = self._make_layer(widths[2], layers[2], 2)
        self.layer4 = self._make_layer(widths[3], layers[3], 2)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        from torchvision.models.resnet import BasicBlock   # torchvision: imported when a network is built

        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def _make_backbone(name: str) -> ResNetBackbone:
    import torchvision   # here, not at the top: importing aafcore (and `aaf --help`) stays fast

    if name in ("resnet50", "resnet101"):
        resnet = getattr(torchvision.models, name)(weights=None, replace_stride_with_dilation=[False, True, True])
    else:
        resnet = torchvision.models.resnet18(weights=None) if name == "resnet18" else _NarrowResNet()
        _dilate_basic_layer(resnet.layer3, previous_dilation=1, dilation=2)
        _dilate_basic_layer(resnet.layer4, previous_dilation=2, dilation=4)
    return ResNetBackbone(resnet, name)


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ResNet state dict file into ``backbone`` (``fc.*`` keys are ignored).

    Every other key must exist in the backbone with the same shape, and every backbone tensor
    must be in the file (BatchNorm ``num_batches_tracked`` counters may be absent).  Raises a
    one-line ``FileNotFoundError`` / ``ValueError`` naming the file and the first bad key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line error
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable PyTorch state dict ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    for key, value in state.items():
        if key not in own:
            raise ValueError(f"{path}: unexpected key {key!r} (not in the {getattr(backbone, 'name', '')} backbone)")
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"{path}: shape mismatch for {key!r}: file {tuple(value.shape)}, "
                             f"model {tuple(own[key].shape)}")
    for key in own:
        if key not in state and not key.endswith("num_batches_tracked"):
            raise ValueError(f"{path}: missing key {key!r}")
    backbone.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------- heads


def _conv_bn_relu(cin: int, cout: int, kernel_size: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FCNHead(nn.Module):
    """``[N, in, h, w] -> (logits [N, C, h, w], features [N, in/4, h, w])``.

    3x3 conv + BN + ReLU (the features) -> Dropout(0.1) -> 1x1 conv (the classifier).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.feature_channels = in_channels // 4
        self.block = _conv_bn_relu(in_channels, self.feature_channels, 3)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(self.feature_channels, num_classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.block(x)
        return self.classifier(self.dropout(features)), features


class LinearHead(nn.Module):
    """The AAF authors' FCN head: ``[N, in, h, w] -> (logits [N, C, h, w], features = the input)``,
    one 1x1 convolution (with bias) from the backbone's features to the classes."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.feature_channels = in_channels
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.classifier(x), x


class PSPHead(nn.Module):
    """Pyramid pooling head: ``[N, in, h, w] -> (logits [N, C, h, w], features [N, D, h, w])``.

    For each bin ``b`` in ``bins``: adaptive avg pool to ``b x b`` -> 1x1 conv ``in -> in/4`` +
    BN + ReLU -> bilinear upsample to ``h x w``; concat with the input -> 3x3 conv to
    ``D = head_channels`` + BN + ReLU (the features) -> Dropout(0.1) -> 1x1 conv.
    In training mode the 1x1 bin's BatchNorm needs a batch of at least 2.
    """

    def __init__(self, in_channels: int, num_classes: int, head_channels: int | None = None,
                 bins: tuple[int, ...] = PSP_BINS) -> None:
        super().__init__()
        reduced = in_channels // len(bins)
        self.bins = tuple(bins)
        self.feature_channels = head_channels or in_channels // 4
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(in_channels, reduced, 1)) for b in self.bins)
        self.bottleneck = _conv_bn_relu(in_channels + reduced * len(bins), self.feature_channels, 3)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(self.feature_channels, num_classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        pyramid = [x] + [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False)
                         for stage in self.stages]
        features = self.bottleneck(torch.cat(pyramid, dim=1))
        return self.classifier(self.dropout(features)), features


# --------------------------------------------------------------------------- model


class SegmentationModel(nn.Module):
    """Backbone + head.  ``forward(x)``: ``[N, 3, H, W] -> logits [N, C, ceil(H/8), ceil(W/8)]``.

    Logits stay at output stride 8 (not upsampled).  ``forward(x, with_features=True)``
    returns ``(logits, features)`` with ``features [N, feature_channels, ceil(H/8), ceil(W/8)]``,
    the head's map right before the final 1x1 classifier (after ReLU, before dropout).
    """

    output_stride = 8

    def __init__(self, backbone: ResNetBackbone, head: nn.Module, base: str, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.base = base
        self.backbone_name = backbone.name
        self.num_classes = num_classes
        self.feature_channels = head.feature_channels

    def forward(self, x: Tensor, with_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch [N, 3, H, W], got shape {tuple(x.shape)}")
        logits, features = self.head(self.backbone(x))
        return (logits, features) if with_features else logits

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters (base learning rate)."""
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """The head's parameters (the trainer gives them 10x the learning rate)."""
        return list(self.head.parameters())


def build_model(base: str, backbone: str, num_classes: int, pretrained: str | os.PathLike | None = None,
                head_channels: int | None = None, fcn_head: str = "torchvision") -> SegmentationModel:
    """Build ``base`` ("fcn" | "pspnet") on a dilated ``backbone`` ("resnet18" | "resnet50" |
    "resnet101" | "narrow") with ``num_classes`` outputs.

    ``pretrained``: a local torchvision ResNet state dict file loaded into the backbone (see
    :func:`load_backbone_weights`).  ``head_channels``: PSPNet's bottleneck width (default 512
    for ResNet-50/101, ``in/4`` otherwise); FCN's is always ``in/4``.  ``fcn_head``: ``"official"``
    (the authors' bare 1x1 classifier) or ``"torchvision"`` (``FCNHead``); pspnet ignores it.
    """
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    net = _make_backbone(backbone)
    if pretrained is not None:
        load_backbone_weights(net, pretrained)
    if base == "fcn":
        if head_channels is not None:
            raise ValueError("head_channels applies to pspnet only; FCN's head width is in_channels/4")
        if fcn_head not in FCN_HEADS:
            raise ValueError(f"unknown fcn_head {fcn_head!r}; choose one of {', '.join(FCN_HEADS)}")
        head = (LinearHead if fcn_head == "official" else FCNHead)(net.out_channels, num_classes)
    else:
        head = PSPHead(net.out_channels, num_classes, head_channels)
    return SegmentationModel(net, head, base, int(num_classes))
