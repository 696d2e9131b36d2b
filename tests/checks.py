"""Helpers the error tests share: a one-line error with given words, a dataset copy without labels."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aafcore.datasets import DatasetError


def expect_one_line(fn, *needles, error: type[Exception] = DatasetError) -> str:
    """``fn()`` raises a one-line ``error`` whose message contains every needle, with no chained
    traceback (``from None``); returns the message."""
    with pytest.raises(error) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert str(needle) in message, (needle, message)
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    return message


def blank_labels(root: Path, prefix: str) -> None:
    """Set every pixel of the class maps ``root/SegmentationClass/<prefix>*.png`` (a copy of the
    synthetic benchmark) to 255, the ignore index, keeping size and palette."""
    for png in (root / "SegmentationClass").glob(f"{prefix}*.png"):
        im = Image.open(png)
        blank = Image.fromarray(np.full((im.height, im.width), 255, np.uint8), mode="P")
        blank.putpalette(im.getpalette())
        blank.save(png)


def tree_hashes(root) -> dict[str, str]:
    """sha256 of every file under ``root``, by path relative to it."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out
