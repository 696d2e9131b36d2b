"""What every dataset shares: the error type, the normalisation, the palettes and the item protocol.

* :class:`DatasetError` (a ``ValueError``) is raised on bad input with a one-line message naming
  the file or value (built with :func:`aafcore.errors.one_line`).
* :func:`normalize` / :func:`denormalize` convert between ``uint8 [H, W, 3]`` pictures and float32
  ``[3, H, W]`` tensors normalised with :data:`MEAN` / :data:`STD` (ImageNet statistics).
* :func:`voc_colormap` and :func:`colorize` colour label maps.
* :data:`MAX_IMAGE_PIXELS` caps the size of every image and label a reader decodes;
  :func:`open_image` opens, checks the size (from the header) and decodes one file.
* :func:`check_split_name` and :func:`check_split_id` refuse a split or an id that is not a plain
  name (ids become file names, of predictions too, so ``../x`` must never lead out of a folder).
* :class:`LabelledImages` is the item protocol of every reader: ``ds[i]`` is a dict ``"image"``
  float32 ``[3, H, W]`` (normalised), ``"label"`` int64 ``[H, W]`` (255 = ignore), ``"instance"``
  int64 ``[H, W]`` (0 = none) and ``"id"`` str, then ``transform(item)`` if one is given.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aafcore.errors import check_name, one_line

__all__ = ["DatasetError", "IGNORE_INDEX", "MEAN", "STD", "MAX_IMAGE_PIXELS", "normalize", "denormalize",
           "voc_colormap", "colorize", "check_image_size", "open_image", "check_split_name", "check_split_id",
           "LabelledImages"]

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics (the torchvision backbones are trained with them)
STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255
# The largest image (width x height) a reader decodes.  The real data is far below it (Cityscapes
# 2048x1024 is 2.1 Mpixel, GTA5 1914x1052 2.0, VOC at most 500x500 0.25), so a larger file is corrupt
# or hostile: it is refused from its header, before any pixel is decoded (a 12000x12000 PNG of zeros
# is a few KB on disk but 144 MB to 432 MB in memory).  Read at call time: a test may lower it.
MAX_IMAGE_PIXELS = 50_000_000


class DatasetError(ValueError):
    """Bad dataset input (missing file, corrupt image, out-of-range label, ...); one-line message."""


# --------------------------------------------------------------------------- files and names


def check_image_size(size: tuple[int, int], path: str | os.PathLike) -> None:
    """A :class:`DatasetError` when an image of ``size = (width, height)`` is over :data:`MAX_IMAGE_PIXELS`."""
    width, height = size
    limit = MAX_IMAGE_PIXELS
    if width * height > limit:
        raise DatasetError(f"image {path} is {width}x{height} ({width * height / 1e6:.1f} Mpixel), over the limit "
                           f"of {limit / 1e6:g} Mpixel (aafcore.datasets.base.MAX_IMAGE_PIXELS)")


def open_image(path: str | os.PathLike) -> Image.Image:
    """The decoded PIL image at ``path``.

    The size is checked against :data:`MAX_IMAGE_PIXELS` from the header (PIL reads only that at
    open) before the pixels are decoded.  A missing, empty, truncated or corrupt file, a directory,
    or an image over the limit is a :class:`DatasetError` naming ``path``.
    """
    try:
        with warnings.catch_warnings():  # our own, lower limit is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            check_image_size(im.size, path)
            im.load()
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read {path}: {one_line(err)}") from None
    return im


def check_split_name(split: object, dataset: str) -> str:
    """``split`` when it is a plain name (no ``/``, ``\\``, ``..``, NUL, not empty), else a one-line
    :class:`DatasetError` naming it: a split names a list file or a folder inside the dataset."""
    try:
        return check_name(split, f"{dataset} split")
    except ValueError as err:
        raise DatasetError(f"{err}; give a split name such as 'train' or 'val'") from None


def check_split_id(ident: object, where: str) -> str:
    """``ident`` when it is a plain name, else a one-line :class:`DatasetError` naming it and ``where``
    (the list file and line it came from): ids become file names, of predictions too."""
    try:
        return check_name(ident, "id")
    except ValueError as err:
        raise DatasetError(f"{where}: {err}; an id is a file name without extension, fix or remove it") from None


# --------------------------------------------------------------------------- normalisation


def normalize(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 [H, W, 3]`` picture -> float32 ``[3, H, W]`` normalised with :data:`MEAN`/:data:`STD`."""
    if not isinstance(image, torch.Tensor):
        image = np.asarray(image)
        image = torch.from_numpy(image if image.flags.writeable else image.copy())
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"normalize expects a picture [H, W, 3], got shape {tuple(image.shape)}")
    x = image.permute(2, 0, 1).to(torch.float32) / 255.0  # a new tensor: the input is never modified
    return x.sub_(torch.tensor(MEAN).view(3, 1, 1)).div_(torch.tensor(STD).view(3, 1, 1))


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of the normalisation: float ``[3, H, W]`` -> ``uint8 [H, W, 3]`` numpy (rounded, clipped)."""
    x = torch.as_tensor(image).detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"denormalize expects an image [3, H, W], got shape {tuple(x.shape)}")
    x = x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# --------------------------------------------------------------------------- palettes


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``uint8 [n, 3]`` (bits of the index spread over R, G, B)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def colorize(label: np.ndarray | torch.Tensor, palette: np.ndarray | Sequence | None = None) -> np.ndarray:
    """Label map ``[H, W]`` -> ``uint8 [H, W, 3]`` colours (default: the VOC colour map)."""
    pal = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(pal) < 256:
        pal = np.concatenate([pal, np.zeros((256 - len(pal), 3), np.uint8)])
    lab = np.asarray(torch.as_tensor(label).cpu().numpy() if isinstance(label, torch.Tensor) else label)
    return pal[np.clip(lab, 0, 255).astype(np.int64)]


# --------------------------------------------------------------------------- the item protocol


class LabelledImages(torch.utils.data.Dataset):
    """Shared protocol of the readers: ids, caching, items.

    A reader calls this constructor, sets ``ids`` (one str per image) and defines
    ``_load(index) -> (image uint8 [H, W, 3], label uint8 [H, W], instance [H, W])``, which decodes
    one item's arrays.  :meth:`load_raw` caches them when ``cache`` is true; ``ds[i]`` builds the
    item dict from them (normalised image, int64 label and instance, id) and applies ``transform``.
    """

    ignore_index = IGNORE_INDEX
    meta: dict | None = None
    has_instances = False

    def __init__(self, root: str | os.PathLike, split: str, class_names: Sequence[str],
                 transform: Callable | None, cache: bool, palette: np.ndarray):
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.transform = transform
        self.cache = cache
        self.palette = palette
        self.ids: list[str] = []
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, classes={self.num_classes})")

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 [H, W, 3], label uint8 [H, W], instance [H, W])`` of item ``index``."""
        if index in self._cache:
            return self._cache[index]
        out = self._load(index)
        if self.cache:
            self._cache[index] = out
        return out

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        image, label, instance = self.load_raw(index)
        item = {"image": normalize(image), "label": torch.from_numpy(label.astype(np.int64)),
                "instance": torch.from_numpy(instance.astype(np.int64)), "id": self.ids[index]}
        return self.transform(item) if self.transform is not None else item
