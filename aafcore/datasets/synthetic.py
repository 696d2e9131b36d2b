"""The built-in synthetic benchmark (DESIGN.md section 6): specification, rendering and writing.

* :func:`generate_synthetic` writes the procedurally generated benchmark to disk in the PASCAL VOC
  layout (read by :func:`aafcore.datasets.build_dataset` as ``"synthetic"``);
  :data:`SYNTHETIC_PROFILES` holds the ``smoke`` / ``cpu`` / ``gpu`` specifications (v1) and
  ``study`` (v2), and :func:`render_synthetic` draws one image in memory.
* Benchmark v2, the ``study`` profile (:class:`StudySpec`), is described at the end; its statistics
  in logit cells come from :mod:`aafcore.datasets.geometry_stats`.
* The geometry (the classes, one drawing function per object kind) is in
  :mod:`aafcore.datasets.scene`, the appearance (colours, textures, clutter, blur and noise) in
  :mod:`aafcore.datasets.appearance`.

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

Benchmark v2: the ``study`` profile (:class:`StudySpec`, ``STUDY_GENERATOR_VERSION``)
-------------------------------------------------------------------------------------
In v1 a training logit map is 14 x 14 (112 px crops), thin structures are 1/4-1 logit cell wide and
large ones 2-7: an affinity field of 3, 5 or 7 cells has little to choose from (the paper's logit
maps are 42 x 42 on VOC, 90 x 90 on Cityscapes).  v2 draws the same kind of street scene, same
eight classes, indices, palette and appearance domains, with sizes set in logit *cells* of 8 px:

* 384 px images (48 x 48 cells): a 256 px training crop (32 x 32 logits) needs no padding at
  random scales >= 2/3 (89 % of [0.5, 2]); whole-image evaluation sees 48 x 48 logits.  320 px
  would pad 20 % of the crops; a larger image costs generation time (~S^2).
* Appearance at a fixed pixel scale (``paint_scene(unit=STUDY_UNIT)``: textures, cracks and blur
  as v1 at 256 px) whatever the image size.
* Beside the occlusions of the painter's order, an object gets with probability 0.4 a companion
  of another kind standing at its depth 0 (touching), 1, 2 or 4 cells beside it (0.3/0.3/0.2/0.2).
* Splits: train 1000, ``tuning`` 100 (only to choose the baseline's learning rate and step count),
  val 200, test 200, val_shifted 200, test_shifted 200; the rng rule is v1's (tuning: split code 3).

=====  ========  =====  =========  ====================  =========================================
index  name      group  design     measured (cells)      how it is drawn
                        (cells)    q05 / median / q95
=====  ========  =====  =========  ====================  =========================================
0      sky       large  16-26      0.25 / 4.1 / 15.7     above the horizon; cut by buildings, poles
1      ground    large  22-32      0.12 / 2.4 / 13.0     below the horizon; objects stand on it
2      building  large  10-22      0.25 / 3.8 / 13.9     blocks 10-26 cells tall, three roof kinds
3      animal    mid    2-6.5      0.12 / 2.3 / 5.5      body 3-6.5 thick, neck, head; legs 0.4-0.55 x
4      pole      thin   0.5-3      0.50 / 1.1 / 2.8      4-24 px bar; 40 % lamp arm and head
5      fence     thin   0.5-3      0.38 / 0.9 / 1.8      4-8 px lattice 2-5 cells apart, rails, posts
6      wheel     thin   0.5-2      0.35 / 0.8 / 1.7      4-16 px ring, radius 1.75-7, 4-6 px spokes
7      person    thin   0.5-3      0.35 / 0.9 / 1.8      limbs 4-14 px, torso 8-24 px, head 1.2-3
=====  ========  =====  =========  ====================  =========================================

"Measured" is the ridge width of :mod:`aafcore.datasets.geometry_stats` on the 1000 train images
(weighted by ridge length, so the narrow places between objects weigh on the large classes: 17 %,
10 % and 16 % of the sky, ground and building ridge is >= 10 cells wide).  Edge-pair shares at
k = 3 / 5 / 7 there: sky .07/.12/.16, ground .11/.16/.19, building .11/.18/.23, animal
.28/.47/.61, pole .50/.69/.74, fence .49/.58/.66, wheel .58/.70/.75, person .58/.74/.78.
Generation: 1900 images in 111 s with ``workers=2`` on 2 cores, 144 MB.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from aafcore.datasets.appearance import STYLES, paint_scene
from aafcore.datasets.base import IGNORE_INDEX, DatasetError, voc_colormap
from aafcore.datasets.scene import (CELL, STUDY_OBJECT_KINDS, SYNTHETIC_CLASSES, Canvas, Ground, SyntheticClass,
                                    _sky_and_ground, draw_scene, draw_study_building, synthetic_class_table,
                                    synthetic_palette, width_px)
from aafcore.errors import one_line

__all__ = ["SyntheticClass", "SYNTHETIC_CLASSES", "synthetic_class_table", "synthetic_palette", "synthetic_meta",
           "SyntheticSpec", "SYNTHETIC_PROFILES", "GENERATOR_VERSION", "render_synthetic", "generate_synthetic",
           "StudySpec", "STUDY_GENERATOR_VERSION", "STUDY_UNIT", "study_class_table", "draw_study_scene"]

GENERATOR_VERSION = "aafcore-synthetic-2"  # frozen: thin_width, spreads 0.08/0.06 (benchmark v1)
STUDY_GENERATOR_VERSION = "aafcore-synthetic-v2.0"  # benchmark v2, the "study" profile: frozen
STUDY_UNIT = 2.0  # appearance scale of v2 (paint_scene's unit): textures, cracks and blur as v1 at 256 px
_NUM_SYN = len(SYNTHETIC_CLASSES)
# v2 classes (same names, indices, palette as v1): group, designed width range in cells, typical designed
# width in px (the middle of the range; thin: of the main strokes), how drawn
_STUDY_TABLE = (
    ("large", (16, 26), 168, "region above the horizon, 16-26 cells tall; cut by buildings and poles (stuff)"),
    ("large", (22, 32), 216, "region below the horizon, 22-32 cells tall; objects stand on it (stuff)"),
    ("large", (10, 22), 128, "0-4 blocks 10-22 cells wide and 10-26 tall with flat, gabled or stepped roofs"),
    ("mid", (2, 6.5), 34, "stocky blob: ellipse body 3-6.5 cells thick, neck, head, two legs 0.4-0.55 as wide"),
    ("thin", (0.5, 3), 9, "vertical bar 4-24 px, 40 % with a lamp arm (half as wide) and a 6-12 px lamp head"),
    ("thin", (0.5, 3), 6, "lattice of 4-8 px lines 2-5 cells apart, 6-12 px top rail, 8-24 px end posts"),
    ("thin", (0.5, 2), 8, "ring 4-16 px wide, radius 1.75-7 cells, 3-6 spokes of 4-6 px, hub; alone or paired"),
    ("thin", (0.5, 3), 8, "stick figure: limbs 4-14 px, torso 8-24 px, disc head 1.2-3 cells across"),
)


# --------------------------------------------------------------------------- spec


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


@dataclass(frozen=True)
class StudySpec:
    """Benchmark v2 (the ``study`` profile): square images of ``image_size`` px (a multiple of the
    stride, 8) and the number of images per split.

    ``tuning`` (source domain) is only for choosing the learning rate and step count of the
    baseline, so that neither ``val`` nor ``test`` is looked at for it.  ``*_shifted`` are the
    shifted appearance domain.  The drawing is fixed by :data:`STUDY_GENERATOR_VERSION`; ``seed``
    picks the scenes.
    """

    image_size: int = 384
    train: int = 1000
    tuning: int = 100
    val: int = 200
    test: int = 200
    val_shifted: int = 200
    test_shifted: int = 200
    train_shifted: int = 0
    seed: int = 0
    jpeg_quality: int = 90

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{f.name} must be a non-negative integer, got {v!r}")
        if self.image_size < 64 or self.image_size % CELL:
            raise ValueError(f"image_size must be a multiple of {CELL} and >= 64, got {self.image_size!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    def splits(self) -> dict[str, tuple[str, str, int]]:
        """``{split file name: (split, domain, count)}`` for the non-empty splits (no shifted tuning)."""
        out = {}
        for split in ("train", "tuning", "val", "test"):
            for domain, suffix in (("source", ""), ("shifted", "_shifted")):
                n = getattr(self, split + suffix, 0)
                if n:
                    out[split + suffix] = (split, domain, n)
        return out


SYNTHETIC_PROFILES: dict[str, SyntheticSpec | StudySpec] = {
    "smoke": SyntheticSpec(image_size=64, train=16, val=8, test=8, val_shifted=8, test_shifted=8,
                           thin_width=2.5),
    "cpu": SyntheticSpec(image_size=128, train=800, val=200, test=200, val_shifted=200, test_shifted=200,
                         thin_width=2.5),
    "gpu": SyntheticSpec(image_size=256, train=3000, val=500, test=500, val_shifted=500, test_shifted=500,
                         thin_width=2.5),
    "study": StudySpec(image_size=384, train=1000, tuning=100, val=200, test=200, val_shifted=200,
                       test_shifted=200),
}


# --------------------------------------------------------------------------- v2 scene composition

STUDY_COMPANION_P = 0.4  # chance that an object gets a companion of another kind beside it
STUDY_GAPS = ((0, 1, 2, 4), (0.3, 0.3, 0.2, 0.2))  # companion gaps in cells and their probabilities


def _study_place(g: Ground, rng: np.random.Generator) -> list[tuple]:
    """``(foot y, x, kind, seed, companion)`` of the v2 objects, sorted far to near; ``companion`` is
    ``None`` or ``(kind, gap in cells, side +-1, seed)``."""
    S, kinds = g.S, list(STUDY_OBJECT_KINDS)
    objects = []
    for kind, (_, counts, p) in STUDY_OBJECT_KINDS.items():
        for _ in range(rng.choice(counts, p=p)):
            x = rng.uniform(-0.05, 1.05) * S
            y = g.horizon(x) + rng.uniform(0.04, 1.0) * (S * 1.02 - g.horizon(x))
            companion = None
            if rng.random() < STUDY_COMPANION_P:
                others = [k for k in kinds if k != kind]
                companion = (others[int(rng.integers(len(others)))], int(rng.choice(STUDY_GAPS[0], p=STUDY_GAPS[1])),
                             1 if rng.random() < 0.5 else -1, int(rng.integers(2**31)))
            objects.append((y, x, kind, int(rng.integers(2**31)), companion))
    objects.sort(key=lambda o: (o[0], o[1]))
    return objects


def _columns(elem: np.ndarray, first: int, last: int) -> np.ndarray:
    """Columns of ``elem`` that hold an element id in ``[first, last)``."""
    return np.nonzero(((elem >= first) & (elem < last)).any(0))[0]


def _draw_group(cv: Canvas, g: Ground, y: float, x: float, kind: str, seed: int, companion) -> None:
    """Draw a v2 object and its companion (if any) standing at the same ``y``, ``gap`` cells beside
    it: the companion's column extent is measured on a blank canvas twice the size and the
    companion shifted by whole pixels, so that ``gap * CELL`` columns separate the two (0: touching)."""
    n = len(cv.cls)
    STUDY_OBJECT_KINDS[kind][0](cv, g, np.random.default_rng(seed), x, y)
    cols = _columns(cv.elem, n, len(cv.cls))
    if companion is None or cols.size == 0 or len(cv.cls) >= 250:
        return
    ckind, gap, side, cseed = companion
    draw = STUDY_OBJECT_KINDS[ckind][0]
    probe = Canvas(2 * cv.size)
    draw(probe, g, np.random.default_rng(cseed), float(cv.size), y)
    pc = _columns(probe.elem, 1, 256)
    if pc.size == 0:
        return
    if side > 0:
        cx = cols[-1] + 1 + gap * CELL + (cv.size - pc[0])
    else:
        cx = cols[0] - 1 - gap * CELL - (pc[-1] - cv.size)
    draw(cv, g, np.random.default_rng(cseed), float(cx), y)


def draw_study_scene(rng: np.random.Generator, size: int) -> Canvas:
    """Draw the geometry of one ``size x size`` v2 scene: sky and ground (as v1), 0-4 v2 buildings,
    then the v2 objects and their companions far to near; returns the :class:`Canvas`."""
    cv = Canvas(size)
    g = _sky_and_ground(cv, rng, 1.0)
    for _ in range(rng.choice(5, p=[0.1, 0.25, 0.3, 0.2, 0.15])):
        draw_study_building(cv, g, rng)
    for y, x, kind, seed, companion in _study_place(g, rng):
        _draw_group(cv, g, y, x, kind, seed, companion)
    return cv


# --------------------------------------------------------------------------- rendering

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_STUDY_SPLIT_CODES = {**_SPLIT_CODES, "tuning": 3}


def render_synthetic(spec: SyntheticSpec | StudySpec, split: str, domain: str, index: int):
    """Draw one image of the benchmark (v1 for a :class:`SyntheticSpec`, v2 for a :class:`StudySpec`).

    Returns ``(image uint8 [S, S, 3], label uint8 [S, S], instance uint8 [S, S])`` before JPEG
    compression.  Deterministic in ``(spec.seed, split, domain, index)`` and ``spec.image_size``
    (v2's split ``tuning`` has code 3 after train 0, val 1, test 2).
    """
    study = isinstance(spec, StudySpec)
    codes = _STUDY_SPLIT_CODES if study else _SPLIT_CODES
    if split not in codes or domain not in STYLES:
        raise ValueError(f"split must be one of {list(codes)} and domain one of {list(STYLES)}, "
                         f"got {split!r}, {domain!r}")
    ss = np.random.SeedSequence([spec.seed, codes[split], list(STYLES).index(domain), index])
    geo_seed, app_seed = ss.spawn(2)
    if study:
        cv = draw_study_scene(np.random.default_rng(geo_seed), spec.image_size)
        image = paint_scene(np.random.default_rng(app_seed), cv, domain, unit=STUDY_UNIT)
    else:
        cv = draw_scene(np.random.default_rng(geo_seed), spec.image_size, spec.thin_width)
        image = paint_scene(np.random.default_rng(app_seed), cv, domain)
    elem = cv.elem.astype(np.intp)
    label = np.array(cv.cls).astype(np.uint8)[elem]
    instance = np.array(cv.inst, np.uint8)[elem]
    return image, label, instance


# --------------------------------------------------------------------------- writing

def _save_png(arr: np.ndarray, palette: np.ndarray, path: Path):
    """Write ``arr`` uint8 ``[H, W]`` as a palette PNG with ``palette`` uint8 ``[256, 3]``."""
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr, np.uint8).tobytes())
    im.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    im.save(path, format="PNG")


def _write_one(args):
    """Render and write image ``index`` of a split (JPEG, class PNG, instance PNG); returns its id."""
    spec, root, name, split, domain, index = args
    image, label, instance = render_synthetic(spec, split, domain, index)
    ident = f"{name}_{index:05d}"
    Image.fromarray(image).save(root / "JPEGImages" / f"{ident}.jpg", format="JPEG",
                                quality=spec.jpeg_quality, subsampling=0)
    _save_png(label, synthetic_palette(), root / "SegmentationClass" / f"{ident}.png")
    _save_png(instance, voc_colormap(), root / "SegmentationObject" / f"{ident}.png")
    return ident


def synthetic_meta(spec: SyntheticSpec | StudySpec) -> dict:
    """The content of ``meta.json`` for ``spec`` (v2: :func:`_study_meta`)."""
    if isinstance(spec, StudySpec):
        return _study_meta(spec)
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
        "width_px": [width_px(c, spec.image_size, spec.thin_width) for c in SYNTHETIC_CLASSES],
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


def study_class_table() -> list[dict]:
    """The v2 class table as dicts: index, name, group, stuff, ``width_cells`` (designed range
    ``[low, high]`` in logit cells of 8 px), ``width_px`` (a typical designed width in px) and
    description.  The measured width distributions come from :mod:`aafcore.datasets.geometry_stats`."""
    return [{"index": i, "name": c.name, "group": group, "stuff": c.stuff, "width_cells": list(cells),
             "width_px": typical, "description": text}
            for i, (c, (group, cells, typical, text)) in enumerate(zip(SYNTHETIC_CLASSES, _STUDY_TABLE))]


def _study_meta(spec: StudySpec) -> dict:
    """The content of ``meta.json`` for a v2 spec (the keys of v1's and ``benchmark``, ``stride``,
    ``roles``)."""
    table = study_class_table()
    return {
        "name": "aafcore synthetic street-scene benchmark v2 (study)",
        "benchmark": "v2",
        "generator": STUDY_GENERATOR_VERSION,
        "spec": asdict(spec),
        "description": ("Benchmark v2: the street-like scenes of v1 with sizes set in logit cells (8 px) on "
                        f"{spec.image_size} px images: large regions (sky, ground, buildings) 10+ cells, "
                        "mid-size animals 2-6 cells, thin poles, fences, wheels and people 0.5-3 cells, "
                        "objects of different classes side by side 0-4 cells apart; same appearance and "
                        "'shifted' domain as v1 at a fixed pixel scale."),
        "class_names": [c["name"] for c in table],
        "class_groups": [c["group"] for c in table],
        "stuff_classes": [c["name"] for c in table if c["stuff"]],
        "classes": table,
        "width_px": [c["width_px"] for c in table],
        "stride": CELL,
        "num_classes": _NUM_SYN,
        "ignore_index": IGNORE_INDEX,
        "palette": synthetic_palette()[:_NUM_SYN].tolist(),
        "void_color": synthetic_palette()[255].tolist(),
        "splits": {name: n for name, (_, _, n) in spec.splits().items()},
        "domains": {"source": [s for s in ("train", "tuning", "val", "test") if s in spec.splits()],
                    "shifted": [s for s in ("train_shifted", "val_shifted", "test_shifted") if s in spec.splits()]},
        "roles": {"train": "training", "tuning": "choosing the learning rate and step count of the baseline only",
                  "val": "model selection and the paper's tables", "test": "the final, held-out numbers"},
        "instances": "SegmentationObject: 1..N per image for things in drawing order; sky and ground 0",
    }


def _resolve_spec(spec_or_profile) -> SyntheticSpec | StudySpec:
    if isinstance(spec_or_profile, (SyntheticSpec, StudySpec)):
        return spec_or_profile
    if isinstance(spec_or_profile, str) and spec_or_profile in SYNTHETIC_PROFILES:
        return SYNTHETIC_PROFILES[spec_or_profile]
    raise DatasetError(f"unknown synthetic profile {spec_or_profile!r}; choose from "
                       f"{', '.join(SYNTHETIC_PROFILES)} or pass a SyntheticSpec")


def _check_existing(root: Path, meta: dict) -> Path:
    try:
        old = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {root / 'meta.json'}: {one_line(err)}") from None
    if old.get("spec") != meta["spec"] or old.get("generator") != meta["generator"]:
        raise DatasetError(f"{root} holds a different synthetic dataset ({old.get('generator')}, "
                           f"spec {old.get('spec')}); want {meta['generator']}, spec {meta['spec']}: "
                           f"delete it or choose another directory")
    return root


def _write_tree(spec: SyntheticSpec | StudySpec, tmp: Path, meta: dict, progress: bool, workers: int) -> None:
    """Render every image of ``spec`` into the VOC layout under ``tmp``, then the split lists and
    ``meta.json`` (written last: it marks the tree complete)."""
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (tmp / sub).mkdir(parents=True)
    jobs = [(spec, tmp, name, split, domain, i)
            for name, (split, domain, n) in spec.splits().items() for i in range(n)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"synthetic {spec.image_size}px", unit="img")
    if workers > 1:
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


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (or may run: one of another user, or an unusable pid, counts as alive)."""
    try:
        os.kill(pid, 0)  # signal 0: only the existence and permission checks
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it runs, as another user
        return True
    return True


def remove_stale_tmp(root: Path) -> list[Path]:
    """Remove the temporary siblings ``.<name>.<pid>.tmp`` of ``root`` left by generators that died
    (killed with SIGKILL, a crash of the machine): those whose ``pid`` runs no process.  The folder
    of a live process is never touched (nor one whose pid was reused: it stays until that process
    ends).  POSIX only (``os.kill(pid, 0)`` would end the process on Windows).  Returns the removed paths."""
    if os.name != "posix" or not root.name or not root.parent.is_dir():
        return []
    prefix, removed = f".{root.name}.", []
    for path in root.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = path.name[len(prefix): -len(".tmp")]
        if not (pid.isascii() and pid.isdigit()) or int(pid) <= 0 or int(pid) == os.getpid():
            continue
        if path.is_dir() and not path.is_symlink() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)  # another generator may be removing it too
            removed.append(path)
    return removed


def generate_synthetic(root: str | os.PathLike, spec_or_profile: SyntheticSpec | StudySpec | str = "cpu",
                       progress: bool = False, workers: int = 1) -> Path:
    """Generate the synthetic benchmark into ``root`` (PASCAL VOC layout) unless it is there.

    ``root/meta.json`` marks a complete dataset: with the same spec and generator version this
    returns at once; with another it raises :class:`DatasetError`.  The tree is written into a
    temporary sibling directory ``.<name>.<pid>.tmp`` and renamed into place at the end; such
    siblings left by a killed generator (whose pid runs no process) are removed first
    (:func:`remove_stale_tmp`).  ``workers > 1`` renders with
    a process pool (the files are the same).  Returns ``Path(root)``.
    """
    spec = _resolve_spec(spec_or_profile)
    root = Path(root)
    remove_stale_tmp(root)
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
        _write_tree(spec, tmp, meta, progress, workers)
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
