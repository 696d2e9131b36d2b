"""Readers for Cityscapes (fine annotations) and GTA5 (Playing for Data), on the 19 Cityscapes train ids.

Both readers follow the protocol of :class:`aafcore.datasets.base.LabelledImages`: ``ds[i]`` is a dict
``"image"`` float32 ``[3, H, W]`` (normalised with :func:`aafcore.datasets.base.normalize`), ``"label"``
int64 ``[H, W]`` (train ids 0..18, 255 = ignore), ``"instance"`` int64 ``[H, W]`` (0 = none) and
``"id"`` str, then ``transform(item)`` if one is given; ``ds.load_raw(i)`` gives the decoded
``uint8`` arrays.  Bad input raises :class:`aafcore.datasets.base.DatasetError` (a ``ValueError``) with a
one-line message naming the offending file or value.

Labels
------
:data:`CITYSCAPES_LABELS` is the label table of cityscapesScripts (``helpers/labels.py``): 35
labels, each with a *label id* (what the annotation PNGs store, 0..33, and -1 for "license
plate") and a *train id* (0..18 for the 19 evaluated classes, 255 or -1 for the others).
:func:`id_to_train_id_lut` maps label ids to train ids; train ids 255 and -1, and every value that
is not a label id of the table (34..255), become 255 (ignore).  :data:`CITYSCAPES_CLASSES` names
the 19 train ids in order, :func:`cityscapes_palette` gives their colours.

Cityscapes layout (:class:`CityscapesDataset`)
----------------------------------------------
::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png      RGB picture
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png       8-bit 'L': label ids
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_instanceIds.png    16-bit greyscale
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_color.png          colours (not read)
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_polygons.json      polygons (not read)

with ``split`` in train / val / test (fine annotations only; the test labels hold no classes).
The id of an image is its file name without ``_leftImg8bit.png`` (``frankfurt_000000_000294``);
images are ordered by city, then file name; other files in the city directories are skipped.
An instanceIds pixel is ``label_id * 1000 + k`` (k = 0, 1, ... per object) on a thing with its
own instance, and the plain label id elsewhere (stuff, and crowds of things such as a "car
group").  The reader keeps that raw value as the instance id where it is >= 1000 (unique per
object within an image, the class readable from it) and 0 elsewhere: ids are *not* renumbered
1..n.  Things of ignored classes (caravan, trailer) keep their instance ids under label 255.

GTA5 layout (:class:`GTA5Dataset`)
----------------------------------
::

    root/images/00001.png ...    RGB picture (1914 x 1052 in the release)
    root/labels/00001.png ...    label ids (same file name)

The release stores the labels as palette ('P') PNGs whose indices are Cityscapes *label ids* (the
palette only colours them); greyscale ('L') id PNGs are read the same way; colour (RGB/RGBA)
labels are rejected.  Splits: ``"all"`` is every ``*.png`` in ``images/``, sorted by name;
``"part1"`` is "Part 1" of the release, the images numbered 1..2500 (``00001.png`` ..
``02500.png``): on the complete release that is the first 2,500 of the sorted list, in a partial
tree it is exactly the images whose name is a number <= 2500 (names that are not numbers are never
in part1).  Every image must have its label (else a :class:`DatasetError` names the missing file).
A few release images differ in size from their label by some pixels; the reader resizes the
*image* (bilinear) to the label's size instead of failing, so the labels are never resampled.
GTA5 has no instances: ``instance`` is all zeros and ``has_instances`` is ``False``.

Fixtures in these exact on-disk formats are written by :func:`aafcore.testing.write_cityscapes_fixture`
and :func:`aafcore.testing.write_gta5_fixture`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from aafcore.datasets.base import IGNORE_INDEX, DatasetError, LabelledImages, check_split_id, open_image
from aafcore.errors import one_line

__all__ = [
    "CityscapesLabel",
    "CITYSCAPES_LABELS",
    "CITYSCAPES_CLASSES",
    "cityscapes_palette",
    "id_to_train_id_lut",
    "map_label_ids",
    "CityscapesDataset",
    "GTA5Dataset",
    "NUM_TRAIN_IDS",
    "CITYSCAPES_SPLITS",
    "CITYSCAPES_IMAGE_SUFFIX",
    "GTA5_SPLITS",
    "GTA5_PART1_LAST",
]


# --------------------------------------------------------------------------- label table


class CityscapesLabel(NamedTuple):
    """One label of the Cityscapes table; the field names are those of cityscapesScripts."""

    name: str
    id: int  # value in the *_labelIds.png annotations (-1: license plate, never stored)
    trainId: int  # 0..18 for the evaluated classes, 255 or -1 otherwise
    category: str
    categoryId: int
    hasInstances: bool
    ignoreInEval: bool
    color: tuple[int, int, int]


_L = CityscapesLabel
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    #  name                    id  trainId  category        catId  hasInst ignoreInEval  color
    _L("unlabeled",             0,  255,    "void",          0,    False,  True,   (0, 0, 0)),
    _L("ego vehicle",           1,  255,    "void",          0,    False,  True,   (0, 0, 0)),
    _L("rectification border",  2,  255,    "void",          0,    False,  True,   (0, 0, 0)),
    _L("out of roi",            3,  255,    "void",          0,    False,  True,   (0, 0, 0)),
    _L("static",                4,  255,    "void",          0,    False,  True,   (0, 0, 0)),
    _L("dynamic",               5,  255,    "void",          0,    False,  True,   (111, 74, 0)),
    _L("ground",                6,  255,    "void",          0,    False,  True,   (81, 0, 81)),
    _L("road",                  7,  0,      "flat",          1,    False,  False,  (128, 64, 128)),
    _L("sidewalk",              8,  1,      "flat",          1,    False,  False,  (244, 35, 232)),
    _L("parking",               9,  255,    "flat",          1,    False,  True,   (250, 170, 160)),
    _L("rail track",            10, 255,    "flat",          1,    False,  True,   (230, 150, 140)),
    _L("building",              11, 2,      "construction",  2,    False,  False,  (70, 70, 70)),
    _L("wall",                  12, 3,      "construction",  2,    False,  False,  (102, 102, 156)),
    _L("fence",                 13, 4,      "construction",  2,    False,  False,  (190, 153, 153)),
    _L("guard rail",            14, 255,    "construction",  2,    False,  True,   (180, 165, 180)),
    _L("bridge",                15, 255,    "construction",  2,    False,  True,   (150, 100, 100)),
    _L("tunnel",                16, 255,    "construction",  2,    False,  True,   (150, 120, 90)),
    _L("pole",                  17, 5,      "object",        3,    False,  False,  (153, 153, 153)),
    _L("polegroup",             18, 255,    "object",        3,    False,  True,   (153, 153, 153)),
    _L("traffic light",         19, 6,      "object",        3,    False,  False,  (250, 170, 30)),
    _L("traffic sign",          20, 7,      "object",        3,    False,  False,  (220, 220, 0)),
    _L("vegetation",            21, 8,      "nature",        4,    False,  False,  (107, 142, 35)),
    _L("terrain",               22, 9,      "nature",        4,    False,  False,  (152, 251, 152)),
    _L("sky",                   23, 10,     "sky",           5,    False,  False,  (70, 130, 180)),
    _L("person",                24, 11,     "human",         6,    True,   False,  (220, 20, 60)),
    _L("rider",                 25, 12,     "human",         6,    True,   False,  (255, 0, 0)),
    _L("car",                   26, 13,     "vehicle",       7,    True,   False,  (0, 0, 142)),
    _L("truck",                 27, 14,     "vehicle",       7,    True,   False,  (0, 0, 70)),
    _L("bus",                   28, 15,     "vehicle",       7,    True,   False,  (0, 60, 100)),
    _L("caravan",               29, 255,    "vehicle",       7,    True,   True,   (0, 0, 90)),
    _L("trailer",               30, 255,    "vehicle",       7,    True,   True,   (0, 0, 110)),
    _L("train",                 31, 16,     "vehicle",       7,    True,   False,  (0, 80, 100)),
    _L("motorcycle",            32, 17,     "vehicle",       7,    True,   False,  (0, 0, 230)),
    _L("bicycle",               33, 18,     "vehicle",       7,    True,   False,  (119, 11, 32)),
    _L("license plate",         -1, -1,     "vehicle",       7,    False,  True,   (0, 0, 142)),
)
del _L

NUM_TRAIN_IDS = 19
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted(CITYSCAPES_LABELS, key=lambda lab: lab.trainId)
    if 0 <= lab.trainId < NUM_TRAIN_IDS)


def cityscapes_palette() -> np.ndarray:
    """Label palette ``uint8 [256, 3]``: the colours of the 19 train ids, every other entry 0."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for lab in CITYSCAPES_LABELS:
        if 0 <= lab.trainId < NUM_TRAIN_IDS:
            pal[lab.trainId] = lab.color
    return pal


