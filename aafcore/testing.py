"""Fixture writers: small trees of PASCAL VOC 2012 + SBD, Cityscapes and GTA5 in their real formats.

No dataset can be downloaded where the tests run, so :func:`write_voc_fixture`,
:func:`write_cityscapes_fixture` and :func:`write_gta5_fixture` write a few seeded images in each
dataset's exact on-disk layout (see :mod:`aafcore.datasets.voc` and
:mod:`aafcore.datasets.cityscapes`), for the readers' tests and for outside checks.  Same
arguments, same files (``.mat`` files carry scipy's creation time in their header).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aafcore.datasets.base import IGNORE_INDEX, voc_colormap
from aafcore.datasets.cityscapes import CITYSCAPES_IMAGE_SUFFIX, CITYSCAPES_LABELS, CITYSCAPES_SPLITS
from aafcore.datasets.voc import VOC_CLASSES

__all__ = ["write_voc_fixture", "write_cityscapes_fixture", "write_gta5_fixture", "GTA5_LABEL_MODES",
           "write_blank_png"]


# --------------------------------------------------------------------------- PASCAL VOC 2012 + SBD


def _voc_scene(rng: np.random.Generator, size: tuple[int, int], void: int = 2):
    """A background with 2-3 objects: class map (void bands of ``void`` px, 255) and instance map."""
    h, w = size
    label = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, int(rng.integers(2, 4)) + 1):
        cls = int(rng.integers(1, len(VOC_CLASSES)))
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if cls == 9:  # a chair with a thin leg, the paper's kind of thin structure
            mask |= (np.abs(xx - cx) < 1) & (yy > cy) & (yy < cy + 1.6 * ry)
        label[mask], inst[mask] = cls, k
    edge = np.zeros((h, w), bool)
    edge[:-1] |= label[:-1] != label[1:]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    band = edge.copy()
    for _ in range(void - 1):  # grow the edge into a band, as VOC's annotators drew it
        grown = band.copy()
        grown[1:] |= band[:-1]
        grown[:-1] |= band[1:]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    return label, inst, band


def _picture(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    colours = rng.integers(0, 256, (256, 3))
    return np.clip(colours[label] + rng.normal(0, 12, label.shape + (3,)), 0, 255).astype(np.uint8)


def _palette_png(arr: np.ndarray, path: Path) -> None:
    im = Image.fromarray(arr, mode="P")
    im.putpalette(voc_colormap().reshape(-1).tolist())
    im.save(path)


def _save_sbd(path: Path, key: str, seg: np.ndarray, categories: np.ndarray) -> None:
    from scipy import sparse
    from scipy.io import savemat

    boundaries = np.empty((len(VOC_CLASSES) - 1 if key == "GTcls" else len(categories), 1), dtype=object)
    for i in range(boundaries.shape[0]):
        boundaries[i, 0] = sparse.csc_matrix(seg.shape, dtype=np.float64) != 0
    fields = {"Segmentation": seg, "Boundaries": boundaries}
    fields["CategoriesPresent" if key == "GTcls" else "Categories"] = categories.astype(np.uint8).reshape(-1, 1)
    savemat(path, {key: fields})


def write_voc_fixture(root: str | os.PathLike, voc_train: Sequence[str] = ("2007_000032", "2007_000039"),
                      voc_val: Sequence[str] = ("2007_000033", "2007_000042"),
                      sbd_train: Sequence[str] = ("2008_000002", "2007_000039", "2007_000033"),
                      sbd_val: Sequence[str] = ("2008_000003",), size: tuple[int, int] = (60, 80),
                      seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write VOC 2012 and SBD trees in their real formats under ``root`` (test fixture).

    VOC ids get a JPEG, palette PNG class and object maps with 255 void bands, and the split
    lists; SBD ids get a JPEG and ``GTcls`` / ``GTinst`` ``.mat`` structs (``scipy.io.savemat``;
    no void band, as in SBD).  An id in both (``2007_000039``) gets slightly different VOC and
    SBD annotations, so a test can tell which one was read.  Returns ``{id: {"voc_label",
    "voc_instance", "sbd_label", "sbd_instance"}}`` (the arrays written; absent keys = none).
    """
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "SegmentationObject",
              voc / "ImageSets" / "Segmentation", sbd / "img", sbd / "cls", sbd / "inst"):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, np.ndarray]] = {}
    for ident in dict.fromkeys([*voc_train, *voc_val, *sbd_train, *sbd_val]):
        label, inst, band = _voc_scene(rng, size)
        Image.fromarray(_picture(rng, label)).save(voc / "JPEGImages" / f"{ident}.jpg", quality=95)
        entry = truth.setdefault(ident, {})
        if ident in voc_train or ident in voc_val:
            voc_label, voc_inst = label.copy(), inst.copy()
            voc_label[band], voc_inst[band] = IGNORE_INDEX, IGNORE_INDEX
            _palette_png(voc_label, voc / "SegmentationClass" / f"{ident}.png")
            _palette_png(voc_inst, voc / "SegmentationObject" / f"{ident}.png")
            entry.update(voc_label=voc_label, voc_instance=np.where(voc_inst == 255, 0, voc_inst))
        if ident in sbd_train or ident in sbd_val:
            Image.open(voc / "JPEGImages" / f"{ident}.jpg").save(sbd / "img" / f"{ident}.jpg", quality=95)
            cats = np.unique(label[label > 0])
            _save_sbd(sbd / "cls" / f"{ident}.mat", "GTcls", label, cats)
            _save_sbd(sbd / "inst" / f"{ident}.mat", "GTinst", inst, np.array([label[inst == k][0]
                                                                             for k in np.unique(inst[inst > 0])]))
            entry.update(sbd_label=label, sbd_instance=inst)
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in voc_train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in voc_val))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in [*voc_train, *voc_val]))
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_train))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_val))
    return truth


