"""Training augmentation: :class:`TrainAugment`, the paper's random scale, mirror, pad and crop.

It works on the items of every reader (``"image"`` float32 ``[3, H, W]`` normalised,
``"label"`` int64 ``[H, W]``, optional ``"instance"`` int64 ``[H, W]``), with all randomness
drawn from a ``torch.Generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aafcore.datasets.base import IGNORE_INDEX

__all__ = ["TrainAugment"]


class TrainAugment:
    """The paper's training augmentation on normalised tensors.

    Random scale ``s ~ U(scale_range)`` (image bilinear, ``align_corners=False``; label and
    instance nearest at pixel centres), random left-right mirror, padding to at least
    ``crop_size`` at the bottom/right (image 0 = the mean colour after normalisation, label
    ``ignore_index``, instance 0), then a random ``crop_size x crop_size`` crop.  All randomness
    comes from ``generator`` (four draws in a fixed order: scale, mirror, crop y, crop x), so
    the same generator state gives the same output.
    """

    def __init__(self, crop_size: int, scale_range: tuple[float, float] = (0.5, 2.0), mirror: bool = True,
                 ignore_index: int = IGNORE_INDEX):
        if int(crop_size) < 1:
            raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
        self.crop_size = int(crop_size)
        self.scale_range = (lo, hi)
        self.mirror = mirror
        self.ignore_index = ignore_index

    def __repr__(self) -> str:
        return (f"TrainAugment(crop_size={self.crop_size}, scale_range={self.scale_range}, "
                f"mirror={self.mirror}, ignore_index={self.ignore_index})")

    def __call__(self, item: dict, generator: torch.Generator | None = None) -> dict:
        """A copy of ``item`` with ``image`` ``[3, c, c]``, ``label`` ``[c, c]`` (and ``instance``
        ``[c, c]`` when present) augmented, ``c = crop_size``; other keys are kept."""
        image, label = item["image"], item["label"]
        instance = item.get("instance")
        if image.ndim != 3 or label.shape != image.shape[1:]:
            raise ValueError(f"TrainAugment expects image [3, H, W] and label [H, W], got "
                             f"{tuple(image.shape)} and {tuple(label.shape)}")
        h, w = label.shape
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        lo, hi = self.scale_range
        s = lo + (hi - lo) * u[0]
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        if (nh, nw) != (h, w):
            image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            ys = ((torch.arange(nh, dtype=torch.float64) + 0.5) * (h / nh)).long().clamp_(max=h - 1)
            xs = ((torch.arange(nw, dtype=torch.float64) + 0.5) * (w / nw)).long().clamp_(max=w - 1)
            label = label[ys][:, xs]
            if instance is not None:
                instance = instance[ys][:, xs]
        if self.mirror and u[1] < 0.5:
            image, label = image.flip(-1), label.flip(-1)
            if instance is not None:
                instance = instance.flip(-1)
        c = self.crop_size
        ph, pw = max(c - nh, 0), max(c - nw, 0)
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            label = F.pad(label, (0, pw, 0, ph), value=self.ignore_index)
            if instance is not None:
                instance = F.pad(instance, (0, pw, 0, ph), value=0)
        y0 = int(u[2] * (label.shape[0] - c + 1))
        x0 = int(u[3] * (label.shape[1] - c + 1))
        out = dict(item)
        out["image"] = image[:, y0:y0 + c, x0:x0 + c].contiguous()
        out["label"] = label[y0:y0 + c, x0:x0 + c].contiguous()
        if instance is not None:
            out["instance"] = instance[y0:y0 + c, x0:x0 + c].contiguous()
        return out
