"""Datasets: the built-in synthetic benchmark, PASCAL VOC (+ SBD), Cityscapes, GTA5 and augmentation.

:func:`build_dataset` opens a dataset by name (DESIGN.md section 4); the names and their builders
are one table, :data:`DATASET_BUILDERS` (its keys, in order, are :data:`DATASETS`).  ``ds[i]`` is
a dict: ``"image"`` float32 ``[3, H, W]`` normalised with :data:`MEAN` / :data:`STD`,
``"label"`` int64 ``[H, W]`` (255 = ignore), ``"instance"`` int64 ``[H, W]`` (0 = none) and
``"id"``; :func:`denormalize` gives the raw ``uint8`` picture back (the dense CRF needs it).
Bad input raises :class:`DatasetError` (a ``ValueError``) with a one-line message naming the file:
a split or a split-list id that is not a plain name (``../x``), an image over
:data:`MAX_IMAGE_PIXELS` (refused from its header), a missing, truncated or corrupt file.

Modules (each a layer-1 foundation; they import nothing of aafcore but :mod:`aafcore.errors`):

* :mod:`~aafcore.datasets.base`: errors, normalisation, palettes and :class:`LabelledImages`, the
  item protocol every reader shares;
* :mod:`~aafcore.datasets.synthetic` (with :mod:`~aafcore.datasets.scene` and
  :mod:`~aafcore.datasets.appearance`): the synthetic benchmark (:func:`generate_synthetic`), v1
  (``smoke`` / ``cpu`` / ``gpu``) and v2 (``study``, :class:`StudySpec`);
* :mod:`~aafcore.datasets.geometry_stats`: a benchmark's structure widths and edge-pair shares in
  logit cells (:func:`benchmark_statistics`);
* :mod:`~aafcore.datasets.voc`: the PASCAL-VOC-layout reader :class:`VOCLayoutDataset` and
  VOC 2012 + SBD (:class:`VOCAugDataset`);
* :mod:`~aafcore.datasets.cityscapes`: Cityscapes and GTA5 on the 19 Cityscapes train ids;
* :mod:`~aafcore.datasets.transforms`: :class:`TrainAugment`.

Fixture trees of the real datasets are written by :mod:`aafcore.testing`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aafcore.datasets.base import (IGNORE_INDEX, MAX_IMAGE_PIXELS, MEAN, STD, DatasetError, LabelledImages,
                                   check_split_name, colorize, denormalize, normalize, voc_colormap)
from aafcore.datasets.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_LABELS, CityscapesDataset, CityscapesLabel,
                                         GTA5Dataset, cityscapes_palette, id_to_train_id_lut, map_label_ids)
from aafcore.datasets.geometry_stats import benchmark_statistics, edge_pair_shares, width_quantiles
from aafcore.datasets.synthetic import (GENERATOR_VERSION, STUDY_GENERATOR_VERSION, SYNTHETIC_CLASSES,
                                        SYNTHETIC_PROFILES, StudySpec, SyntheticClass, SyntheticSpec,
                                        generate_synthetic, render_synthetic, study_class_table, synthetic_class_table,
                                        synthetic_meta, synthetic_palette)
from aafcore.datasets.transforms import TrainAugment
from aafcore.datasets.voc import (SPLITS_DIR, VOC_AUG_SPLITS, VOC_CLASSES, VOCAugDataset, VOCLayoutDataset,
                                  read_sbd_mat, read_split_list, sbd_root, train_aug_ids, voc_root)
from aafcore.errors import one_line

__all__ = [
    # base
    "DatasetError", "MEAN", "STD", "IGNORE_INDEX", "MAX_IMAGE_PIXELS", "normalize", "denormalize", "voc_colormap",
    "colorize", "LabelledImages",
    # synthetic
    "SyntheticClass", "SYNTHETIC_CLASSES", "synthetic_class_table", "synthetic_palette", "synthetic_meta",
    "SyntheticSpec", "SYNTHETIC_PROFILES", "GENERATOR_VERSION", "render_synthetic", "generate_synthetic",
    "StudySpec", "STUDY_GENERATOR_VERSION", "study_class_table",
    # geometry_stats
    "width_quantiles", "edge_pair_shares", "benchmark_statistics",
    # voc
    "VOC_CLASSES", "VOCLayoutDataset", "voc_root", "SPLITS_DIR", "VOC_AUG_SPLITS", "read_split_list",
    "read_sbd_mat", "sbd_root", "train_aug_ids", "VOCAugDataset",
    # cityscapes
    "CityscapesLabel", "CITYSCAPES_LABELS", "CITYSCAPES_CLASSES", "cityscapes_palette", "id_to_train_id_lut",
    "map_label_ids", "CityscapesDataset", "GTA5Dataset",
    # transforms
    "TrainAugment",
    # this module
    "DATASET_BUILDERS", "DATASETS", "build_dataset", "class_groups",
]


# --------------------------------------------------------------------------- builders


def _require_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")


def _synthetic(root: Path, split: str, transform: Callable | None, domain: str,
               cache: bool | None) -> VOCLayoutDataset:
    """The synthetic benchmark written by :func:`generate_synthetic`; ``domain="shifted"`` reads
    ``{split}_shifted.txt``; classes, palette and spec from ``meta.json``."""
    if not root.is_dir():
        raise DatasetError(f"synthetic dataset directory not found: {root} "
                           f"(generate it with `aaf data synthetic` or aafcore.datasets.generate_synthetic)")
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} not found: {root} is not a complete synthetic dataset")
    try:
        meta = json.loads(meta_path.read_text())
        class_names = meta["class_names"]
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(f"cannot read {meta_path}: {one_line(err)}") from None
    split_file = split + ("_shifted" if domain == "shifted" else "")
    palette = synthetic_palette()
    if "palette" in meta:
        palette[: len(meta["palette"])] = np.asarray(meta["palette"], np.uint8)
    return VOCLayoutDataset(root, split_file, class_names, transform, cache is not False, meta=meta,
                            palette=palette)


def _voc(root: Path, split: str, transform: Callable | None, domain: str, cache: bool | None) -> VOCLayoutDataset:
    _require_root(root)
    return VOCLayoutDataset(voc_root(root), split, VOC_CLASSES, transform, cache is not False)


def _voc_aug(root: Path, split: str, transform: Callable | None, domain: str, cache: bool | None) -> VOCAugDataset:
    _require_root(root)
    return VOCAugDataset(root, split, transform, cache=bool(cache))


def _cityscapes(root: Path, split: str, transform: Callable | None, domain: str,
                cache: bool | None) -> CityscapesDataset:
    _require_root(root)
    return CityscapesDataset(root, split, transform, cache=bool(cache))


def _gta5(root: Path, split: str, transform: Callable | None, domain: str, cache: bool | None) -> GTA5Dataset:
    _require_root(root)
    return GTA5Dataset(root, split, transform, cache=bool(cache))


# name -> builder(root, split, transform, domain, cache); the one registry of dataset names
DATASET_BUILDERS: dict[str, Callable[..., LabelledImages]] = {
    "synthetic": _synthetic,
    "voc": _voc,
    "voc_aug": _voc_aug,
    "cityscapes": _cityscapes,
    "gta5": _gta5,
}
DATASETS = tuple(DATASET_BUILDERS)
_DOMAINS = ("source", "shifted")


def build_dataset(name: str, root: str | os.PathLike, split: str = "val", transform: Callable | None = None,
                  domain: str = "source", cache: bool | None = None) -> torch.utils.data.Dataset:
    """A segmentation dataset by name (DESIGN.md section 4); items as :class:`LabelledImages`'s.

    * ``"synthetic"`` (:func:`generate_synthetic`): split train / val / test (and tuning in v2, the
      ``study`` profile); ``domain="shifted"`` reads the shifted-appearance domain (``{split}_shifted.txt``).
    * ``"voc"``: PASCAL VOC 2012, ``root`` contains ``VOCdevkit/VOC2012`` (or is that directory);
      splits train / val / trainval (``ImageSets/Segmentation``).
    * ``"voc_aug"``: VOC 2012 + SBD (:class:`VOCAugDataset`), splits train_aug / train / val /
      trainval; ``root`` contains ``VOCdevkit/`` and ``benchmark_RELEASE/``.
    * ``"cityscapes"``: fine annotations on the 19 train ids (:class:`CityscapesDataset`),
      ``root`` contains ``leftImg8bit/`` and ``gtFine/``; splits train / val / test.
    * ``"gta5"``: :class:`GTA5Dataset`, ``root`` contains ``images/`` and ``labels/``; splits
      all / part1 (the first 2,500 images).

    ``cache`` keeps decoded images in memory (default: on for the small synthetic and VOC sets,
    off for the large real ones).  ``split`` must be a plain name (it names a list file or a
    folder): ``"../x"`` is refused before any file is read.
    """
    root = Path(root)
    if domain not in _DOMAINS:
        raise DatasetError(f"domain must be 'source' or 'shifted', got {domain!r}")
    if domain != "source" and name != "synthetic":
        raise DatasetError(f"dataset {name!r} has no {domain!r} domain (only the synthetic benchmark has one)")
    builder = DATASET_BUILDERS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    check_split_name(split, name)
    return builder(root, split, transform, domain, cache)


def class_groups(dataset) -> dict[str, list[int]]:
    """``{group: [class index, ...]}`` from ``dataset.meta["classes"][i]["group"]`` (the synthetic
    benchmark's ``"large"`` / ``"thin"``), groups in order of first appearance; ``{}`` when the
    dataset has no such metadata (the real datasets)."""
    meta = getattr(dataset, "meta", None) or {}
    groups: dict[str, list[int]] = {}
    for c, entry in enumerate(meta.get("classes", [])):
        if isinstance(entry, dict) and "group" in entry:
            groups.setdefault(entry["group"], []).append(c)
    return groups