# --------------------------------------------------------------------------- Cityscapes and GTA5

_LABEL_BY_NAME = {lab.name: lab for lab in CITYSCAPES_LABELS}


class _Street:
    """The canvas of :func:`_paint_street`: label ids ``uint8 [H, W]``, instance values ``uint16
    [H, W]``, the painted boxes in order, and the generator every random box is drawn from."""

    def __init__(self, size: tuple[int, int], rng: np.random.Generator):
        self.h, self.w = size
        self.rng = rng
        self.ids = np.zeros((self.h, self.w), np.uint8)
        self.obj = np.zeros((self.h, self.w), np.uint16)
        self.objects: list = []
        self.counters: dict[int, int] = {}

    def box(self, y_range: tuple[int, int], x_range: tuple[int, int], hh: int, ww: int) -> tuple[int, ...]:
        """A random ``hh x ww`` box ``(y0, y1, x0, x1)``, top-left corner in the ranges, clipped."""
        y0, x0 = int(self.rng.integers(*y_range)), int(self.rng.integers(*x_range))
        return max(y0, 0), min(y0 + hh, self.h), max(x0, 0), min(x0 + ww, self.w)

    def paint(self, name: str, rect: tuple[int, ...], instance: bool | int = False) -> int:
        """Draw ``rect``; ``instance``: False (none), True (a new object) or an object's value."""
        y0, y1, x0, x1 = rect
        lab = _LABEL_BY_NAME[name]
        if instance is True:
            k = self.counters.get(lab.id, 0)
            self.counters[lab.id] = k + 1
            instance = lab.id * 1000 + k
        self.ids[y0:y1, x0:x1] = lab.id
        self.obj[y0:y1, x0:x1] = int(instance)
        self.objects.append((name, rect))
        return int(instance)


