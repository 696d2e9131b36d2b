"""The PASCAL-VOC-layout reader, PASCAL VOC 2012 (``"voc"``) and VOC 2012 + SBD (``"voc_aug"``).

:class:`VOCLayoutDataset` reads any tree in the PASCAL VOC layout (the synthetic benchmark is
written in it too); :func:`voc_root` finds VOC 2012 under a download directory.

The paper trains its VOC models on *train_aug* (10,582 images) and validates on VOC's *val*
(1,449 images).  *train_aug* is the union of the SBD train and val lists and VOC train, minus
VOC val (the list of DeepLab and of the authors' ``dataset/voc12/train+.txt``, which is shipped
as ``aafcore/splits/voc_train_aug.txt`` together with VOC's ``voc_train.txt`` / ``voc_val.txt``).

On-disk layout (``root`` is the directory that holds both downloads)::

    root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/<id>.png     palette PNG: class 0..20, 255 = void band
    root/VOCdevkit/VOC2012/SegmentationObject/<id>.png    palette PNG: instance 1..n, 0 none, 255 void
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    root/benchmark_RELEASE/dataset/{img/<id>.jpg, cls/<id>.mat, inst/<id>.mat, train.txt, val.txt}

(SBD may also sit in ``root/SBD/dataset``, ``root/SBD`` or ``root/sbd``.)  SBD's ``cls/<id>.mat``
holds a MATLAB struct ``GTcls`` whose ``Segmentation`` field is the class map (0..20, no void
band); ``inst/<id>.mat`` holds ``GTinst`` whose ``Segmentation`` is the instance map (1..n).
Both are read with ``scipy.io.loadmat``.

Choices (written in the book's implementation notes):

* The *train_aug* split is derived from the lists on disk by the rule above, so a partial tree
  (a test fixture) works too; on the complete downloads it is the shipped 10,582-image list, and
  :class:`VOCAugDataset` warns when the two disagree.
* An id with a VOC annotation (``SegmentationClass/<id>.png``) uses it (it has the 255 void
  bands that the evaluation ignores); the others use SBD's ``.mat`` annotation.  Instances follow
  the same rule (``SegmentationObject`` / ``inst``); an SBD id without ``inst/<id>.mat`` has
  none (all zeros), since training reads only the class maps.  Images come from ``JPEGImages`` (SBD's
  ``img/`` holds the same pictures) and from SBD's ``img/`` when VOC lacks one.
* Splits ``train`` / ``val`` / ``trainval`` are VOC's own lists (``ImageSets/Segmentation``).

Fixture trees of both formats are written by :func:`aafcore.testing.write_voc_fixture`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aafcore.datasets.base import (IGNORE_INDEX, DatasetError, LabelledImages, check_image_size, check_split_id,
                                   check_split_name, open_image, voc_colormap)
from aafcore.errors import one_line

__all__ = ["VOC_CLASSES", "VOCLayoutDataset", "voc_root", "SPLITS_DIR", "VOC_AUG_SPLITS", "read_split_list",
           "read_sbd_mat", "sbd_root", "train_aug_ids", "VOCAugDataset"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")

SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"
VOC_AUG_SPLITS = ("train_aug", "train", "val", "trainval")


# --------------------------------------------------------------------------- files


def read_split_list(path: str | os.PathLike) -> list[str]:
    """The ids of a split file, one per line (blank lines skipped).

    A :class:`DatasetError` if the file is missing, unreadable or lists nothing, or when an id is
    not a plain name (``../x``, ``a/b``, ``..``): the message names the file, the line and the id.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read split file {path}: {one_line(err)}") from None
    ids = [check_split_id(line.strip(), f"split file {path}, line {number}")
           for number, line in enumerate(lines, 1) if line.strip()]
    if not ids:
        raise DatasetError(f"split file {path} lists no images")
    return ids


# What scipy.io.loadmat (scipy 1.17) was seen to raise on truncated, garbage and bit-flipped files:
# MatReadError (empty or a few bytes), IndexError (random bytes under 128), TypeError
# ("buffer is too small", "Expecting miMATRIX"), OSError ("could not read bytes": a truncated body),
# ValueError (unknown version, bad sparse index), NotImplementedError (v7.3 header), OverflowError,
# ZeroDivisionError, UnicodeDecodeError and UnboundLocalError (a NameError).  The parser reads only
# this one file, so any of its exceptions means "this file is not a readable .mat".
_LOADMAT_ERRORS = (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, NameError,
                   ArithmeticError, NotImplementedError, MemoryError)


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """The ``Segmentation`` map of an SBD annotation (``GTcls`` or ``GTinst`` struct), uint8 ``[H, W]``.

    A missing, truncated or corrupt file (whatever scipy raises on it, see ``_LOADMAT_ERRORS``) and
    a struct without a 2-D map of integers 0..255 are a :class:`DatasetError` naming ``path``.
    """
    import struct

    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (*_LOADMAT_ERRORS, struct.error, MatReadError) as err:
        raise DatasetError(f"cannot read {path} (truncated or not a MATLAB file?): "
                           f"{type(err).__name__}: {one_line(err)}") from None
    for key in ("GTcls", "GTinst"):
        if key in mat:
            seg = getattr(mat[key], "Segmentation", None)
            if not isinstance(seg, np.ndarray) or seg.ndim != 2 or seg.size == 0:
                raise DatasetError(f"{path}: struct {key} has no 2-D 'Segmentation' field")
            if not (np.issubdtype(seg.dtype, np.integer) or np.issubdtype(seg.dtype, np.floating)
                    or seg.dtype == bool):
                raise DatasetError(f"{path}: 'Segmentation' holds {seg.dtype} values, not class numbers")
            check_image_size(seg.shape[::-1], path)
            if seg.min() < 0 or seg.max() > 255 or not np.array_equal(seg, np.round(seg)):
                raise DatasetError(f"{path}: 'Segmentation' values outside the integers 0..255")
            return seg.astype(np.uint8)
    raise DatasetError(f"{path}: not an SBD annotation (no GTcls or GTinst struct)")


