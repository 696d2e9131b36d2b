"""Datasets: the built-in synthetic benchmark, a PASCAL-VOC-layout reader and training augmentation.

* :func:`generate_synthetic` writes the procedurally generated benchmark (DESIGN.md section 6) to
  disk in the PASCAL VOC layout; :data:`SYNTHETIC_PROFILES` holds the ``smoke`` / ``cpu`` / ``gpu``
  specifications and :func:`render_synthetic` draws one image in memory.
* :func:`build_dataset` reads it (``"synthetic"``) or PASCAL VOC 2012 (``"voc"``) through one
  reader, :class:`VOCLayoutDataset`.  ``ds[i]`` is a dict: ``"image"`` float32 ``[3, H, W]``
  normalised with :data:`MEAN` / :data:`STD`, ``"label"`` int64 ``[H, W]`` (255 = ignore),
  ``"instance"`` int64 ``[H, W]`` (0 = none) and ``"id"``.  :func:`denormalize` gives the raw
  ``uint8`` picture back (the dense CRF needs it).
* :class:`TrainAugment` is the paper's training augmentation (random scale in [0.5, 2], mirror,
  pad, random crop) on tensors, with all randomness drawn from a ``torch.Generator``.

Bad input raises :class:`DatasetError` (a ``ValueError``) with a one-line message naming the file.

The synthetic benchmark
-----------------------
A street-like scene: sky above a (slightly tilted) horizon, ground below it, buildings standing on
the horizon, and objects standing on the ground, drawn far to near (painter's order by the y of
their foot) with a simple perspective (objects lower in the picture are larger).  Eight classes
with very different structure scales.  Widths are for 128 px images and scale with the image size;
the line widths of the thin classes are further multiplied by ``SyntheticSpec.thin_width``
(2.5 in every profile, so a 1-3 px pole below is drawn 2.5-7.5 px wide, see "Choices" below):

=====  ========  =====  =======  ==============================================================
index  name      group  width    how it is drawn
=====  ========  =====  =======  ==============================================================
0      sky       large  ~50 px   region above the horizon (stuff, instance 0); smooth gradient
                                 or cloud texture
1      ground    large  ~60 px   region below the horizon (stuff, instance 0); smooth, striped,
                                 speckled or tiled texture
2      building  large  ~30 px   0-4 rectangles with flat, gabled or stepped roofs on the
                                 horizon; usually a window-grid texture (one instance each)
3      animal    large  ~15 px   big blob: ellipse body, ellipse head, four thick legs, sometimes
                                 a thin tail (one instance each)
4      pole      thin   1-3 px   vertical line from the ground up, sometimes with a lamp arm
5      fence     thin   1-2 px   lattice (rectilinear or diagonal chain-link) of 1-2 px lines in
                                 a rectangle standing on the ground, with rails and end posts
6      wheel     thin   1-2 px   ring with 3-8 radial spokes and a small hub, alone or in
                                 bicycle-like pairs (one instance per wheel)
7      person    thin   1-3 px   stick figure: small disc head, 1-3 px torso, 1-2 px bent arms
                                 and legs
=====  ========  =====  =======  ==============================================================

Label 255 (void) is never drawn by the generator; the reader and :class:`TrainAugment` handle it.
Instance ids count the things of an image in drawing order (1, 2, ...; at most 20 per image);
sky and ground are stuff with instance 0.  An instance that is completely hidden is absent.

Appearance alone does not decide the class: each image draws a global tint and, per class, a colour
``class mean + tint + N(0, 0.08)`` per channel (tint ~ N(0, 0.06); per instance a further
N(0, 0.05)), so the class colour distributions overlap; textures are shared between classes with class-dependent
probabilities (ground can be tiled like a building facade, a building can be plain).  Things get a
colour at RGB distance >= 0.15 (large) or >= 0.3 (thin) from what they occlude when one of 10 draws
finds one (hard, low-contrast cases remain, more of them in the shifted domain).  Clutter is painted
into the picture but not into the label: blobs with object-like colours, short thin "cracks" with
the colours of thin things, and shadows under objects.  Then blur, Gaussian noise and JPEG
compression (quality 90, 4:4:4).

The ``shifted`` domain (the GTA5 role of Table 11) draws geometry from the same distribution and
changes only appearance: other class means, lower saturation, a warm tint, lower contrast, gamma,
stronger textures and clutter, more blur and noise.

Every image is drawn from ``numpy.random.default_rng`` seeded by ``(seed, split, domain, index)``,
so the same spec gives byte-identical files whatever the order of generation.

Choices (made on the PSPNet *baseline* alone, before any other method was trained)
-----------------------------------------------------------------------------------
The first version drew thin structures 1-3 px wide with a colour spread of 0.15 (tint 0.10).  At
output stride 8 a 1-3 px line covers an eighth to a third of a logit cell, and the labels are
nearest-downsampled for training, so the cpu-profile baseline never predicted a thin class
(IoU 0.0 on all four, mIoU 28%).  The paper's thin classes are about one stride cell wide
(Cityscapes poles, VOC chair legs), so ``thin_width = 2.5`` makes ours 2.5-7.5 px (a third of a
cell to one cell), and a colour spread of 0.08 (tint 0.06) keeps appearance ambiguous while
letting a 2-minute CPU baseline learn (cpu profile: val mIoU 39%, thin classes 13%, large 65%).
The specification is then frozen (``GENERATOR_VERSION``); no method's result was looked at.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

__all__ = [
    "DatasetError",
    "MEAN",
    "STD",
    "IGNORE_INDEX",
    "normalize",
    "denormalize",
    "SyntheticClass",
    "SYNTHETIC_CLASSES",
    "synthetic_class_table",
    "synthetic_palette",
    "synthetic_meta",
    "SyntheticSpec",
    "SYNTHETIC_PROFILES",
    "GENERATOR_VERSION",
    "render_synthetic",
    "generate_synthetic",
    "VOC_CLASSES",
    "VOCLayoutDataset",
    "build_dataset",
    "DATASETS",
    "TrainAugment",
    "voc_colormap",
    "colorize",
]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics (the torchvision backbones are trained with them)
STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


class DatasetError(ValueError):
    """Bad dataset input (missing file, corrupt image, out-of-range label, ...); one-line message."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- normalisation