def id_to_train_id_lut() -> np.ndarray:
    """Lookup ``uint8 [256]``: label id -> train id; 255 for train ids 255 / -1 and unknown ids."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lab in CITYSCAPES_LABELS:
        if 0 <= lab.id < 256 and 0 <= lab.trainId < NUM_TRAIN_IDS:
            lut[lab.id] = lab.trainId
    return lut


_LUT = id_to_train_id_lut()
_LUT.flags.writeable = False


def map_label_ids(ids: np.ndarray) -> np.ndarray:
    """Label ids (any integer array, shape kept) -> train ids ``uint8`` of the same shape.

    Values outside 0..255 (such as -1, license plate) map to 255 like every unknown id.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise DatasetError(f"label ids must be an integer array, got dtype {ids.dtype}")
    if ids.dtype == np.uint8:
        return _LUT[ids]
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.uint8)
    inside = (ids >= 0) & (ids < 256)
    out[inside] = _LUT[ids[inside].astype(np.int64)]
    return out


# --------------------------------------------------------------------------- file reading


def _open_png(path: Path, modes: tuple[str, ...], what: str) -> Image.Image:
    """The decoded PIL image at ``path``; a mode outside ``modes``, an unreadable file and an image
    over ``MAX_IMAGE_PIXELS`` (checked from the header, before decoding) are a :class:`DatasetError`."""
    im = open_image(path)
    if im.mode not in modes:
        raise DatasetError(f"{path}: expected {what}, got PIL mode {im.mode!r}")
    return im


