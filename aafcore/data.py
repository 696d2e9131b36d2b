"""Compatibility alias of :mod:`aafcore.datasets` (the dataset code moved there; no warning).

``from aafcore.data import build_dataset, generate_synthetic, TrainAugment, ...`` keeps working:
every name of this module's former ``__all__`` is re-exported from its new home.
"""

from __future__ import annotations

from aafcore.datasets import (DATASETS, GENERATOR_VERSION, IGNORE_INDEX, MEAN, STD, SYNTHETIC_CLASSES,
                              SYNTHETIC_PROFILES, VOC_CLASSES, DatasetError, SyntheticClass, SyntheticSpec,
                              TrainAugment, VOCLayoutDataset, build_dataset, colorize, denormalize,
                              generate_synthetic, normalize, render_synthetic, synthetic_class_table,
                              synthetic_meta, synthetic_palette, voc_colormap)
from aafcore.datasets import class_groups  # noqa: F401 - also re-exported (not in __all__)
from aafcore.datasets.scene import ANIMAL, BUILDING, FENCE, GROUND, PERSON, POLE, SKY, WHEEL  # noqa: F401

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