def normalize(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 [H, W, 3]`` picture -> float32 ``[3, H, W]`` normalised with :data:`MEAN`/:data:`STD`."""
    if not isinstance(image, torch.Tensor):
        image = np.asarray(image)
        image = torch.from_numpy(image if image.flags.writeable else image.copy())
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"normalize expects a picture [H, W, 3], got shape {tuple(image.shape)}")
    x = image.permute(2, 0, 1).to(torch.float32) / 255.0  # a new tensor: the input is never modified
    return x.sub_(torch.tensor(MEAN).view(3, 1, 1)).div_(torch.tensor(STD).view(3, 1, 1))


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of the normalisation: float ``[3, H, W]`` -> ``uint8 [H, W, 3]`` numpy (rounded, clipped)."""
    x = torch.as_tensor(image).detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"denormalize expects an image [3, H, W], got shape {tuple(x.shape)}")
    x = x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# --------------------------------------------------------------------------- palettes


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``uint8 [n, 3]`` (bits of the index spread over R, G, B)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def colorize(label: np.ndarray | torch.Tensor, palette: np.ndarray | Sequence | None = None) -> np.ndarray:
    """Label map ``[H, W]`` -> ``uint8 [H, W, 3]`` colours (default: the VOC colour map)."""
    pal = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(pal) < 256:
        pal = np.concatenate([pal, np.zeros((256 - len(pal), 3), np.uint8)])
    lab = np.asarray(torch.as_tensor(label).cpu().numpy() if isinstance(label, torch.Tensor) else label)
    return pal[np.clip(lab, 0, 255).astype(np.int64)]


# --------------------------------------------------------------------------- synthetic: classes


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic benchmark.  ``width_px``: typical structure width at 128 px."""

    name: str
    group: str  # "large" or "thin"
    stuff: bool  # stuff classes have no instances (instance id 0)
    width_px: float
    color: tuple[int, int, int]  # colour of the label palette
    description: str


SYNTHETIC_CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("sky", "large", True, 50, (70, 130, 180),
                   "region above the horizon; smooth gradient or cloud texture (stuff)"),
    SyntheticClass("ground", "large", True, 60, (128, 64, 128),
                   "region below the horizon; smooth, striped, speckled or tiled texture (stuff)"),
    SyntheticClass("building", "large", False, 30, (70, 70, 70),
                   "rectangles with flat, gabled or stepped roofs standing on the horizon; "
                   "usually a window-grid texture"),
    SyntheticClass("animal", "large", False, 15, (0, 150, 0),
                   "big blob: ellipse body and head, four thick legs, sometimes a thin tail"),
    SyntheticClass("pole", "thin", False, 2, (153, 153, 153),
                   "vertical 1-3 px line standing on the ground, sometimes with a lamp arm"),
    SyntheticClass("fence", "thin", False, 1, (190, 153, 153),
                   "lattice of 1-2 px lines (rectilinear or diagonal chain-link) with rails and "
                   "end posts, standing on the ground"),
    SyntheticClass("wheel", "thin", False, 2, (0, 0, 142),
                   "ring (1-2 px) with 3-8 radial 1 px spokes and a small hub; alone or in pairs"),
    SyntheticClass("person", "thin", False, 2, (220, 20, 60),
                   "stick figure: small disc head, 1-3 px torso, 1-2 px bent arms and legs"),
)
SKY, GROUND, BUILDING, ANIMAL, POLE, FENCE, WHEEL, PERSON = range(8)
_NUM_SYN = len(SYNTHETIC_CLASSES)

GENERATOR_VERSION = "aafcore-synthetic-2"  # frozen: thin_width, spreads 0.08/0.06


def _width_px(c: SyntheticClass, image_size: int, thin_width: float) -> float:
    """Typical structure width of class ``c`` in pixels of an ``image_size`` image."""
    return round(max(1.0, c.width_px * image_size / 128.0 * (thin_width if c.group == "thin" else 1.0)), 1)


def synthetic_class_table(image_size: int = 128, thin_width: float = 1.0) -> list[dict]:
    """The class table as dicts (index, name, group, stuff, width_px at ``image_size``, description).

    ``thin_width`` is :attr:`SyntheticSpec.thin_width`, the factor on the thin classes' line widths.
    """
    return [{"index": i, "name": c.name, "group": c.group, "stuff": c.stuff,
             "width_px": _width_px(c, image_size, thin_width), "description": c.description}
            for i, c in enumerate(SYNTHETIC_CLASSES)]


def synthetic_palette() -> np.ndarray:
    """Label palette ``uint8 [256, 3]``: the class colours, void (255) in VOC's cream colour."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i, c in enumerate(SYNTHETIC_CLASSES):
        pal[i] = c.color
    pal[255] = (224, 224, 192)
    return pal


