"""Deprecated alias of :mod:`aafcore.datasets.voc` (the fixture writer is in :mod:`aafcore.testing`).

Importing it emits one ``DeprecationWarning``; every former public name is re-exported.
"""

from __future__ import annotations

import warnings

from aafcore.datasets.voc import (SPLITS_DIR, VOC_AUG_SPLITS, VOCAugDataset, read_sbd_mat, read_split_list,
                                  sbd_root, train_aug_ids)
from aafcore.testing import write_voc_fixture

__all__ = ["SPLITS_DIR", "VOC_AUG_SPLITS", "read_split_list", "read_sbd_mat", "sbd_root", "train_aug_ids",
           "VOCAugDataset", "write_voc_fixture"]

warnings.warn("aafcore.voc is deprecated: import from aafcore.datasets.voc (readers) or aafcore.testing "
              "(write_voc_fixture)", DeprecationWarning, stacklevel=2)
