"""Deprecated alias of :mod:`aafcore.datasets.cityscapes` (the fixture writers are in :mod:`aafcore.testing`).

Importing it emits one ``DeprecationWarning``; every former public name is re-exported.
"""

from __future__ import annotations

import warnings

from aafcore.datasets.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_LABELS, CityscapesDataset, CityscapesLabel,
                                         GTA5Dataset, cityscapes_palette, id_to_train_id_lut, map_label_ids)
from aafcore.datasets.cityscapes import (CITYSCAPES_SPLITS, GTA5_PART1_LAST, GTA5_SPLITS,  # noqa: F401 - former
                                         NUM_TRAIN_IDS)  # public names outside __all__, still importable
from aafcore.testing import GTA5_LABEL_MODES, write_cityscapes_fixture, write_gta5_fixture  # noqa: F401

__all__ = [
    "CityscapesLabel",
    "CITYSCAPES_LABELS",
    "CITYSCAPES_CLASSES",
    "cityscapes_palette",
    "id_to_train_id_lut",
    "map_label_ids",
    "CityscapesDataset",
    "GTA5Dataset",
    "write_cityscapes_fixture",
    "write_gta5_fixture",
]

warnings.warn("aafcore.cityscapes is deprecated: import from aafcore.datasets.cityscapes (readers) or "
              "aafcore.testing (write_cityscapes_fixture, write_gta5_fixture)", DeprecationWarning, stacklevel=2)