# --------------------------------------------------------------------------- synthetic: spec


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: square images of ``image_size`` px and the number of images per split.

    ``val_shifted`` / ``test_shifted`` / ``train_shifted`` are the shifted appearance domain.  The
    drawing itself is fixed by :data:`GENERATOR_VERSION`; ``seed`` picks the scenes.
    """

    image_size: int = 128
    train: int = 800
    val: int = 200
    test: int = 200
    val_shifted: int = 200
    test_shifted: int = 200
    train_shifted: int = 0
    seed: int = 0
    jpeg_quality: int = 90
    thin_width: float = 1.0  # multiplies the line widths of the thin classes (and fence/wheel sizes)

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an integer >= 32, got {self.image_size!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("image_size", "thin_width") and (not isinstance(v, int) or v < 0):
                raise ValueError(f"{f.name} must be a non-negative integer, got {v!r}")
        if not (isinstance(self.thin_width, (int, float)) and 0.5 <= self.thin_width <= 8):
            raise ValueError(f"thin_width must be a number in [0.5, 8], got {self.thin_width!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    def splits(self) -> dict[str, tuple[str, str, int]]:
        """``{split file name: (split, domain, count)}`` for the non-empty splits."""
        out = {}
        for split in ("train", "val", "test"):
            for domain, suffix in (("source", ""), ("shifted", "_shifted")):
                n = getattr(self, split + suffix)
                if n:
                    out[split + suffix] = (split, domain, n)
        return out


SYNTHETIC_PROFILES: dict[str, SyntheticSpec] = {
    "smoke": SyntheticSpec(image_size=64, train=16, val=8, test=8, val_shifted=8, test_shifted=8,
                           thin_width=2.5),
    "cpu": SyntheticSpec(image_size=128, train=800, val=200, test=200, val_shifted=200, test_shifted=200,
                         thin_width=2.5),
    "gpu": SyntheticSpec(image_size=256, train=3000, val=500, test=500, val_shifted=500, test_shifted=500,
                         thin_width=2.5),
}


# --------------------------------------------------------------------------- synthetic: appearance


@dataclass(frozen=True)
class _Style:
    """Appearance of one domain (geometry does not depend on it)."""

    mean_shift: tuple  # added to every class mean colour
    saturation: float
    tint: tuple
    contrast: float
    gamma: float
    texture_gain: float
    clutter_gain: float
    blur_sigma: float
    noise_sigma: float


# Mean colours (RGB in [0, 1]) of the classes in the source domain; the per-image spread (0.08 per
# channel plus a shared 0.06 tint) is comparable to many distances between these means.
_CLASS_MEANS = np.array([
    [0.55, 0.68, 0.85],  # sky
    [0.45, 0.43, 0.40],  # ground
    [0.58, 0.50, 0.46],  # building
    [0.55, 0.42, 0.32],  # animal
    [0.35, 0.35, 0.38],  # pole
    [0.48, 0.48, 0.46],  # fence
    [0.25, 0.25, 0.27],  # wheel
    [0.58, 0.38, 0.40],  # person
])
_STYLES = {
    "source": _Style(mean_shift=(0.0, 0.0, 0.0), saturation=1.0, tint=(0.0, 0.0, 0.0), contrast=1.0,
                     gamma=1.0, texture_gain=1.0, clutter_gain=1.0, blur_sigma=0.6, noise_sigma=0.025),
    "shifted": _Style(mean_shift=(0.04, 0.0, -0.06), saturation=0.7, tint=(0.05, 0.02, -0.04),
                      contrast=0.9, gamma=0.85, texture_gain=1.5, clutter_gain=1.5, blur_sigma=0.8,
                      noise_sigma=0.04),
}
# per-class shift of the mean colours in the shifted domain (fixed, part of the generator version)
_SHIFTED_CLASS_SHIFT = np.array([
    [0.05, -0.05, -0.10], [0.06, 0.02, -0.04], [-0.04, 0.02, 0.06], [-0.06, 0.04, 0.08],
    [0.08, 0.06, 0.00], [-0.05, -0.02, 0.05], [0.10, 0.08, 0.05], [-0.08, 0.04, 0.10],
])
_CLASS_SPREAD = 0.08  # per-image, per-class colour spread (std per channel)
_TINT_SPREAD = 0.06  # per-image tint shared by all classes
_INSTANCE_SPREAD = 0.05
# things try (10 draws) to differ this much (RGB distance) from what they hide: large / thin things
_MIN_CONTRAST = {"large": 0.15, "thin": 0.3}

# texture kinds: 0 flat, 1 smooth noise, 2 speckle, 3 stripes, 4 grid (windows/tiles), 5 vertical
# gradient, 6 spots.  Probabilities per class: shared between classes, not exclusive.
_TEXTURE_P = np.array([
    [0.20, 0.35, 0.00, 0.00, 0.00, 0.45, 0.00],  # sky
    [0.15, 0.30, 0.20, 0.15, 0.10, 0.00, 0.10],  # ground
    [0.15, 0.10, 0.10, 0.10, 0.55, 0.00, 0.00],  # building
    [0.20, 0.30, 0.10, 0.15, 0.05, 0.00, 0.20],  # animal
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # pole
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # fence
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # wheel
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # person
])
_TEXTURE_AMP = np.array([(0.04, 0.14)] * 4 + [(0.0, 0.05)] * 4)  # uniform range of the amplitude


def _smooth_noise(rng, size: int, cells: int) -> np.ndarray:
    """Zero-mean unit-std smooth noise ``[size, size]``: a random ``cells x cells`` grid upsampled."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    up = np.asarray(Image.fromarray(grid, mode=None).resize((size, size), Image.BICUBIC), dtype=np.float32)
    up = up - up.mean()
    return up / max(float(up.std()), 1e-6)


def _texture_fields(rng, size: int, unit: float) -> np.ndarray:
    """The 7 texture fields ``float32 [7, size, size]`` of one image, roughly in [-1, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.zeros((7, size, size), np.float32)
    t[1] = np.clip(_smooth_noise(rng, size, 6) / 2, -1, 1)
    t[2] = np.clip(rng.standard_normal((size, size)).astype(np.float32) / 2, -1, 1)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(4, 12) * unit
    phase = rng.uniform(0, 2 * math.pi)
    t[3] = np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period + phase)
    px, py = rng.uniform(6, 14, size=2) * unit
    wx, wy = px * rng.uniform(0.35, 0.6), py * rng.uniform(0.35, 0.6)
    ox, oy = rng.uniform(0, px), rng.uniform(0, py)
    t[4] = np.where(((xx + ox) % px < wx) & ((yy + oy) % py < wy), 1.0, -0.4)
    t[5] = 2 * yy / size - 1
    t[6] = np.where(_smooth_noise(rng, size, max(4, size // 8)) > 1.0, 1.0, -0.15)
    return t


# --------------------------------------------------------------------------- synthetic: geometry


class _Canvas:
    """Element map of one scene: each drawn shape is an element with class, instance and colour."""

    def __init__(self, size: int):
        self.size = size
        self.elem = np.zeros((size, size), np.uint8)
        self.cls: list[int] = [0]
        self.inst: list[int] = [0]
        self.num_instances = 0

    def new_element(self, cls: int, instance: bool) -> int:
        if len(self.cls) >= 255:
            return 0
        if instance:
            self.num_instances += 1
        self.cls.append(cls)
        self.inst.append(self.num_instances if instance else 0)
        return len(self.cls) - 1

    def scratch(self):
        img = Image.new("L", (self.size, self.size), 0)
        return img, ImageDraw.Draw(img)

    def paint(self, element: int, mask_img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Paint ``element`` where the scratch image is non-zero; returns (mask, element ids hidden)."""
        mask = np.asarray(mask_img) > 0
        hidden = self.elem[mask]
        if element:
            self.elem[mask] = element
        return mask, hidden


