"""PASCAL VOC 2012 with the SBD augmentation (``"voc_aug"``), and fixture trees of both formats.

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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aafcore.data import (IGNORE_INDEX, VOC_CLASSES, DatasetError, VOCLayoutDataset, _one_line, _voc_root,
                          voc_colormap)

__all__ = ["SPLITS_DIR", "VOC_AUG_SPLITS", "read_split_list", "read_sbd_mat", "sbd_root", "train_aug_ids",
           "VOCAugDataset", "write_voc_fixture"]

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
VOC_AUG_SPLITS = ("train_aug", "train", "val", "trainval")


def read_split_list(path: str | os.PathLike) -> list[str]:
    """The ids of a split file, one per line (blank lines skipped); DatasetError if missing/empty."""
    path = Path(path)
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise DatasetError(f"cannot read split file {path}: {_one_line(err)}") from None
    if not ids:
        raise DatasetError(f"split file {path} lists no images")
    return ids


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """The ``Segmentation`` map of an SBD annotation (``GTcls`` or ``GTinst`` struct), uint8 ``[H, W]``."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as err:
        raise DatasetError(f"cannot read {path}: {_one_line(err)}") from None
    for key in ("GTcls", "GTinst"):
        if key in mat:
            seg = getattr(mat[key], "Segmentation", None)
            if not isinstance(seg, np.ndarray) or seg.ndim != 2:
                raise DatasetError(f"{path}: struct {key} has no 2-D 'Segmentation' field")
            if seg.min() < 0 or seg.max() > 255:
                raise DatasetError(f"{path}: 'Segmentation' values outside 0..255")
            return seg.astype(np.uint8)
    raise DatasetError(f"{path}: not an SBD annotation (no GTcls or GTinst struct)")


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

    Same items as :class:`aafcore.data.VOCLayoutDataset` (``image`` float32 [3, H, W], ``label``
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
        self.voc = _voc_root(root)
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

    def _paths(self, ident: str) -> tuple[Path, Path, Path]:
        return self._sources[ident]


# --------------------------------------------------------------------------- fixtures


def _scene(rng: np.random.Generator, size: tuple[int, int], void: int = 2):
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
        label, inst, band = _scene(rng, size)
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