def _open(path: Path, modes: tuple[str, ...] | None = None) -> np.ndarray:
    """A picture ``uint8 [H, W, 3]`` (``modes=None``) or an index map ``uint8 [H, W]`` of a mode in
    ``modes``; the size is checked against ``MAX_IMAGE_PIXELS`` before decoding (:func:`open_image`)."""
    im = open_image(path)
    if modes is None:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    if im.mode not in modes:
        raise DatasetError(f"{path}: expected a palette ('P') or greyscale ('L') PNG, got mode {im.mode!r}")
    return np.array(im, dtype=np.uint8)


def _read_index_map(path: Path) -> np.ndarray:
    """A label or instance map, uint8 ``[H, W]``: a palette/greyscale PNG or an SBD ``.mat``."""
    if path.suffix == ".mat":
        return read_sbd_mat(path)
    return _open(path, ("P", "L"))


def voc_root(root: str | os.PathLike) -> Path:
    """The VOC 2012 directory (the one holding ``JPEGImages/``) under ``root``, or ``root`` itself."""
    root = Path(root)
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DatasetError(f"PASCAL VOC 2012 not found under {root} "
                       f"(expected {root}/VOCdevkit/VOC2012/JPEGImages)")


# --------------------------------------------------------------------------- readers


class VOCLayoutDataset(LabelledImages):
    """Images and labels in the PASCAL VOC layout.

    ``root/JPEGImages/<id>.jpg``, ``root/SegmentationClass/<id>.png`` (palette PNG, value = class,
    255 = void), optional ``root/SegmentationObject/<id>.png`` (value = instance, 0 none, 255 void
    -> 0), and the ids in ``root/ImageSets/Segmentation/<split_file>.txt`` (or given as ``ids``).

    ``ds[i]`` -> dict ``image`` float32 [3, H, W] (normalised), ``label`` int64 [H, W],
    ``instance`` int64 [H, W] (zeros without SegmentationObject), ``id`` str; then ``transform``.
    ``cache=True`` keeps the decoded ``uint8`` arrays in memory.
    """

    def __init__(self, root: str | os.PathLike, split_file: str, class_names: Sequence[str],
                 transform: Callable | None = None, cache: bool = True, meta: dict | None = None,
                 palette: np.ndarray | None = None, ids: Sequence[str] | None = None):
        check_split_name(split_file, "VOC-layout")  # before any file is read: it names a list file
        super().__init__(root, split_file, class_names, transform, cache,
                         voc_colormap() if palette is None else palette)
        self.meta = meta
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory not found: {self.root}")
        source = f"split {split_file!r}"
        if ids is None:
            list_file = self.root / "ImageSets" / "Segmentation" / f"{split_file}.txt"
            if not list_file.is_file():
                raise DatasetError(f"split file not found: {list_file}")
            ids = read_split_list(list_file)  # every id checked to be a plain name
            source = str(list_file)
        self.ids = [check_split_id(ident, f"ids of {source}") for ident in ids]
        if not self.ids:
            raise DatasetError(f"{source} lists no images")
        self.has_instances = (self.root / "SegmentationObject").is_dir()
        for ident in self.ids:
            for path in self._paths(ident)[: 3 if self.has_instances else 2]:
                if path is not None and not path.is_file():
                    state = "is not a file" if path.exists() else "not found"
                    raise DatasetError(f"file of id {ident!r} in {source} {state}: {path}")

    def _paths(self, ident: str) -> tuple[Path, Path, Path | None]:
        """``(image, label, instance)`` paths of ``ident`` (instance None: no instance map)."""
        return (self.root / "JPEGImages" / f"{ident}.jpg", self.root / "SegmentationClass" / f"{ident}.png",
                self.root / "SegmentationObject" / f"{ident}.png")

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 [H, W, 3], label uint8 [H, W], instance uint8 [H, W])`` of item ``index``."""
        ident = self.ids[index]
        img_path, lbl_path, obj_path = self._paths(ident)
        image = _open(img_path)
        label = _read_index_map(lbl_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(f"id {ident!r}: image {img_path} is {image.shape[1]}x{image.shape[0]} but "
                               f"label {lbl_path} is {label.shape[1]}x{label.shape[0]}")
        bad = (label >= self.num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            values = sorted(set(np.unique(label[bad]).tolist()))
            raise DatasetError(f"label {lbl_path} has values {values[:5]} outside [0, {self.num_classes}) "
                               f"and the ignore value {IGNORE_INDEX}")
        if self.has_instances and obj_path is not None:
            instance = _read_index_map(obj_path)
            if instance.shape != label.shape:
                raise DatasetError(f"id {ident!r}: instance map {obj_path} is {instance.shape[1]}x"
                                   f"{instance.shape[0]} but label {lbl_path} is "
                                   f"{label.shape[1]}x{label.shape[0]}")
            instance[instance == 255] = 0
        else:
            instance = np.zeros_like(label)
        return image, label, instance


def sbd_root(root: str | os.PathLike) -> Path:
    """The SBD ``dataset`` directory under ``root`` (it holds ``cls/``, ``img/``, ``train.txt``)."""
    root = Path(root)
    for cand in (root / "benchmark_RELEASE" / "dataset", root / "SBD" / "dataset", root / "SBD", root / "sbd",
                 root):
        if (cand / "cls").is_dir() and (cand / "train.txt").is_file():
            return cand
    raise DatasetError(f"SBD not found under {root} (expected {root}/benchmark_RELEASE/dataset with cls/, img/, "
                       f"inst/, train.txt, val.txt)")


def train_aug_ids(voc: Path, sbd: Path) -> list[str]:
    """``(SBD train ∪ SBD val ∪ VOC train) − VOC val``, sorted."""
    lists = voc / "ImageSets" / "Segmentation"
    val = set(read_split_list(lists / "val.txt"))
    union = set(read_split_list(sbd / "train.txt")) | set(read_split_list(sbd / "val.txt"))
    union |= set(read_split_list(lists / "train.txt"))
    return sorted(union - val)


class VOCAugDataset(VOCLayoutDataset):
    """PASCAL VOC 2012 + SBD: split ``train_aug`` (10,582 images), ``train``, ``val``, ``trainval``.

    Same items as :class:`VOCLayoutDataset` (``image`` float32 [3, H, W], ``label``
    int64 [H, W] 0..20 / 255, ``instance`` int64 [H, W], ``id``); the annotation of an id is
    VOC's PNG where VOC has one, else SBD's ``.mat`` (module docstring).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train_aug", transform: Callable | None = None,
                 cache: bool = False):
        root = Path(root)
        if split not in VOC_AUG_SPLITS:
            raise DatasetError(f"unknown split {split!r} of dataset 'voc_aug'; choose from {', '.join(VOC_AUG_SPLITS)}")
        if not root.is_dir():
            raise DatasetError(f"dataset directory not found: {root}")
        self.voc = voc_root(root)
        self.sbd = sbd_root(root) if split == "train_aug" else None
        if split == "train_aug":
            ids = train_aug_ids(self.voc, self.sbd)
            self._warn_if_not_shipped(ids)
        else:
            ids = read_split_list(self.voc / "ImageSets" / "Segmentation" / f"{split}.txt")
        self._sources = {ident: self._find(ident) for ident in ids}
        super().__init__(self.voc, split, VOC_CLASSES, transform, cache, ids=ids)  # checks the files exist

    @staticmethod
    def _warn_if_not_shipped(ids: list[str]) -> None:
        shipped = read_split_list(SPLITS_DIR / "voc_train_aug.txt")
        if len(ids) >= len(shipped) and set(ids) != set(shipped):
            warnings.warn(f"train_aug derived from SBD + VOC has {len(ids)} ids and differs from the shipped "
                          f"{len(shipped)}-id list {SPLITS_DIR / 'voc_train_aug.txt'}", stacklevel=3)

    def _find(self, ident: str) -> tuple[Path, Path, Path | None]:
        """``(image, label, instance)`` paths of ``ident``: VOC's files first, then SBD's (None: no
        instance map)."""
        image = self.voc / "JPEGImages" / f"{ident}.jpg"
        label = self.voc / "SegmentationClass" / f"{ident}.png"
        inst = self.voc / "SegmentationObject" / f"{ident}.png"
        if not label.is_file() and self.sbd is not None:
            label, inst = self.sbd / "cls" / f"{ident}.mat", self.sbd / "inst" / f"{ident}.mat"
            if not inst.is_file():   # SBD's class maps are what training needs; instances are optional
                inst = None
        if not image.is_file() and self.sbd is not None:
            image = self.sbd / "img" / f"{ident}.jpg"
        return image, label, inst

    def _paths(self, ident: str) -> tuple[Path, Path, Path | None]:
        return self._sources[ident]