def _scene(rng, size: int, thin: float = 1.0):
    """Draw the geometry of one scene; returns the canvas and the list of foot points (for shadows)."""
    S = float(size)
    u = size / 128.0
    cv = _Canvas(size)
    things: list[tuple[int, np.ndarray]] = []  # (element, ids hidden) for the contrast check
    feet: list[tuple[float, float, float]] = []  # (x, y, half width) of objects on the ground

    # sky and ground: horizon with a slight tilt
    hl = rng.uniform(0.33, 0.55) * S
    hr = hl + rng.uniform(-0.06, 0.06) * S
    sky = cv.new_element(SKY, False)
    ground = cv.new_element(GROUND, False)
    cv.elem[:] = ground
    img, d = cv.scratch()
    d.polygon([(-1, -1), (S, -1), (S, hr), (-1, hl)], fill=1)
    cv.paint(sky, img)

    def horizon(x):
        return hl + (hr - hl) * (x + 1) / (S + 1)

    def persp(y):  # objects near the bottom are larger
        h = horizon(S / 2)
        return 0.45 + 0.9 * min(max((y - h) / max(S - h, 1.0), 0.0), 1.3)

    def width(base, p=1.0, cap=3.0):
        return int(max(1, round(min(base * min(max(p, 0.6), 1.4), cap) * u * thin)))

    # buildings, behind everything else
    for _ in range(rng.choice(5, p=[0.15, 0.25, 0.3, 0.2, 0.1])):
        w = rng.uniform(0.15, 0.45) * S
        x0 = rng.uniform(-0.15, 1.0) * S - w / 2
        base = horizon(x0 + w / 2) + rng.uniform(0.0, 0.06) * S
        top = base - rng.uniform(0.15, 0.55) * S
        e = cv.new_element(BUILDING, True)
        img, d = cv.scratch()
        roof = rng.choice(3, p=[0.5, 0.3, 0.2])
        if roof == 0:
            pts = [(x0, base), (x0, top), (x0 + w, top), (x0 + w, base)]
        elif roof == 1:
            peak = rng.uniform(0.08, 0.2) * S
            pts = [(x0, base), (x0, top), (x0 + w / 2, top - peak), (x0 + w, top), (x0 + w, base)]
        else:
            step = rng.uniform(0.05, 0.15) * S
            xs = x0 + w * rng.uniform(0.3, 0.7)
            pts = [(x0, base), (x0, top), (xs, top), (xs, top - step), (x0 + w, top - step), (x0 + w, base)]
        d.polygon(pts, fill=1)
        things.append((e, cv.paint(e, img)[1]))

    # objects on the ground, sorted far (small foot y) to near
    objects = []
    for kind, counts, p in (("animal", 3, [0.35, 0.45, 0.2]), ("pole", 5, [0.1, 0.3, 0.3, 0.2, 0.1]),
                            ("fence", 3, [0.35, 0.5, 0.15]), ("wheel", 3, [0.3, 0.45, 0.25]),
                            ("person", 5, [0.15, 0.3, 0.3, 0.15, 0.1])):
        for _ in range(rng.choice(counts, p=p)):
            x = rng.uniform(-0.05, 1.05) * S
            y = horizon(x) + rng.uniform(0.04, 1.0) * (S * 1.02 - horizon(x))
            objects.append((y, x, kind, rng.integers(2**31)))
    objects.sort(key=lambda o: (o[0], o[1]))

    for y, x, kind, sub_seed in objects:
        r = np.random.default_rng(sub_seed)
        p = persp(y)
        if kind == "animal":
            bw = p * r.uniform(0.2, 0.38) * S
            bh = bw * r.uniform(0.45, 0.65)
            legs = bh * r.uniform(0.4, 0.7)
            bottom = y - legs
            e = cv.new_element(ANIMAL, True)
            img, d = cv.scratch()
            d.ellipse([x - bw / 2, bottom - bh, x + bw / 2, bottom + bh * 0.1], fill=1)
            side = 1 if r.random() < 0.5 else -1
            hr_ = bh * r.uniform(0.35, 0.5)
            hx = x + side * (bw / 2 + hr_ * 0.3)
            hy = bottom - bh * r.uniform(0.8, 1.2)
            d.ellipse([hx - hr_ * 1.2, hy - hr_, hx + hr_ * 1.2, hy + hr_], fill=1)
            lw = max(3 * u, 0.12 * bw)
            for fx in (-0.38, -0.22, 0.22, 0.38):
                lx = x + fx * bw + r.uniform(-0.04, 0.04) * bw
                foot = lx + r.uniform(-0.05, 0.05) * bw
                d.line([(lx, bottom - bh * 0.2), (foot, y)], fill=1, width=int(round(lw)))
            if r.random() < 0.5:
                tx = x - side * bw / 2
                end = (tx - side * bw * r.uniform(0.15, 0.3), bottom - bh * r.uniform(0.0, 0.9))
                d.line([(tx, bottom - bh * 0.7), end], fill=1, width=width(2, p))
            things.append((e, cv.paint(e, img)[1]))
            feet.append((x, y, bw * 0.6))
        elif kind == "pole":
            w = width(r.choice([1, 2, 2, 3]), p)
            top = y - p * r.uniform(0.45, 0.95) * S
            e = cv.new_element(POLE, True)
            img, d = cv.scratch()
            d.line([(x, y), (x, top)], fill=1, width=w)
            if r.random() < 0.4:
                arm = p * r.uniform(0.05, 0.12) * S * (1 if r.random() < 0.5 else -1)
                d.line([(x, top), (x + arm, top)], fill=1, width=w)
                d.line([(x + arm, top), (x + arm, top + max(2, 0.03 * S * p))], fill=1, width=w + 1)
            things.append((e, cv.paint(e, img)[1]))
            feet.append((x, y, 2 * w))
        elif kind == "fence":
            fw = r.uniform(0.25, 0.8) * S * min(p, 1.0)
            fh = p * r.uniform(0.08, 0.16) * S
            x0, x1, top = x - fw / 2, x + fw / 2, y - fh
            spacing = p * r.uniform(5, 9) * u * thin
            lw = width(1, 1.0, 1)
            e = cv.new_element(FENCE, True)
            img, d = cv.scratch()
            if r.random() < 0.5:  # rectilinear
                xs = x0 + r.uniform(0, spacing)
                while xs < x1:
                    d.line([(xs, top), (xs, y)], fill=1, width=lw)
                    xs += spacing
                for k in range(1, int(r.integers(1, 3)) + 1):
                    yk = top + fh * k / 3
                    d.line([(x0, yk), (x1, yk)], fill=1, width=lw)
            else:  # diagonal chain-link
                c = x0 - fh + r.uniform(0, spacing)
                while c < x1 + fh:
                    d.line([(c, y), (c + fh, top)], fill=1, width=lw)
                    d.line([(c, top), (c + fh, y)], fill=1, width=lw)
                    c += spacing
                clip = Image.new("L", img.size, 0)
                ImageDraw.Draw(clip).rectangle([x0, top, x1, y], fill=1)
                img = Image.fromarray((np.asarray(img) & np.asarray(clip)) * 255)
                d = ImageDraw.Draw(img)
            post = width(2, p)
            d.line([(x0, top), (x1, top)], fill=1, width=lw)
            d.line([(x0, top), (x0, y)], fill=1, width=post)
            d.line([(x1, top), (x1, y)], fill=1, width=post)
            things.append((e, cv.paint(e, img)[1]))
            feet.append((x, y, fw / 2))
        elif kind == "wheel":
            rad = p * r.uniform(6, 12) * u * math.sqrt(thin)
            n = 2 if r.random() < 0.55 else 1
            gap = r.uniform(2.2, 3.0) * rad * (1 if r.random() < 0.5 else -1)
            for k in range(n):
                cx, cy = x + k * gap, y - rad
                e = cv.new_element(WHEEL, True)
                img, d = cv.scratch()
                d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=1, width=width(1.5, p, 2))
                spokes = int(r.choice([3, 4, 5, 6, 8]))
                phase = r.uniform(0, 2 * math.pi)
                for s in range(spokes):
                    a = phase + 2 * math.pi * s / spokes
                    rim = (cx + rad * math.cos(a), cy + rad * math.sin(a))
                    d.line([(cx, cy), rim], fill=1, width=width(1, 1.0, 1))
                hub = max(1.0, 0.15 * rad)
                d.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], fill=1)
                things.append((e, cv.paint(e, img)[1]))
            feet.append((x + (n - 1) * gap / 2, y, abs(gap) / 2 * (n - 1) + rad))
        else:  # person
            h = p * r.uniform(0.22, 0.38) * S
            head = max(1.5 * u, 0.075 * h)
            neck = y - h + 2 * head
            hip = y - 0.47 * h
            lean = r.uniform(-0.06, 0.06) * h
            e = cv.new_element(PERSON, True)
            img, d = cv.scratch()
            d.ellipse([x + lean - head, y - h, x + lean + head, y - h + 2 * head], fill=1)
            d.line([(x + lean, neck), (x, hip)], fill=1, width=width(2, p))
            leg_w = width(r.choice([1, 2]), p, 2)
            for side in (-1, 1):
                knee = (x + side * r.uniform(0.0, 0.1) * h, hip + 0.25 * h)
                foot = (x + side * r.uniform(0.03, 0.18) * h, y)
                d.line([(x, hip), knee, foot], fill=1, width=leg_w, joint="curve")
                sh = (x + lean * 0.8, neck + 0.08 * h)
                a1 = side * r.uniform(0.1, 1.6)
                elbow = (sh[0] + 0.2 * h * math.sin(a1), sh[1] + 0.2 * h * math.cos(a1))
                a2 = a1 + side * r.uniform(-1.2, 1.2)
                hand = (elbow[0] + 0.18 * h * math.sin(a2), elbow[1] + 0.18 * h * math.cos(a2))
                d.line([sh, elbow, hand], fill=1, width=width(1, p, 2), joint="curve")
            things.append((e, cv.paint(e, img)[1]))
            feet.append((x, y, 0.15 * h))
    return cv, things, feet