_RGB_MODES = ("RGB", "RGBA", "L", "P", "LA", "PA")
_ID_MODES = ("L", "P")
_ID_WHAT = "an 8-bit greyscale ('L') or palette ('P') PNG of label ids"


def _read_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``uint8 [H, W, 3]`` picture; resized bilinearly to ``size = (H, W)`` when that differs."""
    im = _open_png(path, _RGB_MODES, "a picture").convert("RGB")
    if size is not None and (im.height, im.width) != tuple(size):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.array(im, dtype=np.uint8)


# --------------------------------------------------------------------------- datasets


def _check_split(split: object, valid: tuple[str, ...], dataset: str) -> None:
    """A split is one of ``valid`` (they name folders: ``../x`` is refused before any file is read)."""
    if not isinstance(split, str) or split not in valid:
        raise DatasetError(f"unknown {dataset} split {split!r}; choose from {', '.join(valid)}")


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")


CITYSCAPES_SPLITS = ("train", "val", "test")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
_INSTANCE_MODES = ("I;16", "I;16B", "I;16L", "I")


class CityscapesDataset(LabelledImages):
    """Cityscapes with its fine annotations, labels mapped to the 19 train ids (module docstring).

    ``split`` in train / val / test.  The image/annotation pairs are enumerated with
    ``torchvision.datasets.Cityscapes`` (mode ``"fine"``, semantic and instance targets), sorted by
    path, and each listed file is checked to exist.  ``load_raw(i)`` -> ``(image uint8 [H, W, 3],
    label uint8 [H, W] train ids, instance int64 [H, W])`` with instance = the raw instanceIds value
    where it is >= 1000, else 0; ``cache=True`` keeps those arrays in memory.
    """

    has_instances = True

    def __init__(self, root: str | os.PathLike, split: str, transform: Callable | None = None,
                 cache: bool = False):
        _check_split(split, CITYSCAPES_SPLITS, "Cityscapes")
        super().__init__(root, split, CITYSCAPES_CLASSES, transform, cache, cityscapes_palette())
        _require_dir(self.root, "Cityscapes root directory")
        for sub in ("leftImg8bit", "gtFine"):
            _require_dir(self.root / sub, f"Cityscapes {sub} directory")
            _require_dir(self.root / sub / split, f"Cityscapes {sub} directory of split {split!r}")
        pairs = self._enumerate()
        if not pairs:
            raise DatasetError(f"no *{CITYSCAPES_IMAGE_SUFFIX} images under {self.root / 'leftImg8bit' / split}")
        for image_path, label_path, instance_path in pairs:
            for path, what in ((label_path, "labelIds"), (instance_path, "instanceIds")):
                if not path.is_file():
                    raise DatasetError(f"{what} file of image {image_path} not found: {path}")
        self._files = pairs
        self.ids = [check_split_id(p.name[: -len(CITYSCAPES_IMAGE_SUFFIX)], f"image {p}") for p, _, _ in pairs]

    def _enumerate(self) -> list[tuple[Path, Path, Path]]:
        """``(image, labelIds, instanceIds)`` paths of the split, sorted (torchvision lists them)."""
        from torchvision.datasets import Cityscapes  # here: importing this module stays light

        try:
            tv = Cityscapes(str(self.root), split=self.split, mode="fine",
                            target_type=["semantic", "instance"])
        except (OSError, RuntimeError, ValueError) as err:
            raise DatasetError(f"cannot list Cityscapes split {self.split!r} under {self.root}: "
                               f"{one_line(err)}") from None
        pairs = [(Path(img), Path(sem), Path(inst)) for img, (sem, inst) in zip(tv.images, tv.targets)
                 if img.endswith(CITYSCAPES_IMAGE_SUFFIX)]
        return sorted(pairs)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img_path, lbl_path, inst_path = self._files[index]
        image = _read_rgb(img_path)
        ids = np.array(_open_png(lbl_path, _ID_MODES, _ID_WHAT), dtype=np.uint8)
        if ids.shape != image.shape[:2]:
            raise DatasetError(f"image {img_path} is {image.shape[1]}x{image.shape[0]} but label "
                               f"{lbl_path} is {ids.shape[1]}x{ids.shape[0]}")
        raw = np.array(_open_png(inst_path, _INSTANCE_MODES, "a 16-bit greyscale PNG of instance ids"))
        if raw.shape != ids.shape:
            raise DatasetError(f"instance map {inst_path} is {raw.shape[1]}x{raw.shape[0]} but label "
                               f"{lbl_path} is {ids.shape[1]}x{ids.shape[0]}")
        raw = raw.astype(np.int64)
        instance = np.where(raw >= 1000, raw, 0)
        return image, map_label_ids(ids), instance


GTA5_SPLITS = ("all", "part1")
GTA5_PART1_LAST = 2500


def _part1_number(stem: str) -> bool:
    """Whether a GTA5 file name (without ``.png``) is a number in 1..2500, i.e. in Part 1."""
    return stem.isascii() and stem.isdigit() and 1 <= int(stem) <= GTA5_PART1_LAST


class GTA5Dataset(LabelledImages):
    """GTA5 (Playing for Data), label ids mapped to the 19 Cityscapes train ids (module docstring).

    ``split``: ``"all"`` (every image in ``images/``, sorted by name) or ``"part1"`` (the images
    numbered 1..2500).  ``load_raw(i)`` -> ``(image uint8 [H, W, 3], label uint8 [H, W] train ids,
    instance int64 [H, W] zeros)`` with ``[H, W]`` the *label's* size: an image of another size is
    resized bilinearly to it.  ``cache=True`` keeps those arrays in memory.
    """

    has_instances = False

    def __init__(self, root: str | os.PathLike, split: str = "all", transform: Callable | None = None,
                 cache: bool = False):
        _check_split(split, GTA5_SPLITS, "GTA5")
        super().__init__(root, split, CITYSCAPES_CLASSES, transform, cache, cityscapes_palette())
        _require_dir(self.root, "GTA5 root directory")
        image_dir, label_dir = self.root / "images", self.root / "labels"
        _require_dir(image_dir, "GTA5 images directory")
        _require_dir(label_dir, "GTA5 labels directory")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if split == "part1":
            images = [p for p in images if _part1_number(p.stem)]
        if not images:
            raise DatasetError(f"no *.png images of split {split!r} in {image_dir}")
        self._files = []
        for image_path in images:
            label_path = label_dir / image_path.name
            if not label_path.is_file():
                raise DatasetError(f"label of image {image_path} not found: {label_path}")
            self._files.append((image_path, label_path))
        self.ids = [check_split_id(p.stem, f"image {p}") for p in images]

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img_path, lbl_path = self._files[index]
        ids = np.array(_open_png(lbl_path, _ID_MODES, _ID_WHAT + " (colour labels are not read)"),
                       dtype=np.uint8)
        image = _read_rgb(img_path, size=ids.shape)
        return image, map_label_ids(ids), np.zeros(ids.shape, dtype=np.int64)