def _paint_scenery(st: _Street) -> int:
    """Sky, road, sidewalk, buildings (and a wall) on the horizon, vegetation, terrain, parking and
    a 1 px fence; returns the horizon row."""
    h, w, rng, paint, box = st.h, st.w, st.rng, st.paint, st.box
    horizon = h * 2 // 5 + int(rng.integers(-2, 3))
    paint("sky", (0, horizon, 0, w))
    paint("road", (horizon, h, 0, w))
    paint("sidewalk", (horizon, horizon + h // 8, 0, w))
    x = 0
    while x < w:  # buildings (and a wall) standing on the horizon
        bw = int(rng.integers(w // 8, w // 4))
        top = int(rng.integers(h // 10, horizon - 2))
        paint("wall" if rng.random() < 0.2 else "building", (top, horizon, x, min(x + bw, w)))
        x += bw + int(rng.integers(0, 4))
    paint("vegetation", box((horizon - h // 6, horizon - h // 10), (0, w - w // 5), h // 6, w // 5))
    paint("terrain", box((horizon + h // 8, horizon + h // 6), (0, w // 2), h // 12 + 1, w // 6))
    paint("parking", box((h - h // 4, h - h // 6), (w // 2, w - w // 6), h // 12 + 1, w // 8))
    paint("fence", (horizon - 3, horizon - 2, w // 3, w // 3 + w // 5))
    return horizon


def _paint_things(st: _Street, horizon: int) -> None:
    """Thin poles with a sign and a light, a pole group, a car group (a crowd), cars, a caravan and
    persons (2 px body and a head, one instance)."""
    h, w, rng, paint, box = st.h, st.w, st.rng, st.paint, st.box
    for j in range(3):  # thin poles, one carrying a sign, one a traffic light
        px = int(rng.integers(4 + j * (w - 8) // 3, 4 + (j + 1) * (w - 8) // 3 - 2))
        top = int(rng.integers(h // 8, horizon - 4))
        paint("pole", (top, horizon + h // 8, px, px + 1 + j % 2))
        if j < 2:
            paint("traffic sign" if j == 0 else "traffic light", (top, top + 3, px - 1, px + 3))
    paint("polegroup", box((horizon - 6, horizon - 4), (w // 2, w - 4), 5, 2))
    paint("car", box((horizon + 1, horizon + 3), (0, w // 4), h // 10 + 1, w // 8), instance=False)
    for _ in range(2 + int(rng.integers(0, 2))):
        paint("car", box((horizon + h // 10, h - h // 4), (0, w - w // 6), h // 6, w // 6), instance=True)
    paint("caravan", box((horizon, horizon + h // 8), (w // 2, w - w // 6), h // 8, w // 7), instance=True)
    for _ in range(2 + int(rng.integers(0, 2))):
        y0, y1, x0, x1 = box((horizon - h // 10, h - h // 3), (2, w - 6), h // 4, 2)
        person = paint("person", (y0, y1, x0, x1), instance=True)  # 2 px body
        paint("person", (max(y0 - 3, 0), y0, x0 - 1, x1 + 1), instance=person)  # head, same object


def _paint_street(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list]:
    """A small street scene: ``(label ids uint8 [H, W], instanceIds uint16 [H, W], objects)``.

    ``objects`` lists ``(label name, (y0, y1, x0, x1))`` boxes in drawing order (later on top).
    Void ids line the borders (0 top row, 1 ego vehicle at the bottom, 4 static left, 3 out of roi
    right); thin poles (id 17) are 1-2 px wide; persons (24), cars (26) and a caravan (29) are
    things with instances (``id * 1000 + k``); a car group (26 without an instance) is a crowd.
    """
    st = _Street(size, rng)
    _paint_things(st, _paint_scenery(st))
    h, w = st.h, st.w
    # void borders, drawn last
    st.paint("unlabeled", (0, 1, 0, w))
    st.paint("ego vehicle", (h - max(2, h // 16), h, 0, w))
    st.paint("static", (0, h, 0, 2))
    st.paint("out of roi", (0, h, w - 2, w))
    instance_ids = np.where(st.obj > 0, st.obj, st.ids.astype(np.uint16)).astype(np.uint16)
    return st.ids, instance_ids, st.objects


def _id_colour_table() -> np.ndarray:
    """``uint8 [256, 3]``: index = label id, colour = its Cityscapes colour (the annotation palette)."""
    pal = np.zeros((256, 3), np.uint8)
    for lab in CITYSCAPES_LABELS:
        if lab.id >= 0:
            pal[lab.id] = lab.color
    return pal


def _colour_picture(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [H, W, 3]``: the label colours of ``ids`` plus noise (a stand-in photograph)."""
    picture = _id_colour_table()[ids].astype(np.float32) + rng.normal(0, 12, size=ids.shape + (3,))
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h < 32 or w < 32:
        raise ValueError(f"fixture size must be at least 32x32 (H, W), got {tuple(size)}")
    return h, w


_FIXTURE_CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt", "lindau"), "test": ("berlin", "bonn")}


def write_cityscapes_fixture(root: str | os.PathLike, splits: Mapping[str, int] | None = None,
                             size: tuple[int, int] = (64, 128), seed: int = 0) -> Path:
    """Write a small Cityscapes tree (fine annotations) under ``root`` and return ``root``.

    ``splits``: images per split (default ``{"train": 2, "val": 2}``), spread over two cities per
    split (image ``i`` in city ``i % 2``, named ``{city}_{i // 2:06d}_000019``).  ``size = (H, W)``.
    Per image: ``leftImg8bit`` RGB PNG, ``gtFine_labelIds`` 8-bit 'L' PNG, ``gtFine_instanceIds``
    16-bit PNG, ``gtFine_color`` RGBA PNG and ``gtFine_polygons.json`` (boxes as polygons), drawn by
    a seeded street painter (void borders, 1-2 px poles, persons and cars with instances, a car
    group without).  Same arguments, same files.
    """
    root = Path(root)
    splits = {"train": 2, "val": 2} if splits is None else dict(splits)
    h, w = _check_size(size)
    for s, (split, n) in enumerate(splits.items()):
        if split not in CITYSCAPES_SPLITS or int(n) < 0:
            raise ValueError(f"fixture splits must map train/val/test to counts >= 0, got {split!r}: {n!r}")
        for i in range(int(n)):
            city = _FIXTURE_CITIES[split][i % 2]
            stem = f"{city}_{i // 2:06d}_000019"
            rng = np.random.default_rng((seed, s, i))
            ids, instance_ids, objects = _paint_street((h, w), rng)
            img_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_colour_picture(ids, rng), "RGB").save(img_dir / f"{stem}{CITYSCAPES_IMAGE_SUFFIX}")
            Image.fromarray(ids, "L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(instance_ids).save(gt_dir / f"{stem}_gtFine_instanceIds.png")  # 'I;16'
            colour = Image.fromarray(ids, "P")
            colour.putpalette(_id_colour_table().reshape(-1).tolist())
            colour.convert("RGBA").save(gt_dir / f"{stem}_gtFine_color.png")
            polygons = {"imgHeight": h, "imgWidth": w, "objects": [
                {"label": name, "polygon": [[x0, y0], [x1 - 1, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]]}
                for name, (y0, y1, x0, x1) in objects if y1 > y0 and x1 > x0]}
            (gt_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(polygons, indent=1))
    return root


GTA5_LABEL_MODES = ("P", "L", "RGB")


def write_gta5_fixture(root: str | os.PathLike, n: int = 4, size: tuple[int, int] = (52, 94), seed: int = 0,
                       mode: str = "P", extra_ids: Iterable[int] = ()) -> Path:
    """Write a small GTA5 tree (``images/`` and ``labels/``) under ``root`` and return ``root``.

    Files ``00001.png`` .. ``{n:05d}.png`` plus one per number in ``extra_ids`` (e.g. 2501, to
    tell part1 from all).  Labels hold Cityscapes label ids: ``mode="P"`` palette PNGs as in the
    release (indices = ids, palette = the label colours), ``"L"`` greyscale id PNGs, ``"RGB"``
    colour labels (which the reader rejects).  Each label also has a patch of id 34 (not a
    Cityscapes label, read as ignore).  The image of ``00002`` is 2 px taller than its label
    (``size = (H, W)`` is the label's size).  Same arguments, same files.
    """
    if mode not in GTA5_LABEL_MODES:
        raise ValueError(f"mode must be one of {', '.join(GTA5_LABEL_MODES)}, got {mode!r}")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    root = Path(root)
    h, w = _check_size(size)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for number in [*range(1, int(n) + 1), *(int(v) for v in extra_ids)]:
        rng = np.random.default_rng((seed, number))
        ids, _, _ = _paint_street((h, w), rng)
        y0, x0 = h // 2, w // 2
        ids[y0:y0 + 3, x0:x0 + 3] = 34
        picture = _colour_picture(ids, rng)
        if number == 2:
            picture = np.concatenate([picture, picture[-2:]], axis=0)
        name = f"{number:05d}.png"
        Image.fromarray(picture, "RGB").save(root / "images" / name)
        if mode == "L":
            label = Image.fromarray(ids, "L")
        else:
            label = Image.fromarray(ids, "P")
            label.putpalette(_id_colour_table().reshape(-1).tolist())
            if mode == "RGB":
                label = label.convert("RGB")
        label.save(root / "labels" / name)
    return root


# --------------------------------------------------------------------------- oversized images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_blank_png(path: str | os.PathLike, width: int, height: int) -> Path:
    """Write an all-zero palette ('P') PNG of ``width x height`` to ``path`` and return the path.

    The rows are 1-bit and compressed as a stream, so a 12000x12000 image takes a few KB on disk,
    about 20 ms and no picture in memory (PIL would build 144 MB first): the fixture of the readers'
    size limit (:data:`aafcore.datasets.base.MAX_IMAGE_PIXELS`).
    """
    path = Path(path)
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"width and height must be >= 1, got {width}x{height}")
    row = bytes(1 + (int(width) + 7) // 8)  # filter byte 0 and the 1-bit pixels, all zero
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(int(height))) + packer.flush()
    header = struct.pack(">IIBBBBB", int(width), int(height), 1, 3, 0, 0, 0)  # bit depth 1, colour type 3
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"PLTE", bytes(3) + bytes((255, 255, 255))) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path