def render_synthetic(spec: SyntheticSpec, split: str, domain: str, index: int):
    """Draw one image of the benchmark in memory.

    Returns ``(image uint8 [S, S, 3], label uint8 [S, S], instance uint8 [S, S])`` before JPEG
    compression.  Deterministic in ``(spec.seed, split, domain, index)`` and ``spec.image_size``.
    """
    if split not in _SPLIT_CODES or domain not in _STYLES:
        raise ValueError(f"split must be one of {list(_SPLIT_CODES)} and domain one of {list(_STYLES)}, "
                         f"got {split!r}, {domain!r}")
    ss = np.random.SeedSequence([spec.seed, _SPLIT_CODES[split], list(_STYLES).index(domain), index])
    geo_seed, app_seed = ss.spawn(2)
    size = spec.image_size
    unit = size / 128.0
    cv, things, feet = _scene(np.random.default_rng(geo_seed), size, spec.thin_width)
    rng = np.random.default_rng(app_seed)
    style = _STYLES[domain]

    # colours: class mean + image tint + per-class spread (+ per-instance spread)
    means = _CLASS_MEANS + np.asarray(style.mean_shift)
    if domain == "shifted":
        means = means + _SHIFTED_CLASS_SHIFT
    class_col = means + rng.normal(0, _TINT_SPREAD, 3) + rng.normal(0, _CLASS_SPREAD, (_NUM_SYN, 3))
    n_el = len(cv.cls)
    cls = np.array(cv.cls)
    col = np.clip(class_col[cls] + rng.normal(0, _INSTANCE_SPREAD, (n_el, 3)), 0.02, 0.98)
    for e, hidden in things:  # keep things visible against what they hide, when a few draws allow
        if hidden.size == 0:
            continue
        behind = col[hidden].mean(0)
        best, best_d = col[e], np.linalg.norm(col[e] - behind)
        for _ in range(10):
            if best_d >= _MIN_CONTRAST[SYNTHETIC_CLASSES[cls[e]].group]:
                break
            cand = np.clip(class_col[cls[e]] + rng.normal(0, _CLASS_SPREAD, 3), 0.02, 0.98)
            dist = np.linalg.norm(cand - behind)
            if dist > best_d:
                best, best_d = cand, dist
        col[e] = best

    # textures
    tex = _texture_fields(rng, size, unit)
    kind = np.array([rng.choice(7, p=_TEXTURE_P[c]) for c in cls])
    lo, hi = _TEXTURE_AMP[cls, 0], _TEXTURE_AMP[cls, 1]
    amp = rng.uniform(lo, hi) * style.texture_gain
    direction = 1.0 + rng.normal(0, 0.3, (n_el, 3))
    elem = cv.elem.astype(np.intp)
    t = np.take_along_axis(tex, kind[elem][None], 0)[0]
    img = col[elem] + (amp[elem] * t)[..., None] * direction[elem]

    # lighting: a vertical gradient
    yy = np.arange(size, dtype=np.float64)[:, None, None] / size - 0.5
    img = img * (1 + rng.uniform(-0.25, 0.25) * yy)

    # clutter on background pixels (sky, ground, buildings): blobs, cracks, shadows; not in the label
    background = np.isin(cls[elem], (SKY, GROUND, BUILDING))
    ground = cls[elem] == GROUND
    S = float(size)
    for x, y, hw in feet:  # shadows
        sh, d = cv.scratch()
        right = x + hw * 1.2 + rng.uniform(0, hw)
        d.ellipse([x - hw * 1.2, y - hw * 0.15 - 1, right, y + hw * 0.15 + 1], fill=1)
        m = (np.asarray(sh) > 0) & ground
        img[m] *= rng.uniform(0.55, 0.85)
    n_blobs = rng.poisson(5 * style.clutter_gain)
    n_cracks = rng.poisson(5 * style.clutter_gain)
    for k in range(n_blobs + n_cracks):
        sh, d = cv.scratch()
        if k < n_blobs:
            like = rng.choice([ANIMAL, PERSON, WHEEL, BUILDING, POLE])
            cx, cy = rng.uniform(0, S, 2)
            rx, ry = rng.uniform(0.03, 0.1, 2) * S
            if rng.random() < 0.5:
                d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
            else:
                a = np.sort(rng.uniform(0, 2 * math.pi, 5))
                d.polygon([(cx + rx * math.cos(t_), cy + ry * math.sin(t_)) for t_ in a], fill=1)
        else:
            like = rng.choice([POLE, FENCE, WHEEL, PERSON])
            cx, cy = rng.uniform(0, S, 2)
            length = rng.uniform(0.03, 0.12) * S
            a = rng.uniform(0, math.pi)
            d.line([(cx, cy), (cx + length * math.cos(a), cy + length * math.sin(a))], fill=1,
                   width=int(max(1, round(rng.choice([1, 1, 2]) * unit))))
        c = np.clip(class_col[like] + rng.normal(0, _INSTANCE_SPREAD, 3), 0.02, 0.98)
        alpha = rng.uniform(0.5, 1.0)
        m = (np.asarray(sh) > 0) & background
        img[m] = (1 - alpha) * img[m] + alpha * c

    # blur, domain colour transform, noise
    img = _gaussian_blur(img, style.blur_sigma * unit)
    lum = img.mean(-1, keepdims=True)
    img = lum + style.saturation * (img - lum) + np.asarray(style.tint)
    img = (img - 0.5) * style.contrast + 0.5
    img = np.clip(img, 0, 1) ** style.gamma
    img = img + rng.normal(0, style.noise_sigma, img.shape)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    label = cls.astype(np.uint8)[elem]
    instance = np.array(cv.inst, np.uint8)[elem]
    return image, label, instance


_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[H, W, 3]`` with reflected borders."""
    if sigma <= 0:
        return img
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="reflect")
    out = sum(k[i] * p[i:i + h] for i in range(2 * r + 1))
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(k[i] * p[:, i:i + w] for i in range(2 * r + 1))


# --------------------------------------------------------------------------- synthetic: writing


def _save_png(arr: np.ndarray, palette: np.ndarray, path: Path):
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr, np.uint8).tobytes())
    im.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    im.save(path, format="PNG")


def _write_one(args):
    spec, root, name, split, domain, index = args
    image, label, instance = render_synthetic(spec, split, domain, index)
    ident = f"{name}_{index:05d}"
    Image.fromarray(image).save(root / "JPEGImages" / f"{ident}.jpg", format="JPEG",
                                quality=spec.jpeg_quality, subsampling=0)
    _save_png(label, synthetic_palette(), root / "SegmentationClass" / f"{ident}.png")
    _save_png(instance, voc_colormap(), root / "SegmentationObject" / f"{ident}.png")
    return ident


def synthetic_meta(spec: SyntheticSpec) -> dict:
    """The content of ``meta.json`` for ``spec``."""
    return {
        "name": "aafcore synthetic street-scene benchmark",
        "generator": GENERATOR_VERSION,
        "spec": asdict(spec),
        "description": ("Procedurally generated street-like scenes with large regions (sky, ground, "
                        "buildings, blob animals) and thin structures (poles, fence lattices, spoked "
                        "wheels, stick-figure people); overlapping class colours, textures, clutter, "
                        "blur and noise; a 'shifted' appearance domain with the same geometry."),
        "class_names": [c.name for c in SYNTHETIC_CLASSES],
        "class_groups": [c.group for c in SYNTHETIC_CLASSES],
        "stuff_classes": [c.name for c in SYNTHETIC_CLASSES if c.stuff],
        "classes": synthetic_class_table(spec.image_size, spec.thin_width),
        "width_px": [_width_px(c, spec.image_size, spec.thin_width) for c in SYNTHETIC_CLASSES],
        "num_classes": _NUM_SYN,
        "ignore_index": IGNORE_INDEX,
        "palette": synthetic_palette()[:_NUM_SYN].tolist(),
        "void_color": synthetic_palette()[255].tolist(),
        "splits": {name: n for name, (_, _, n) in spec.splits().items()},
        "domains": {"source": ["train", "val", "test"],
                    "shifted": [s for s in ("train_shifted", "val_shifted", "test_shifted")
                                if s in spec.splits()]},
        "instances": "SegmentationObject: 1..N per image for things in drawing order; sky and ground 0",
    }


def _resolve_spec(spec_or_profile) -> SyntheticSpec:
    if isinstance(spec_or_profile, SyntheticSpec):
        return spec_or_profile
    if isinstance(spec_or_profile, str) and spec_or_profile in SYNTHETIC_PROFILES:
        return SYNTHETIC_PROFILES[spec_or_profile]
    raise DatasetError(f"unknown synthetic profile {spec_or_profile!r}; choose from "
                       f"{', '.join(SYNTHETIC_PROFILES)} or pass a SyntheticSpec")


def _check_existing(root: Path, meta: dict) -> Path:
    try:
        old = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {root / 'meta.json'}: {_one_line(err)}") from None
    if old.get("spec") != meta["spec"] or old.get("generator") != meta["generator"]:
        raise DatasetError(f"{root} holds a different synthetic dataset ({old.get('generator')}, "
                           f"spec {old.get('spec')}); want {meta['generator']}, spec {meta['spec']}: "
                           f"delete it or choose another directory")
    return root


def generate_synthetic(root: str | os.PathLike, spec_or_profile: SyntheticSpec | str = "cpu",
                       progress: bool = False, workers: int = 1) -> Path:
    """Generate the synthetic benchmark into ``root`` (PASCAL VOC layout) unless it is there.

    ``root/meta.json`` marks a complete dataset: with the same spec and generator version this
    returns at once; with another it raises :class:`DatasetError`.  The tree is written into a
    temporary sibling directory and renamed into place at the end.  ``workers > 1`` renders with
    a process pool (the files are the same).  Returns ``Path(root)``.
    """
    spec = _resolve_spec(spec_or_profile)
    root = Path(root)
    meta = synthetic_meta(spec)
    if (root / "meta.json").exists():
        return _check_existing(root, meta)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root} exists but is not a complete synthetic dataset (no meta.json): "
                           f"delete it or choose another directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
            (tmp / sub).mkdir(parents=True)
        jobs = [(spec, tmp, name, split, domain, i)
                for name, (split, domain, n) in spec.splits().items() for i in range(n)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=f"synthetic {spec.image_size}px", unit="img")
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap(_write_one, jobs, chunksize=16):
                    if bar is not None:
                        bar.update()
        else:
            for job in jobs:
                _write_one(job)
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        for name, (_, _, n) in spec.splits().items():
            (tmp / "ImageSets" / "Segmentation" / f"{name}.txt").write_text(
                "".join(f"{name}_{i:05d}\n" for i in range(n)))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        try:
            if root.exists():
                root.rmdir()  # an empty directory may be replaced
            os.rename(tmp, root)
        except OSError:
            if (root / "meta.json").exists():  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return _check_existing(root, meta)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------- reader


VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


class VOCLayoutDataset(torch.utils.data.Dataset):
    """Images and labels in the PASCAL VOC layout.

    ``root/JPEGImages/<id>.jpg``, ``root/SegmentationClass/<id>.png`` (palette PNG, value = class,
    255 = void), optional ``root/SegmentationObject/<id>.png`` (value = instance, 0 none, 255 void
    -> 0), and the ids in ``root/ImageSets/Segmentation/<split_file>.txt`` (or given as ``ids``).

    ``ds[i]`` -> dict ``image`` float32 [3, H, W] (normalised), ``label`` int64 [H, W],
    ``instance`` int64 [H, W] (zeros without SegmentationObject), ``id`` str; then ``transform``.
    ``cache=True`` keeps the decoded ``uint8`` arrays in memory.
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | os.PathLike, split_file: str, class_names: Sequence[str],
                 transform: Callable | None = None, cache: bool = True, meta: dict | None = None,
                 palette: np.ndarray | None = None, ids: Sequence[str] | None = None):
        self.root = Path(root)
        self.split = split_file
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.transform = transform
        self.cache = cache
        self.meta = meta
        self.palette = voc_colormap() if palette is None else palette
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory not found: {self.root}")
        source = f"split {split_file!r}"
        if ids is None:
            list_file = self.root / "ImageSets" / "Segmentation" / f"{split_file}.txt"
            if not list_file.is_file():
                raise DatasetError(f"split file not found: {list_file}")
            ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
            source = str(list_file)
        self.ids = list(ids)
        if not self.ids:
            raise DatasetError(f"{source} lists no images")
        self.has_instances = (self.root / "SegmentationObject").is_dir()
        for ident in self.ids:
            for path in self._paths(ident)[: 3 if self.has_instances else 2]:
                if path is not None and not path.is_file():
                    raise DatasetError(f"file of id {ident!r} in {source} not found: {path}")
        self._cache: dict[int, tuple] = {}

    def _paths(self, ident: str) -> tuple[Path, Path, Path]:
        return (self.root / "JPEGImages" / f"{ident}.jpg", self.root / "SegmentationClass" / f"{ident}.png",
                self.root / "SegmentationObject" / f"{ident}.png")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, classes={self.num_classes})")

    @staticmethod
    def _open(path: Path, modes: tuple[str, ...] | None = None) -> np.ndarray:
        try:
            with Image.open(path) as im:
                im.load()
                if modes is None:
                    return np.array(im.convert("RGB"), dtype=np.uint8)
                if im.mode not in modes:
                    raise DatasetError(f"{path}: expected a palette ('P') or greyscale ('L') PNG, "
                                       f"got mode {im.mode!r}")
                return np.array(im, dtype=np.uint8)
        except DatasetError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"cannot read {path}: {_one_line(err)}") from None

    def _read_index_map(self, path: Path) -> np.ndarray:
        """A label or instance map, uint8 ``[H, W]``: a palette/greyscale PNG or an SBD ``.mat``."""
        if path.suffix == ".mat":
            from aafcore.voc import read_sbd_mat

            return read_sbd_mat(path)
        return self._open(path, ("P", "L"))

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 [H, W, 3], label uint8 [H, W], instance uint8 [H, W])`` of item ``index``."""
        if index in self._cache:
            return self._cache[index]
        ident = self.ids[index]
        img_path, lbl_path, obj_path = self._paths(ident)
        image = self._open(img_path)
        label = self._read_index_map(lbl_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(f"id {ident!r}: image {img_path} is {image.shape[1]}x{image.shape[0]} but "
                               f"label {lbl_path} is {label.shape[1]}x{label.shape[0]}")
        bad = (label >= self.num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            values = sorted(set(np.unique(label[bad]).tolist()))
            raise DatasetError(f"label {lbl_path} has values {values[:5]} outside [0, {self.num_classes}) "
                               f"and the ignore value {IGNORE_INDEX}")
        if self.has_instances and obj_path is not None:
            instance = self._read_index_map(obj_path)
            if instance.shape != label.shape:
                raise DatasetError(f"id {ident!r}: instance map {obj_path} is {instance.shape[1]}x"
                                   f"{instance.shape[0]} but label {lbl_path} is "
                                   f"{label.shape[1]}x{label.shape[0]}")
            instance[instance == 255] = 0
        else:
            instance = np.zeros_like(label)
        out = (image, label, instance)
        if self.cache:
            self._cache[index] = out
        return out

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        image, label, instance = self.load_raw(index)
        item = {"image": normalize(image), "label": torch.from_numpy(label.astype(np.int64)),
                "instance": torch.from_numpy(instance.astype(np.int64)), "id": self.ids[index]}
        return self.transform(item) if self.transform is not None else item


def _voc_root(root: Path) -> Path:
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DatasetError(f"PASCAL VOC 2012 not found under {root} "
                       f"(expected {root}/VOCdevkit/VOC2012/JPEGImages)")


DATASETS = ("synthetic", "voc", "voc_aug", "cityscapes", "gta5")


def build_dataset(name: str, root: str | os.PathLike, split: str = "val", transform: Callable | None = None,
                  domain: str = "source", cache: bool | None = None) -> torch.utils.data.Dataset:
    """A segmentation dataset by name (DESIGN.md section 4); items as :class:`VOCLayoutDataset`'s.

    * ``"synthetic"`` (:func:`generate_synthetic`): split train / val / test; ``domain="shifted"``
      reads the shifted-appearance domain (``{split}_shifted.txt``).
    * ``"voc"``: PASCAL VOC 2012, ``root`` contains ``VOCdevkit/VOC2012`` (or is that directory);
      splits train / val / trainval (``ImageSets/Segmentation``).
    * ``"voc_aug"``: VOC 2012 + SBD (:class:`aafcore.voc.VOCAugDataset`), splits train_aug / train /
      val / trainval; ``root`` contains ``VOCdevkit/`` and ``benchmark_RELEASE/``.
    * ``"cityscapes"``: fine annotations on the 19 train ids (:class:`aafcore.cityscapes.CityscapesDataset`),
      ``root`` contains ``leftImg8bit/`` and ``gtFine/``; splits train / val / test.
    * ``"gta5"``: :class:`aafcore.cityscapes.GTA5Dataset`, ``root`` contains ``images/`` and
      ``labels/``; splits all / part1 (the first 2,500 images).

    ``cache`` keeps decoded images in memory (default: on for the small synthetic and VOC sets,
    off for the large real ones).
    """
    root = Path(root)
    if domain not in ("source", "shifted"):
        raise DatasetError(f"domain must be 'source' or 'shifted', got {domain!r}")
    if domain != "source" and name != "synthetic":
        raise DatasetError(f"dataset {name!r} has no {domain!r} domain (only the synthetic benchmark has one)")
    if name == "synthetic":
        if not root.is_dir():
            raise DatasetError(f"synthetic dataset directory not found: {root} "
                               f"(generate it with `aaf data synthetic` or aafcore.data.generate_synthetic)")
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{meta_path} not found: {root} is not a complete synthetic dataset")
        try:
            meta = json.loads(meta_path.read_text())
            class_names = meta["class_names"]
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError(f"cannot read {meta_path}: {_one_line(err)}") from None
        split_file = split + ("_shifted" if domain == "shifted" else "")
        palette = synthetic_palette()
        if "palette" in meta:
            palette[: len(meta["palette"])] = np.asarray(meta["palette"], np.uint8)
        return VOCLayoutDataset(root, split_file, class_names, transform, cache is not False, meta=meta,
                                palette=palette)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    if name == "voc":
        return VOCLayoutDataset(_voc_root(root), split, VOC_CLASSES, transform, cache is not False)
    if name == "voc_aug":
        from aafcore.voc import VOCAugDataset

        return VOCAugDataset(root, split, transform, cache=bool(cache))
    from aafcore.cityscapes import CityscapesDataset, GTA5Dataset

    reader = CityscapesDataset if name == "cityscapes" else GTA5Dataset
    return reader(root, split, transform, cache=bool(cache))


# --------------------------------------------------------------------------- augmentation


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
